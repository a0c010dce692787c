"""Gaussian moments of activations: closed forms, asymptotics, dense-grid references, and the
module's pure-Python formulas against PyTorch's own activations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradlint.model import activations
from gradlint.model.activations import KNOWN, composed_moments, moments, resolve_param

QS = [1e-4, 0.1, 1.0, 10.0, 1e3, 1e5]


def torch_fn(fn: str, p: float):
    """PyTorch's activation `fn` with parameter p, on float64 tensors."""
    table = {
        "identity": lambda z: z,
        "relu": F.relu,
        "leaky_relu": lambda z: F.leaky_relu(z, p),
        "prelu": lambda z: F.prelu(z, torch.tensor([p], dtype=torch.float64)),
        "elu": lambda z: F.elu(z, alpha=p),
        "celu": lambda z: F.celu(z, alpha=p),
        "selu": F.selu,
        "gelu": F.gelu,
        "silu": F.silu,
        "mish": F.mish,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "hardtanh": F.hardtanh,
        "softsign": F.softsign,
        # torch switches to the identity above beta * z = 20 (off by log1p(e^-20) there); above
        # 40 that is exact to rounding, and the module integrates the exact function
        "softplus": lambda z: F.softplus(z, beta=p, threshold=40.0),
        "hardsigmoid": F.hardsigmoid,
        "hardswish": F.hardswish,
        "relu6": F.relu6,
        "logsigmoid": F.logsigmoid,
        "tanhshrink": F.tanhshrink,
    }
    return table[fn]


def torch_values(fns, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """phi(z) and phi'(z) of the composition (application order) by torch and its autograd."""
    x = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    y = x
    for fn, p in fns:
        y = torch_fn(fn, p)(y)
    (grad,) = torch.autograd.grad(y.sum(), x, allow_unused=True)
    grad = torch.ones_like(x) if grad is None else grad
    return y.detach().numpy(), grad.numpy()


def dense_reference(fn: str, q: float, n: int = 400_001) -> tuple[float, float]:
    """Trapezoid rule on a uniform grid over +-12 sd, with torch's activation: independent of the
    module's panels and of its formulas."""
    s = math.sqrt(q)
    z = np.linspace(-12 * s, 12 * s, n)
    w = np.exp(-0.5 * z * z / q) / math.sqrt(2 * math.pi * q)
    f, df = torch_values([(fn, resolve_param(fn, None))], z)
    return float(np.trapezoid(w * f**2, z)), float(np.trapezoid(w * df**2, z))


def test_gauss_legendre_nodes_are_numpys():
    x, w = np.polynomial.legendre.leggauss(16)
    assert activations._GL_X == tuple(x)
    assert activations._GL_W == pytest.approx(tuple(w), rel=1e-14)


@pytest.mark.parametrize("fn", sorted(KNOWN))
def test_formulas_are_torchs_on_every_node(fn):
    # The scalar formulas the module integrates, at every node of its quadrature, against torch's
    # activation and autograd (the nodes avoid the kinks, where one-sided conventions differ).
    for p in {resolve_param(fn, None), resolve_param(fn, 0.3)}:
        f, df, kinks = activations._pieces(fn, p)
        for q in (1e-4, 1.0, 1e4):
            z, _ = activations._weighted_nodes(q, kinks)
            want_f, want_df = torch_values([(fn, p)], np.array(z))
            got_f = np.array([f(v) for v in z])
            got_df = np.array([df(v) for v in z])
            # z - tanh(z) and friends cancel near 0: an ulp of z is the scale of the error there
            assert np.all(np.abs(got_f - want_f) <= 1e-13 * (np.abs(want_f) + np.abs(z))), (fn, p, q)
            # torch's backward of celu (1/alpha) and hardsigmoid (1/6) holds a constant in single
            # precision; their forwards are exact
            tol = 1e-7 if fn in ("celu", "hardsigmoid") else 1e-13
            assert np.all(np.abs(got_df - want_df) <= tol * (np.abs(want_df) + 1.0)), (fn, p, q)


@pytest.mark.parametrize("q", [1e-2, 0.5, 3.0, 1e3])
@pytest.mark.parametrize("fns", [[("gelu", 0.0)], [("tanh", 0.0), ("sigmoid", 0.0)], [("gelu", 0.0), ("identity", 0.0)],
                                 [("relu", 0.0), ("mish", 0.0), ("softplus", 2.0)], [("identity", 0.0)]])
def test_moments_equal_torchs_on_the_same_nodes(fns, q):
    # The whole integral, evaluated with torch's activations and numpy's sums on the module's own
    # weighted nodes: the pure-Python table is what numpy and torch compute, to rounding.
    z, w = activations._weighted_nodes(q, activations._pieces(*fns[0])[2])
    f, df = torch_values(fns, np.array(z))
    w = np.array(w)
    assert activations._quadrature(tuple(fns), q) == pytest.approx((float(np.dot(w, f * f)), float(np.dot(w, df * df))),
                                                                 rel=1e-12)


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


def test_a_chain_of_activations_asked_prefix_by_prefix_applies_each_function_once_per_node(monkeypatch):
    """Propagation asks for each prefix of a run of activations as it reaches it: every prefix
    was integrated again from the start (512 GELUs in a row: a minute). Each asks one function
    more of the nodes kept for the prefix before it; the moments are those of the whole chain
    integrated at once."""
    chain = tuple(("gelu" if i % 2 else "tanh", None) for i in range(64))
    activations._cached.cache_clear()
    activations._PREFIXES.clear()
    whole = composed_moments(chain, 1.7)
    activations._cached.cache_clear()
    activations._PREFIXES.clear()
    calls = [0]
    real = activations._pieces

    def counting(fn, p):
        f, df, kinks = real(fn, p)

        def f_counted(x):
            calls[0] += 1
            return f(x)
        return f_counted, df, kinks

    monkeypatch.setattr(activations, "_pieces", counting)
    for k in range(1, len(chain) + 1):
        got = composed_moments(chain[:k], 1.7)
    nodes = len(activations._weighted_nodes(1.7, real("tanh", 0.0)[2])[0])
    assert calls[0] == len(chain) * nodes
    assert got == pytest.approx(whole, rel=1e-12)
