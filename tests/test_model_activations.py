"""Gaussian moments of activations: closed forms, asymptotics and dense-grid references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradlint.model.activations import KNOWN, _pieces, composed_moments, moments, resolve_param

QS = [1e-4, 0.1, 1.0, 10.0, 1e3, 1e5]


def dense_reference(fn: str, q: float, n: int = 400_001) -> tuple[float, float]:
    """Trapezoid rule on a uniform grid over +-12 sd: independent of the module's panels."""
    f, df, _ = _pieces(fn, resolve_param(fn, None))
    s = math.sqrt(q)
    z = np.linspace(-12 * s, 12 * s, n)
    w = np.exp(-0.5 * z * z / q) / math.sqrt(2 * math.pi * q)
    return float(np.trapezoid(w * f(z) ** 2, z)), float(np.trapezoid(w * df(z) ** 2, z))


def test_known_names():
    assert KNOWN == {
        "relu", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "tanh", "sigmoid",
        "hardtanh", "softsign", "softplus", "hardsigmoid", "hardswish", "relu6", "identity",
        "prelu", "logsigmoid", "tanhshrink",
    }


@pytest.mark.parametrize("q", QS)
def test_relu_family_exact(q):
    assert moments("relu", q) == (q / 2, 0.5)
    assert moments("identity", q) == pytest.approx((q, 1.0))
    assert moments("leaky_relu", q) == pytest.approx(((1 + 0.01**2) * q / 2, (1 + 0.01**2) / 2))
    assert moments("leaky_relu", q, 0.2) == pytest.approx((1.04 * q / 2, 1.04 / 2))
    assert moments("prelu", q) == pytest.approx((1.0625 * q / 2, 1.0625 / 2))


@pytest.mark.parametrize("q", QS)
@pytest.mark.parametrize("fn", ["tanh", "sigmoid", "gelu", "silu", "elu", "mish"])
def test_smooth_against_dense_grid(fn, q):
    m2, d2 = moments(fn, q)
    r2, rd2 = dense_reference(fn, q)
    assert m2 == pytest.approx(r2, rel=1e-5)
    assert d2 == pytest.approx(rd2, rel=1e-5)


def test_tanh_asymptotics():
    # Small q: tanh'(z)^2 = 1 - 2 z^2 + O(z^4).
    assert moments("tanh", 1e-4)[1] == pytest.approx(1 - 2e-4, rel=1e-7)
    # Large q: the Gaussian density is flat over tanh'^2, whose integral is 4/3. This is where
    # plain Gauss-Hermite goes wrong (the spike falls between its nodes).
    for q in (500.0, 1e5):
        assert moments("tanh", q)[1] == pytest.approx(4 / 3 / math.sqrt(2 * math.pi * q), rel=2e-3)
    assert moments("tanh", 1e5)[0] == pytest.approx(1.0, abs=0.01)


def test_sigmoid_limits():
    m2, d2 = moments("sigmoid", 1e-4)
    assert m2 == pytest.approx(0.25, rel=1e-3)
    assert d2 == pytest.approx(1 / 16, rel=1e-3)
    # Large q: integral of sigmoid'^2 over R is 1/6.
    assert moments("sigmoid", 1e5)[1] == pytest.approx(1 / 6 / math.sqrt(2 * math.pi * 1e5), rel=2e-3)


def test_softsign_limits():
    # A cusp at 0 that a uniform grid resolves poorly at large q; the asymptote is exact there:
    # the integral of 1 / (1 + |z|)^4 over R is 2/3.
    assert moments("softsign", 1e5)[1] == pytest.approx(2 / 3 / math.sqrt(2 * math.pi * 1e5), rel=1e-3)
    assert moments("softsign", 1e-4)[1] == pytest.approx(1 - 4 * math.sqrt(2e-4 / math.pi) + 10e-4, rel=1e-4)
    for q in (0.1, 1.0, 10.0):
        ref = dense_reference("softsign", q)
        assert moments("softsign", q) == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("q", QS)
def test_hardtanh_closed_form(q):
    # Kinks at +-1: E[phi'^2] = P(|z| < 1); E[phi^2] = E[z^2; |z| < 1] + P(|z| > 1).
    a = 1 / math.sqrt(q)
    inside = math.erf(a / math.sqrt(2))
    pdf = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    m2 = q * (inside - 2 * a * pdf) + (1 - inside)
    got = moments("hardtanh", q)
    assert got[1] == pytest.approx(inside, rel=1e-8)
    assert got[0] == pytest.approx(m2, rel=1e-6, abs=1e-15)


@pytest.mark.parametrize("q", [0.1, 1.0, 10.0, 100.0])
def test_relu6_closed_form(q):
    s = math.sqrt(q)
    assert moments("relu6", q)[1] == pytest.approx(0.5 * math.erf(6 / s / math.sqrt(2)), rel=1e-8)


@pytest.mark.parametrize("fn", sorted(KNOWN))
def test_every_known_activation_integrates(fn):
    for q in QS:
        m2, d2 = moments(fn, q)
        assert math.isfinite(m2) and m2 >= 0
        assert math.isfinite(d2) and d2 >= 0


def test_composition_against_monte_carlo():
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, math.sqrt(3.0), 2_000_000)
    h = np.tanh(np.maximum(z, 0.0))
    d = (z > 0) * (1 - h**2)
    m2, d2 = composed_moments([("relu", None), ("tanh", None)], 3.0)
    assert m2 == pytest.approx(float(np.mean(h**2)), rel=3e-3)
    assert d2 == pytest.approx(float(np.mean(d**2)), rel=3e-3)
    assert composed_moments([], 2.0) == pytest.approx((2.0, 1.0))
    assert composed_moments([("relu", None), ("relu", None)], 2.0) == pytest.approx((1.0, 0.5))


def test_q_zero_and_bad_input():
    assert moments("tanh", 0.0) == (0.0, 1.0)
    assert moments("relu", 0.0) == (0.0, 0.5)
    assert moments("sigmoid", 0.0) == pytest.approx((0.25, 1 / 16))
    with pytest.raises(KeyError):
        moments("softmax", 1.0)
    with pytest.raises(ValueError):
        moments("tanh", -1.0)
    with pytest.raises(ValueError):
        moments("tanh", float("nan"))


def test_odd_params_fall_back_to_defaults():
    assert moments("leaky_relu", 1.0, "slope") == moments("leaky_relu", 1.0)  # type: ignore[arg-type]
    assert moments("elu", 1.0, float("nan")) == moments("elu", 1.0)
    assert moments("celu", 1.0, 0.0) == moments("celu", 1.0)
    assert moments("softplus", 1.0, 2.0) != moments("softplus", 1.0)
