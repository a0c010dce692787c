"""Initialisation schemes as numbers: gains, fan_in * sigma^2, assumed nonlinearities."""

from __future__ import annotations

import math

import pytest

from gradlint.model.init import (
    assumed_nonlinearity,
    bias_variance,
    fan_times_variance,
    gain,
    is_dead,
    weight_variance,
)
from gradlint.model.ir import InitSpec


def spec(scheme: str, **params) -> InitSpec:
    return InitSpec(scheme, tuple(sorted(params.items())))


# Values printed by torch.nn.init.calculate_gain (torch 2.x).
@pytest.mark.parametrize(
    "args, expected",
    [
        (("linear",), 1.0),
        (("conv2d",), 1.0),
        (("conv_transpose3d",), 1.0),
        (("sigmoid",), 1.0),
        (("tanh",), 1.6666666666666667),
        (("relu",), 1.4142135623730951),
        (("leaky_relu",), 1.4141428569978354),
        (("leaky_relu", 0.2), 1.3867504905630728),
        (("selu",), 0.75),
    ],
)
def test_gain_matches_torch(args, expected):
    assert gain(*args) == pytest.approx(expected, rel=1e-12)


def test_gain_rejects_unknown():
    with pytest.raises(ValueError):
        gain("gelu")
    with pytest.raises(ValueError):
        gain("leaky_relu", "a")  # type: ignore[arg-type]


def test_torch_defaults_need_no_fan():
    assert fan_times_variance(spec("torch-linear"), None, None) == pytest.approx(1 / 3)
    assert fan_times_variance(spec("torch-linear"), "d", "e") == pytest.approx(1 / 3)
    assert weight_variance(spec("torch-linear"), 300, 7) == pytest.approx(1 / 900)
    assert weight_variance(spec("torch-linear"), "d", 7) is None


def test_torch_rnn():
    # weight_hh: fan_in = hidden.
    assert fan_times_variance(spec("torch-rnn"), 64, 256) == pytest.approx(1 / 3)
    assert fan_times_variance(spec("torch-rnn"), "h", "4h") == pytest.approx(1 / 3)
    # weight_ih with the hidden size stated: fan_in / (3 h).
    assert fan_times_variance(spec("torch-rnn", hidden=64), 32, 256) == pytest.approx(32 / 192)
    assert fan_times_variance(spec("torch-rnn", hidden="h"), "x", "4h") is None
    assert weight_variance(spec("torch-rnn", hidden=64), 32, 256) == pytest.approx(1 / 192)


def test_embedding_normal_uniform():
    assert weight_variance(spec("torch-embedding"), 128, 1000) == 1.0
    assert fan_times_variance(spec("torch-embedding"), 128, 1000) == 128.0
    assert fan_times_variance(spec("normal", std=0.02), 512, 512) == pytest.approx(512 * 4e-4)
    assert fan_times_variance(spec("normal"), 10, 10) == pytest.approx(10.0)
    assert fan_times_variance(spec("normal", std=0.02), "d", "d") is None
    assert fan_times_variance(spec("normal", std="s"), 10, 10) is None
    assert weight_variance(spec("uniform", a=-0.1, b=0.1), None, None) == pytest.approx(0.04 / 12)
    assert weight_variance(spec("uniform"), None, None) == pytest.approx(1 / 12)
    assert fan_times_variance(spec("uniform", a=-0.1, b=0.1), 300, 3) == pytest.approx(300 * 0.04 / 12)


