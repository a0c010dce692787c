"""Gaussian moments of activation functions: E[phi(z)^2] and E[phi'(z)^2] for z ~ N(0, q).

These two numbers are all the signal-propagation maths needs from an activation: the first
carries the forward second moment to the next layer, the second scales the backward gradient
norm. Positively homogeneous activations (ReLU, leaky ReLU, PReLU, identity) have closed forms;
the others are integrated numerically.

Why not plain Gauss-Hermite: with z = sqrt(q) x the integrand phi'(sqrt(q) x)^2 is a spike of
width 1/sqrt(q) when q is large (tanh at q = 500), which a fixed set of Hermite nodes steps
over, and a kink of an activation (ReLU6 at 6, hardtanh at +-1) ruins its spectral accuracy.
So the integral is taken in z itself, over Gauss-Legendre panels whose edges grow
geometrically from near 0 out to 12 standard deviations (resolving both the activation's own
scale, about 1, and the Gaussian's, sqrt(q), whatever their ratio), with every kink of the
activation added as a panel edge.

Plain Python floats, no numpy: `gradlint check` integrates an activation for any file with a
network, and importing numpy took 0.18 s, a fifth of a one-file run (pre-commit), for the few
hundred node evaluations of a file's handful of integrals.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable, Sequence

Fn = Callable[[float], float]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

# Defaults of `param` where the activation has one (PyTorch's defaults).
DEFAULT_PARAM: dict[str, float] = {
    "leaky_relu": 0.01,
    "prelu": 0.25,
    "elu": 1.0,
    "celu": 1.0,
    "softplus": 1.0,
}

# Activations whose E[phi'(z)^2] does not depend on q (positively homogeneous of degree 1):
# the backward factor through them is exact even when the forward variance is unknown.
SCALE_FREE: frozenset[str] = frozenset({"relu", "leaky_relu", "prelu", "identity"})


def _sigmoid(z: float) -> float:
    # tanh form: no overflow for large |z|, unlike 1 / (1 + exp(-z)).
    return 0.5 * (1.0 + math.tanh(0.5 * z))


def _softplus(z: float) -> float:
    # log(1 + e^z) as numpy's logaddexp(0, z) computes it: no overflow, no loss near 0.
    if z > 0.0:
        return z + math.log1p(math.exp(-z))
    if z < 0.0:
        return math.log1p(math.exp(z))
    return _LOG2 if z == 0.0 else z


_LOG2 = math.log(2.0)
_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)


def _Phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / _SQRT2))


def _phi(z: float) -> float:
    return math.exp(-0.5 * z * z) / _SQRT2PI


def _step(z: float) -> float:
    return 1.0 if z > 0.0 else 0.0


def _clip(z: float, lo: float, hi: float) -> float:
    return lo if z < lo else (hi if z > hi else z)


def _pieces(fn: str, p: float) -> tuple[Fn, Fn, tuple[float, ...]]:
    """(phi, phi', kinks) for one activation with its parameter resolved, on one float: the
    formulas of PyTorch's activations (tests/test_model_activations.py compares them with torch
    on every quadrature node)."""
    if fn == "identity":
        return (lambda z: z), (lambda z: 1.0), ()
    if fn == "relu":
        return (lambda z: z if z > 0.0 else 0.0), _step, (0.0,)
    if fn in ("leaky_relu", "prelu"):
        return (lambda z: z if z > 0 else p * z), (lambda z: 1.0 if z > 0 else p), (0.0,)
    if fn == "elu":
        return (
            lambda z: z if z > 0 else p * math.expm1(z),
            lambda z: 1.0 if z > 0 else p * math.exp(z),
            (0.0,),
        )
    if fn == "celu":
        return (
            lambda z: z if z > 0 else p * math.expm1(z / p),
            lambda z: 1.0 if z > 0 else math.exp(z / p),
            (0.0,),
        )
    if fn == "selu":
        a, s = SELU_ALPHA, SELU_SCALE
        return (
            lambda z: s * (z if z > 0 else a * math.expm1(z)),
            lambda z: s * (1.0 if z > 0 else a * math.exp(z)),
            (0.0,),
        )
    if fn == "gelu":
        # torch's default approximate='none': z * Phi(z).
        return (lambda z: z * _Phi(z)), (lambda z: _Phi(z) + z * _phi(z)), ()
    if fn == "silu":
        def silu_d(z: float) -> float:
            s = _sigmoid(z)
            return s * (1.0 + z * (1.0 - s))

        return (lambda z: z * _sigmoid(z)), silu_d, ()
    if fn == "mish":
        def mish_d(z: float) -> float:
            t = math.tanh(_softplus(z))
            return t + z * (1.0 - t * t) * _sigmoid(z)

        return (lambda z: z * math.tanh(_softplus(z))), mish_d, ()
    if fn == "tanh":
        def tanh_d(z: float) -> float:
            t = math.tanh(z)
            return 1.0 - t * t

        return math.tanh, tanh_d, ()
    if fn == "sigmoid":
        def sigmoid_d(z: float) -> float:
            s = _sigmoid(z)
            return s * (1.0 - s)

        return _sigmoid, sigmoid_d, ()
    if fn == "hardtanh":
        return (lambda z: _clip(z, -1.0, 1.0)), (lambda z: 1.0 if -1.0 < z < 1.0 else 0.0), (-1.0, 1.0)
    if fn == "softsign":
        return (lambda z: z / (1.0 + abs(z))), (lambda z: 1.0 / (1.0 + abs(z)) ** 2), (0.0,)
    if fn == "softplus":
        return (lambda z: _softplus(p * z) / p), (lambda z: _sigmoid(p * z)), ()
    if fn == "hardsigmoid":
        return (
            lambda z: _clip(z + 3.0, 0.0, 6.0) / 6.0,
            lambda z: 1.0 / 6.0 if -3.0 < z < 3.0 else 0.0,
            (-3.0, 3.0),
        )
    if fn == "hardswish":
        return (
            lambda z: z * _clip(z + 3.0, 0.0, 6.0) / 6.0,
            lambda z: 0.0 if z <= -3.0 else (1.0 if z >= 3.0 else (2.0 * z + 3.0) / 6.0),
            (-3.0, 3.0),
        )
    if fn == "relu6":
        return (lambda z: _clip(z, 0.0, 6.0)), (lambda z: 1.0 if 0.0 < z < 6.0 else 0.0), (0.0, 6.0)
    if fn == "logsigmoid":
        return (lambda z: -_softplus(-z)), (lambda z: _sigmoid(-z)), ()
    if fn == "tanhshrink":
        def tanhshrink_d(z: float) -> float:
            t = math.tanh(z)
            return t * t

        return (lambda z: z - math.tanh(z)), tanhshrink_d, ()
    raise KeyError(fn)


KNOWN: frozenset[str] = frozenset(
    {
        "relu", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "tanh", "sigmoid",
        "hardtanh", "softsign", "softplus", "hardsigmoid", "hardswish", "relu6", "identity",
        "prelu", "logsigmoid", "tanhshrink",
    }
)


def resolve_param(fn: str, param: float | None) -> float:
    """The activation's parameter with PyTorch's default filled in (0.0 where it has none)."""
    if fn not in KNOWN:
        raise KeyError(fn)
    if isinstance(param, bool) or not isinstance(param, (int, float)) or not math.isfinite(param):
        # None, or something the front-end could not evaluate: PyTorch's default.
        return DEFAULT_PARAM.get(fn, 0.0)
    if fn in ("elu", "celu", "softplus") and param <= 0.0:
        return DEFAULT_PARAM[fn]  # torch rejects these (celu, softplus divide by it)
    return float(param)


def _gauss_legendre(n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Nodes and weights of n-point Gauss-Legendre quadrature on [-1, 1], ascending: Newton's
    iteration on the Legendre polynomial from the usual cosine guesses (numpy's leggauss gives
    the same nodes; a test compares them)."""
    nodes, weights = [], []
    for i in range(n, 0, -1):
        x = math.cos(math.pi * (i - 0.25) / (n + 0.5))
        for _ in range(100):
            p_prev, p = 1.0, x
            for k in range(2, n + 1):
                p_prev, p = p, ((2 * k - 1) * x * p - (k - 1) * p_prev) / k
            slope = n * (x * p - p_prev) / (x * x - 1.0)
            step = p / slope
            x -= step
            if abs(step) < 1e-16:
                break
        p_prev, p = 1.0, x
        for k in range(2, n + 1):
            p_prev, p = p, ((2 * k - 1) * x * p - (k - 1) * p_prev) / k
        slope = n * (x * p - p_prev) / (x * x - 1.0)
        nodes.append(x)
        weights.append(2.0 / ((1.0 - x * x) * slope * slope))
    # Exactly symmetric, and summing to 2 (the length of [-1, 1]).
    nodes = [(a - b) / 2.0 for a, b in zip(nodes, reversed(nodes))]
    weights = [(a + b) / 2.0 for a, b in zip(weights, reversed(weights))]
    total = math.fsum(weights)
    return tuple(nodes), tuple(w * (2.0 / total) for w in weights)


