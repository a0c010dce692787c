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
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

Array = np.ndarray
Fn = Callable[[Array], Array]

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


def _sigmoid(z: Array) -> Array:
    # tanh form: no overflow for large |z|, unlike 1 / (1 + exp(-z)).
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _softplus(z: Array) -> Array:
    return np.logaddexp(0.0, z)


_erf = np.frompyfunc(math.erf, 1, 1)


def _Phi(z: Array) -> Array:
    return 0.5 * (1.0 + _erf(z / math.sqrt(2.0)).astype(float))


def _phi(z: Array) -> Array:
    return np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def _pieces(fn: str, p: float) -> tuple[Fn, Fn, tuple[float, ...]]:
    """(phi, phi', kinks) for one activation with its parameter resolved."""
    where = np.where
    if fn == "identity":
        return (lambda z: z), (lambda z: np.ones_like(z)), ()
    if fn == "relu":
        return (lambda z: np.maximum(z, 0.0)), (lambda z: (z > 0).astype(float)), (0.0,)
    if fn in ("leaky_relu", "prelu"):
        return (lambda z: where(z > 0, z, p * z)), (lambda z: where(z > 0, 1.0, p)), (0.0,)
    if fn == "elu":
        return (
            lambda z: where(z > 0, z, p * np.expm1(np.minimum(z, 0.0))),
            lambda z: where(z > 0, 1.0, p * np.exp(np.minimum(z, 0.0))),
            (0.0,),
        )
    if fn == "celu":
        return (
            lambda z: where(z > 0, z, p * np.expm1(np.minimum(z, 0.0) / p)),
            lambda z: where(z > 0, 1.0, np.exp(np.minimum(z, 0.0) / p)),
            (0.0,),
        )
    if fn == "selu":
        a, s = SELU_ALPHA, SELU_SCALE
        return (
            lambda z: s * where(z > 0, z, a * np.expm1(np.minimum(z, 0.0))),
            lambda z: s * where(z > 0, 1.0, a * np.exp(np.minimum(z, 0.0))),
            (0.0,),
        )
    if fn == "gelu":
        # torch's default approximate='none': z * Phi(z).
        return (lambda z: z * _Phi(z)), (lambda z: _Phi(z) + z * _phi(z)), ()
    if fn == "silu":
        return (
            lambda z: z * _sigmoid(z),
            lambda z: _sigmoid(z) * (1.0 + z * (1.0 - _sigmoid(z))),
            (),
        )
    if fn == "mish":
        def mish_d(z: Array) -> Array:
            t = np.tanh(_softplus(z))
            return t + z * (1.0 - t * t) * _sigmoid(z)

        return (lambda z: z * np.tanh(_softplus(z))), mish_d, ()
    if fn == "tanh":
        return np.tanh, (lambda z: 1.0 - np.tanh(z) ** 2), ()
    if fn == "sigmoid":
        return _sigmoid, (lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))), ()
    if fn == "hardtanh":
        return (
            lambda z: np.clip(z, -1.0, 1.0),
            lambda z: ((z > -1.0) & (z < 1.0)).astype(float),
            (-1.0, 1.0),
        )
    if fn == "softsign":
        return (lambda z: z / (1.0 + np.abs(z))), (lambda z: 1.0 / (1.0 + np.abs(z)) ** 2), (0.0,)
    if fn == "softplus":
        return (lambda z: _softplus(p * z) / p), (lambda z: _sigmoid(p * z)), ()
    if fn == "hardsigmoid":
        return (
            lambda z: np.clip(z + 3.0, 0.0, 6.0) / 6.0,
            lambda z: ((z > -3.0) & (z < 3.0)) / 6.0,
            (-3.0, 3.0),
        )
    if fn == "hardswish":
        return (
            lambda z: z * np.clip(z + 3.0, 0.0, 6.0) / 6.0,
            lambda z: where(z <= -3.0, 0.0, where(z >= 3.0, 1.0, (2.0 * z + 3.0) / 6.0)),
            (-3.0, 3.0),
        )
    if fn == "relu6":
        return (
            lambda z: np.clip(z, 0.0, 6.0),
            lambda z: ((z > 0.0) & (z < 6.0)).astype(float),
            (0.0, 6.0),
        )
    if fn == "logsigmoid":
        return (lambda z: -_softplus(-z)), (lambda z: _sigmoid(-z)), ()
    if fn == "tanhshrink":
        return (lambda z: z - np.tanh(z)), (lambda z: np.tanh(z) ** 2), ()
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


# Gauss-Legendre nodes per panel: with geometric panels of ratio 1.25 the integrand is smooth
# on each panel to well below 1e-10 relative error.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(16)
_RATIO = 1.25
_SPAN = 12.0  # standard deviations: exp(-72) of the mass lies outside


def _edges(s: float, kinks: Sequence[float]) -> Array:
    lo = 1e-4 * min(s, 1.0)
    hi = _SPAN * s
    n = max(1, math.ceil(math.log(hi / lo) / math.log(_RATIO)))
    pos = lo * _RATIO ** np.arange(n + 1)
    pos[-1] = hi
    edges = np.concatenate([-pos[::-1], [0.0], pos])
    inner = [k for k in kinks if -hi < k < hi]
    return np.unique(np.concatenate([edges, inner]))


def _nodes(s: float, kinks: Sequence[float]) -> tuple[Array, Array]:
    e = _edges(s, kinks)
    a, b = e[:-1, None], e[1:, None]
    z = 0.5 * (b - a) * _GL_X[None, :] + 0.5 * (a + b)
    w = 0.5 * (b - a) * _GL_W[None, :]
    return z.ravel(), w.ravel()


def _quadrature(fns: tuple[tuple[str, float], ...], q: float) -> tuple[float, float]:
    parts = [_pieces(fn, p) for fn, p in fns]
    # Kinks of the first activation sit at fixed z; later ones act on transformed values, and
    # their kinks are resolved by the panels' density alone.
    z, w = _nodes(math.sqrt(q), parts[0][2])
    w = w * np.exp(-0.5 * z * z / q) / math.sqrt(2.0 * math.pi * q)
    u, d = z, np.ones_like(z)
    for f, df, _ in parts:
        d = d * df(u)
        u = f(u)
    return float(np.dot(w, u * u)), float(np.dot(w, d * d))


def _limit_at_zero(fns: tuple[tuple[str, float], ...]) -> tuple[float, float]:
    """q = 0: phi(0)^2, and the mean of the squared one-sided derivatives (the q -> 0 limit)."""
    u, d = np.array([0.0, -1e-12, 1e-12]), np.ones(3)
    for fn, p in fns:
        f, df, _ = _pieces(fn, p)
        d = d * df(u)
        u = f(u)
    return float(u[0] * u[0]), float(np.mean(d[1:] * d[1:]))


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