def test_trunc_normal_variance():
    # Standard normal truncated to [-2, 2]: 1 - 4 phi(2) / (2 Phi(2) - 1).
    phi2 = math.exp(-2) / math.sqrt(2 * math.pi)
    mass = math.erf(2 / math.sqrt(2))
    assert weight_variance(spec("trunc_normal"), None, None) == pytest.approx(1 - 4 * phi2 / mass)
    # Bounds far outside: the plain normal variance (timm's trunc_normal_(std=.02)).
    assert weight_variance(spec("trunc_normal", std=0.02), None, None) == pytest.approx(4e-4, rel=1e-9)
    # torch.nn.init.trunc_normal_(w, mean=0.5, std=1, a=-1, b=3) on 4e6 draws measured 0.7287.
    assert weight_variance(spec("trunc_normal", mean=0.5, std=1.0, a=-1.0, b=3.0), None, None) == pytest.approx(
        0.7287, rel=2e-3
    )


def test_xavier():
    assert fan_times_variance(spec("xavier_uniform"), 512, 512) == pytest.approx(1.0)
    assert fan_times_variance(spec("xavier_normal", gain=2.0), 100, 300) == pytest.approx(2 * 4 * 100 / 400)
    assert fan_times_variance(spec("xavier_normal"), "d", "d") == pytest.approx(1.0)
    assert fan_times_variance(spec("xavier_normal"), "d", "e") is None
    assert fan_times_variance(spec("xavier_normal"), 10, None) is None
    assert weight_variance(spec("xavier_uniform"), 100, 300) == pytest.approx(2 / 400)


def test_kaiming():
    # Defaults: leaky_relu with a=0 is ReLU's gain, sqrt 2.
    assert fan_times_variance(spec("kaiming_normal"), None, None) == pytest.approx(2.0)
    assert fan_times_variance(spec("kaiming_uniform", nonlinearity="relu"), "d", "x") == pytest.approx(2.0)
    assert fan_times_variance(spec("kaiming_uniform", a=math.sqrt(5)), 9, 9) == pytest.approx(1 / 3)
    assert fan_times_variance(spec("kaiming_normal", nonlinearity="tanh"), 4, 4) == pytest.approx(25 / 9)
    assert fan_times_variance(spec("kaiming_normal", mode="fan_out"), 100, 400) == pytest.approx(0.5)
    assert fan_times_variance(spec("kaiming_normal", mode="fan_out"), "d", "d") == pytest.approx(2.0)
    assert fan_times_variance(spec("kaiming_normal", mode="fan_out"), "d", "4d") is None
    assert fan_times_variance(spec("kaiming_normal", nonlinearity="gelu"), 4, 4) is None
    assert weight_variance(spec("kaiming_normal", mode="fan_out"), 100, 400) == pytest.approx(2 / 400)


def test_orthogonal_eye_dirac():
    assert fan_times_variance(spec("orthogonal"), "d", "d") == pytest.approx(1.0)
    assert fan_times_variance(spec("orthogonal", gain=5 / 3), 64, 64) == pytest.approx(25 / 9)
    # Tall (fan_out > fan_in): orthonormal columns, ||W^T g||^2 keeps fan_in/fan_out of ||g||^2.
    assert fan_times_variance(spec("orthogonal"), 64, 256) == pytest.approx(0.25)
    # Wide: orthonormal rows, norms kept.
    assert fan_times_variance(spec("orthogonal"), 256, 64) == pytest.approx(1.0)
    assert fan_times_variance(spec("eye"), 32, 32) == 1.0
    assert fan_times_variance(spec("dirac"), "c*9", "c*9") == 1.0
    assert fan_times_variance(spec("orthogonal"), "a", "b") is None


def test_constant_measured_unknown():
    for s in ("zeros", "ones"):
        assert fan_times_variance(spec(s), 5, 5) == 0.0
    assert fan_times_variance(spec("constant", val=0.3), None, None) == 0.0
    assert fan_times_variance(spec("measured", variance=0.01, mean=0.0), 200, 100) == pytest.approx(2.0)
    assert fan_times_variance(spec("measured", variance=0.01), "d", 100) is None
    assert weight_variance(spec("measured", variance=0.01), None, None) == 0.01
    assert fan_times_variance(spec("unknown"), 10, 10) is None
    assert fan_times_variance(spec("something-new"), 10, 10) is None