# Gauss-Legendre nodes per panel: with geometric panels of ratio 1.25 the integrand is smooth
# on each panel to well below 1e-10 relative error.
_GL_X, _GL_W = _gauss_legendre(16)
_RATIO = 1.25
_SPAN = 12.0  # standard deviations: exp(-72) of the mass lies outside


def _edges(s: float, kinks: Sequence[float]) -> list[float]:
    lo = 1e-4 * min(s, 1.0)
    hi = _SPAN * s
    n = max(1, math.ceil(math.log(hi / lo) / math.log(_RATIO)))
    pos = [lo * _RATIO**k for k in range(n + 1)]
    pos[-1] = hi
    inner = [k for k in kinks if -hi < k < hi]
    return sorted({*(-x for x in pos), 0.0, *pos, *inner})


@lru_cache(maxsize=64)
def _weighted_nodes(q: float, kinks: tuple[float, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The quadrature's nodes z and weights times the N(0, q) density there: the same for every
    composition integrated at this q (a network asks for a layer's activation, then for it
    followed by the next ones, at the same q)."""
    e = _edges(math.sqrt(q), kinks)
    norm = math.sqrt(2.0 * math.pi * q)
    exp = math.exp
    z: list[float] = []
    w: list[float] = []
    for a, b in zip(e, e[1:]):
        half, mid = 0.5 * (b - a), 0.5 * (a + b)
        here = [half * x + mid for x in _GL_X]
        z.extend(here)
        w.extend([half * x * exp(-0.5 * zi * zi / q) / norm for x, zi in zip(_GL_W, here)])
    return tuple(z), tuple(w)


# (fns, q) -> the quadrature's values and derivatives at its nodes after those activations: a
# chain of activations is asked for each of its prefixes as propagation reaches it (512 GELUs in a
# row took a minute, evaluating every prefix again); the next prefix applies one more function.
_PREFIXES: dict[tuple, tuple[list[float], list[float] | None]] = {}
_MAX_PREFIXES = 4096


def _quadrature(fns: tuple[tuple[str, float], ...], q: float) -> tuple[float, float]:
    # Kinks of the first activation sit at fixed z; later ones act on transformed values, and
    # their kinks are resolved by the panels' density alone.
    z, w = _weighted_nodes(q, _pieces(*fns[0])[2])
    start = len(fns) - 1
    while start > 0 and (fns[:start], q) not in _PREFIXES:
        start -= 1
    u, d = _PREFIXES[(fns[:start], q)] if start else (z, None)
    for i in range(start, len(fns)):
        fn, p = fns[i]
        if fn != "identity":  # (phi(u) = u, phi' = 1: nothing changes)
            f, df, _ = _pieces(fn, p)
            d = [df(ui) for ui in u] if d is None else [di * df(ui) for di, ui in zip(d, u)]
            u = [f(ui) for ui in u]
        if len(_PREFIXES) >= _MAX_PREFIXES:
            _PREFIXES.clear()
        _PREFIXES[(fns[:i + 1], q)] = (u, d)
    grad = math.fsum(w) if d is None else math.fsum([wi * di * di for wi, di in zip(w, d)])
    return math.fsum([wi * ui * ui for wi, ui in zip(w, u)]), grad


def _limit_at_zero(fns: tuple[tuple[str, float], ...]) -> tuple[float, float]:
    """q = 0: phi(0)^2, and the mean of the squared one-sided derivatives (the q -> 0 limit)."""
    u, d = [0.0, -1e-12, 1e-12], [1.0, 1.0, 1.0]
    for fn, p in fns:
        f, df, _ = _pieces(fn, p)
        d = [di * df(ui) for di, ui in zip(d, u)]
        u = [f(ui) for ui in u]
    return u[0] * u[0], (d[1] * d[1] + d[2] * d[2]) / 2.0


def _round(q: float) -> float:
    return float(f"{q:.12g}")


@lru_cache(maxsize=4096)
def _cached(fns: tuple[tuple[str, float], ...], q: float) -> tuple[float, float]:
    if q == 0.0:
        return _limit_at_zero(fns)
    if all(fn in SCALE_FREE for fn, _ in fns):
        # Piecewise linear through 0: E[phi^2] = q E[phi(x)^2], E[phi'^2] constant (x ~ N(0,1)).
        if len(fns) == 1:
            fn, p = fns[0]
            k = 1.0 if fn == "identity" else (0.5 if fn == "relu" else 0.5 * (1.0 + p * p))
            return q * k, k
        m2, d2 = _quadrature(fns, 1.0)
        return q * m2, d2
    return _quadrature(fns, q)


def _check_q(q: float) -> float:
    q = float(q)
    if not math.isfinite(q) or q < 0.0:
        raise ValueError(f"pre-activation variance must be finite and >= 0, got {q!r}")
    return q


def moments(fn: str, q: float, param: float | None = None) -> tuple[float, float]:
    """(E[phi(z)^2], E[phi'(z)^2]) for z ~ N(0, q).

    KeyError for an activation outside KNOWN; ValueError for a negative or non-finite q.
    """
    return _cached(((fn, resolve_param(fn, param)),), _round(_check_q(q)))


def composed_moments(
    fns: Sequence[tuple[str, float | None]], q: float
) -> tuple[float, float]:
    """Moments of phi_k o ... o phi_1 (fns in application order) for z ~ N(0, q).

    E[phi'(z)^2] is that of the whole composition's derivative (the product of the
    derivatives along the way), integrated against the Gaussian once: no intermediate value is
    assumed Gaussian. An empty sequence is the identity.
    """
    resolved = tuple((fn, resolve_param(fn, p)) for fn, p in fns) or (("identity", 0.0),)
    return _cached(resolved, _round(_check_q(q)))


def is_scale_free(fns: Sequence[str]) -> bool:
    """True when E[phi'(z)^2] of the composition does not depend on q."""
    return all(fn in SCALE_FREE for fn in fns)
