"""Intervals a tensor's elements are known to lie in (`V.bounds`).

A clamp with numbers makes one (`x.clamp(min=eps, max=1 - eps)`: [1e-6, 1 - 1e-6]), and a value
never below 0 (a norm, a distance, a square, a root) lies in [0, inf]; arithmetic with
numbers and with other bounded tensors keeps one (`x / (1 - x)`: a positive divisor), so do a log
of a positive one, a sigmoid, a negation, a mean and the reshapes and selections that keep elements; any other
operation forgets it. What an exp of the value can reach follows (numerics' `exp_safe`: at most 80,
`floor_safe`: at least -80): the log-odds of a clamped probability, and their mean, lie within
±log((1 - eps) / eps), 13.8 for eps = 1e-6. The ends are float32 numbers, as the tensors hold them
(a float64 tensor is only further from its limits): there `1 - 1e-8` is 1.0.
"""

from __future__ import annotations

import math
import struct

import libcst as cst

Interval = tuple[float, float]

# An exponent at most this cannot overflow float32's exp (88.7): numerics_ops.EXP_SAFE's number.
EXP_SAFE = 80.0

# A temperature setting no number is known for (`cos / self.ssl_temp`) is taken as at least this:
# temperatures in use are 0.05 to 1 (SimCLR 0.07-0.5, MoCo 0.07-0.2, recbole's 0.1-0.5). A cosine
# over it lies within ±20: the hand-written InfoNCE is finite even at its worst (positive cosine -1,
# 100 000 others at +1; measured, bench/measure_cosine_temperature.py: finite down to 0.03, inf
# from 0.02, where the ratio e^(-2/tau) / N underflows).
TEMPERATURE_MIN = 0.05

# a cosine of float32 vectors rounds a few ulps past ±1 (measured: up to 1 + 2.4e-7)
_COSINE_END = 1.0 + 1e-6


def f32(x: float) -> float:
    """`x` as float32 holds it (round to nearest): a bound of 1 - 1e-8 is 1.0 there, so the
    divisor `1 - x` of a tensor clamped to it reaches 0 (measured: NaN)."""
    if math.isnan(x) or math.isinf(x):
        return x
    try:
        return struct.unpack("f", struct.pack("f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def of(v) -> Interval | None:
    """The interval of a value: its bounds, its plain number as a point (as float32 holds it), or
    [0, inf] for a value never below 0 (a norm, a distance, a square or a sum of squares, `|x|`:
    `-20 * (r / r0 - 1)` of a distance r and a positive number r0 is at most 20), or [-1, 1] for a
    cosine (V.unit 'bounded': of normalised vectors, `F.cosine_similarity`), up to rounding."""
    if v.bounds is not None:
        return v.bounds
    n = v.value
    if type(n) in (int, float) and math.isfinite(n):
        return (f32(float(n)), f32(float(n)))
    if v.sq or v.sumsq or (v.nonneg and not v.module):
        return (0.0, math.inf)
    if v.unit == "bounded":
        return (-_COSINE_END, _COSINE_END)  # a cosine: `cos / 0.1` lies within ±10
    return None


def _checked(lo: float, hi: float) -> Interval | None:
    """An interval of float32 ends: each computed end rounded as float32 rounds the result of one
    operation on the ends (rounding keeps order, so what lies between stays between)."""
    lo, hi = f32(lo), f32(hi)
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        return None
    return (lo, hi)


def arith(op: type, a: Interval | None, b: Interval | None) -> Interval | None:
    """The interval of `a op b` (+, -, *, /), None when either is unknown or a divisor may be 0."""
    if a is None or b is None:
        return None
    if op is cst.Add:
        return _checked(a[0] + b[0], a[1] + b[1])
    if op is cst.Subtract:
        return _checked(a[0] - b[1], a[1] - b[0])
    if op is cst.Multiply:
        ends = [x * y for x in a for y in b]
        return None if any(math.isnan(e) for e in ends) else _checked(min(ends), max(ends))
    if op is cst.Divide:
        if b[0] <= 0 <= b[1]:
            return None
        return arith(cst.Multiply, a, (1.0 / b[1], 1.0 / b[0]))
    return None


def negated(a: Interval | None) -> Interval | None:
    return None if a is None else (-a[1], -a[0])


def log(a: Interval | None) -> Interval | None:
    """log of a value known to be positive."""
    if a is None or not a[0] > 0:
        return None
    return _checked(math.log(a[0]), math.log(a[1]) if math.isfinite(a[1]) else math.inf)


def clamped(a: Interval | None, lo: float | None, hi: float | None,
            lo_given: bool = False, hi_given: bool = False) -> Interval | None:
    """The interval after `clamp(min=lo, max=hi)`: torch's min(max(x, lo), hi) at the ends of what
    x was (anything, when unknown). A bound given but not known (`*_given`, its number None) may be
    anything: the other end of the result is then unknown too (a max below the min wins)."""
    low = -math.inf if lo is None else f32(lo)
    high = math.inf if hi is None else f32(hi)
    a = a or (-math.inf, math.inf)
    out = [min(max(a[0], low), high), min(max(a[1], low), high)]
    if lo_given and lo is None:
        out[1] = math.inf if hi is None else high
    if hi_given and hi is None:
        out[0] = -math.inf
    return None if out == [-math.inf, math.inf] else _checked(*out)


def sigmoid(a: Interval | None) -> Interval | None:
    """The interval of `sigmoid(x)` for x in `a`, its ends computed as float32 computes
    1 / (1 + exp(-x)), one rounding a step (monotone, so what lies between stays between): from
    x = 17 on, 1 + exp(-x) is 1.0 there and so is the sigmoid (measured in torch). None when `a`
    is unknown. A cosine's sigmoid lies in [0.269, 0.731]."""
    if a is None:
        return None
    return _checked(_logistic(a[0]), _logistic(a[1]))


def _logistic(x: float) -> float:
    e = f32(math.exp(-x)) if -x < 709 else math.inf
    return f32(1.0 / f32(1.0 + e))


def hull(a: Interval | None, b: Interval | None) -> Interval | None:
    """Both paths' intervals joined (a value that is one or the other)."""
    if a is None or b is None:
        return None
    return (min(a[0], b[0]), max(a[1], b[1]))


def safety(a: Interval | None) -> dict[str, bool]:
    """The exp facts an interval gives (only those it makes true)."""
    out = {}
    if a is not None and a[1] <= EXP_SAFE:
        out["exp_safe"] = True
    if a is not None and a[0] >= -EXP_SAFE:
        out["floor_safe"] = True
    return out