@pytest.mark.parametrize(
    "init",
    [
        spec("torch-linear"), spec("normal", std=0.1), spec("uniform", a=-1, b=2), spec("trunc_normal"),
        spec("xavier_normal"), spec("xavier_uniform", gain=1.5), spec("kaiming_normal"),
        spec("kaiming_uniform", mode="fan_out", nonlinearity="tanh"), spec("orthogonal"),
        spec("measured", variance=0.5), spec("zeros"), spec("torch-embedding"),
    ],
)
@pytest.mark.parametrize("fans", [(64, 64), (64, 256), (300, 10)])
def test_fan_times_variance_is_fan_in_times_weight_variance(init, fans):
    fi, fo = fans
    assert fan_times_variance(init, fi, fo) == pytest.approx(fi * weight_variance(init, fi, fo))


def test_bias_variance():
    assert bias_variance(None, 10) == 0.0
    assert bias_variance(spec("torch-linear"), 256) == pytest.approx(1 / 768)
    assert bias_variance(spec("torch-linear"), "d") == 0.0
    assert bias_variance(spec("zeros"), 10) == 0.0
    assert bias_variance(spec("constant", val=0.5), 10) == 0.25
    assert bias_variance(spec("normal", std=0.1, mean=1.0), 10) == pytest.approx(1.01)


def test_assumed_nonlinearity():
    assert assumed_nonlinearity(spec("kaiming_normal")) == "relu"
    assert assumed_nonlinearity(spec("kaiming_uniform", a=0.2)) == "leaky_relu"
    assert assumed_nonlinearity(spec("kaiming_uniform", a=0.0, nonlinearity="leaky_relu")) == "relu"
    assert assumed_nonlinearity(spec("kaiming_normal", nonlinearity="tanh")) == "tanh"
    assert assumed_nonlinearity(spec("kaiming_normal", nonlinearity="sigmoid")) == "sigmoid"
    assert assumed_nonlinearity(spec("kaiming_normal", nonlinearity="linear")) == "linear"
    assert assumed_nonlinearity(spec("kaiming_normal", nonlinearity="conv2d")) == "linear"
    assert assumed_nonlinearity(spec("xavier_uniform")) == "linear"
    assert assumed_nonlinearity(spec("xavier_uniform", gain=5 / 3)) == "tanh"
    assert assumed_nonlinearity(spec("xavier_normal", gain=math.sqrt(2))) == "relu"
    assert assumed_nonlinearity(spec("orthogonal", gain=1.4142)) == "relu"
    assert assumed_nonlinearity(spec("orthogonal", gain=0.3)) is None
    assert assumed_nonlinearity(spec("torch-linear")) is None
    assert assumed_nonlinearity(spec("normal", std=0.02)) is None


def test_is_dead():
    assert is_dead(spec("zeros"))
    assert is_dead(spec("ones"))
    assert is_dead(spec("constant", val=0.1))
    assert is_dead(spec("normal", std=0.0))
    assert is_dead(spec("measured", variance=0.0))
    assert not is_dead(spec("normal", std=0.02))
    assert not is_dead(spec("torch-linear"))
    assert not is_dead(spec("unknown"))
    assert not is_dead(spec("eye"))


def test_matched_init():
    from gradlint.model.init import matched_init

    assert fan_times_variance(matched_init("relu"), "d", "d") == pytest.approx(2.0)
    assert assumed_nonlinearity(matched_init("relu")) == "relu"
    assert assumed_nonlinearity(matched_init("tanh")) == "tanh"
    assert assumed_nonlinearity(matched_init("leaky_relu", 0.2)) == "leaky_relu"
    assert fan_times_variance(matched_init("leaky_relu", 0.2), 9, 9) == pytest.approx(2 / 1.04)
    assert fan_times_variance(matched_init("selu"), 9, 9) == pytest.approx(1.0)
    assert matched_init("softmax") is None
