"""Weight initialisations as numbers: the variance each scheme draws, and the gain it assumes.

The quantity propagation needs is fan_in * sigma^2 (forward: q_l = fan_in_l sigma_l^2 E[h^2];
backward: the squared gradient norm shrinks by fan_in_{l+1} sigma_{l+1}^2 E[phi'^2]). For
PyTorch's defaults and for kaiming with mode='fan_in' it is a constant, so it is known even
when the front-end only knows a width by name ("d_model"): symbolic fans are strings, and two
equal strings cancel. Everything that needs an actual number and lacks one returns None.
"""

from __future__ import annotations

import math

from gradlint.model.ir import Fan, InitSpec

_LINEAR_FNS = frozenset(
    {
        "linear", "conv1d", "conv2d", "conv3d",
        "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    }
)


def _num(value: object) -> float | None:
    """A finite real number, or None (symbolic text, bools and anything else the front-end kept)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def gain(nonlinearity: str, param: float | None = None) -> float:
    """torch.nn.init.calculate_gain, without importing torch. ValueError on an unknown name."""
    if nonlinearity in _LINEAR_FNS or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, bool) or not isinstance(param, (int, float)):
            raise ValueError(f"negative_slope {param!r} not a valid number")
        else:
            slope = float(param)
        return math.sqrt(2.0 / (1.0 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4.0
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _ratio(num: Fan, den: Fan) -> float | None:
    """num / den for fans: ints divide, equal symbols cancel, anything else is unknown."""
    if isinstance(num, bool) or isinstance(den, bool):
        return None
    if isinstance(num, int) and isinstance(den, int):
        return num / den if den > 0 else None
    if isinstance(num, str) and isinstance(den, str) and num == den:
        return 1.0
    return None


def _int_fan(fan: Fan) -> int | None:
    return fan if isinstance(fan, int) and not isinstance(fan, bool) and fan > 0 else None


def _kaiming_gain(init: InitSpec) -> float | None:
    if init.get("gain") is not None:
        # a kaiming draw written out by hand with a gain no nonlinearity names
        # (source/init_fans.py: `uniform_(-stdv, stdv)`, stdv = 1 / sqrt(fan_in), is gain 1/sqrt(3))
        return _num(init.get("gain"))
    a = _num(init.get("a", 0.0))
    nl = init.get("nonlinearity", "leaky_relu")
    if a is None or not isinstance(nl, str):
        return None
    try:
        return gain(nl, a)
    except ValueError:
        return None


def _truncated_normal_variance(mean: float, std: float, a: float, b: float) -> float | None:
    """Variance of N(mean, std^2) truncated to [a, b] (torch.nn.init.trunc_normal_'s bounds are
    absolute values, not multiples of std)."""
    if std <= 0.0 or b <= a:
        return 0.0 if std == 0.0 and a <= mean <= b else None
    alpha, beta = (a - mean) / std, (b - mean) / std
    pdf = lambda x: math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)  # noqa: E731
    cdf = lambda x: 0.5 * math.erfc(-x / math.sqrt(2.0))  # noqa: E731
    z = cdf(beta) - cdf(alpha)
    if z <= 0.0:
        return None
    # x * pdf(x) -> 0 at +-inf: write the terms so that infinite bounds do not give nan.
    ta = alpha * pdf(alpha) if math.isfinite(alpha) else 0.0
    tb = beta * pdf(beta) if math.isfinite(beta) else 0.0
    pa = pdf(alpha) if math.isfinite(alpha) else 0.0
    pb = pdf(beta) if math.isfinite(beta) else 0.0
    return std * std * (1.0 + (ta - tb) / z - ((pa - pb) / z) ** 2)


def _gain_param(init: InitSpec) -> float | None:
    return _num(init.get("gain", 1.0))


def fan_times_variance(init: InitSpec, fan_in: Fan, fan_out: Fan) -> float | None:
    """fan_in * sigma^2 of the weight, or None when it cannot be known.

    'orthogonal', 'eye' and 'dirac' are not i.i.d.; they count as gain^2 * fan_in /
    max(fan_in, fan_out), which is exactly the ratio of squared norms ||W^T g||^2 / ||g||^2 an
    orthogonal (or identity) matrix gives. 'measured' ignores the mean, like everything here:
    zero-mean weights are assumed.
    """
    s = init.scheme
    if s == "torch-linear":
        return 1.0 / 3.0
    if s in ("zeros", "ones", "constant"):
        return 0.0
    if s == "torch-rnn":
        hidden = init.get("hidden", fan_in)
        r = _ratio(fan_in, hidden if isinstance(hidden, (int, str)) else None)
        return None if r is None else r / 3.0
    if s in ("xavier_normal", "xavier_uniform"):
        g = _gain_param(init)
        if g is None:
            return None
        if isinstance(fan_in, str) and fan_in == fan_out:
            return g * g
        fi, fo = _int_fan(fan_in), _int_fan(fan_out)
        if fi is None or fo is None:
            return None
        return 2.0 * g * g * fi / (fi + fo)
    if s in ("kaiming_normal", "kaiming_uniform"):
        g = _kaiming_gain(init)
        mode = init.get("mode", "fan_in")
        if g is None or mode not in ("fan_in", "fan_out"):
            return None
        if mode == "fan_in":
            return g * g
        r = _ratio(fan_in, fan_out)
        return None if r is None else g * g * r
    if s in ("orthogonal", "eye", "dirac"):
        g = _gain_param(init) if s == "orthogonal" else 1.0
        if g is None:
            return None
        if fan_in == fan_out and isinstance(fan_in, (int, str)) and not isinstance(fan_in, bool):
            return g * g
        fi, fo = _int_fan(fan_in), _int_fan(fan_out)
        if fi is None or fo is None:
            return None
        return g * g * fi / max(fi, fo)
    v = weight_variance(init, fan_in, fan_out)
    fi = _int_fan(fan_in)
    if v is None or fi is None:
        return None
    return fi * v


def weight_variance(init: InitSpec, fan_in: Fan, fan_out: Fan) -> float | None:
    """sigma^2 of one weight entry, or None unless it is computable."""
    s = init.scheme
    fi, fo = _int_fan(fan_in), _int_fan(fan_out)
    if s == "torch-linear":
        return None if fi is None else 1.0 / (3.0 * fi)
    if s == "torch-rnn":
        h = _int_fan(init.get("hidden", fan_in))  # type: ignore[arg-type]
        return None if h is None else 1.0 / (3.0 * h)
    if s == "torch-embedding":
        return 1.0
    if s == "normal":
        std = _num(init.get("std", 1.0))
        return None if std is None else std * std
    if s == "uniform":
        a, b = _num(init.get("a", 0.0)), _num(init.get("b", 1.0))
        return None if a is None or b is None else (b - a) ** 2 / 12.0
    if s == "trunc_normal":
        mean, std = _num(init.get("mean", 0.0)), _num(init.get("std", 1.0))
        a, b = _num(init.get("a", -2.0)), _num(init.get("b", 2.0))
        if None in (mean, std, a, b):
            return None
        return _truncated_normal_variance(mean, std, a, b)  # type: ignore[arg-type]
    if s in ("xavier_normal", "xavier_uniform"):
        g = _gain_param(init)
        if g is None or fi is None or fo is None:
            return None
        return 2.0 * g * g / (fi + fo)
    if s in ("kaiming_normal", "kaiming_uniform"):
        g = _kaiming_gain(init)
        mode = init.get("mode", "fan_in")
        fan = fi if mode == "fan_in" else fo if mode == "fan_out" else None
        if g is None or fan is None:
            return None
        return g * g / fan
    if s in ("orthogonal", "eye", "dirac"):
        g = _gain_param(init) if s == "orthogonal" else 1.0
        if g is None or fi is None or fo is None:
            return None
        return g * g / max(fi, fo)
    if s in ("zeros", "ones", "constant"):
        return 0.0
    if s == "measured":
        return _num(init.get("variance"))
    return None


def bias_variance(init: InitSpec | None, fan_in: Fan) -> float:
    """E[b^2] of a bias, 0.0 when there is none or it is unknown.

    A bias adds its second moment to the pre-activation variance; PyTorch's default
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) adds 1/(3 fan_in), negligible for wide layers, so an
    unknown bias is taken as no bias rather than as a reason to give up.
    """
    if init is None:
        return 0.0
    s = init.scheme
    if s in ("torch-linear", "torch-rnn"):
        fan = _int_fan(init.get("hidden", fan_in) if s == "torch-rnn" else fan_in)  # type: ignore[arg-type]
        return 0.0 if fan is None else 1.0 / (3.0 * fan)
    if s in ("ones", "constant"):
        val = _num(init.get("val", 1.0 if s == "ones" else None))
        return 0.0 if val is None else val * val
    if s == "measured":
        v, m = _num(init.get("variance", 0.0)), _num(init.get("mean", 0.0))
        return (v or 0.0) + (m or 0.0) ** 2
    if s in ("normal", "trunc_normal", "uniform"):
        v = weight_variance(init, fan_in, fan_in)
        if s == "uniform":
            a, b = _num(init.get("a", 0.0)), _num(init.get("b", 1.0))
            mean = None if a is None or b is None else (a + b) / 2.0
        else:
            mean = _num(init.get("mean", 0.0))
        return (v or 0.0) + (mean or 0.0) ** 2
    return 0.0


def _same(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=1e-3)


def assumed_nonlinearity(init: InitSpec) -> str | None:
    """The nonlinearity whose gain the scheme builds in, or None when it assumes none.

    kaiming: its `nonlinearity` argument; the default leaky_relu with a=0 has ReLU's gain and
    counts as 'relu'; conv*/linear count as 'linear'. xavier, orthogonal and a kaiming draw given
    its gain: read back from the gain (5/3 tanh, sqrt 2 relu, 3/4 selu, 1 linear).
    """
    s = init.scheme
    if s in ("kaiming_normal", "kaiming_uniform") and init.get("gain") is None:
        nl = init.get("nonlinearity", "leaky_relu")
        if not isinstance(nl, str):
            return None
        if nl == "leaky_relu":
            a = _num(init.get("a", 0.0))
            if a is None:
                return None
            return "relu" if a == 0.0 else "leaky_relu"
        if nl in _LINEAR_FNS:
            return "linear"
        return nl
    if s in ("xavier_normal", "xavier_uniform", "orthogonal", "kaiming_normal", "kaiming_uniform"):
        g = _gain_param(init)
        if g is None:
            return None
        for name, value in (("tanh", 5.0 / 3.0), ("relu", math.sqrt(2.0)), ("selu", 0.75), ("linear", 1.0)):
            if _same(g, value):
                return name
    return None


def zero_mean(init: InitSpec | None) -> bool:
    """Drawn symmetric about zero (each weight as likely as its negation), or zero: a sum of
    branches whose layers are drawn so is uncorrelated with the other parts of the sum at
    initialisation. A bias left to PyTorch's default (None) or absent ('none') is such a draw."""
    if init is None:
        return True
    s = init.scheme
    if s in ("torch-linear", "torch-rnn", "torch-embedding", "xavier_normal", "xavier_uniform",
             "kaiming_normal", "kaiming_uniform", "orthogonal", "zeros", "none"):
        return True
    if s == "normal":
        return _num(init.get("mean", 0.0)) == 0.0
    if s == "trunc_normal":
        a, b = _num(init.get("a", -2.0)), _num(init.get("b", 2.0))
        return _num(init.get("mean", 0.0)) == 0.0 and a is not None and b is not None and a == -b
    if s == "uniform":
        a, b = _num(init.get("a", 0.0)), _num(init.get("b", 1.0))
        return a is not None and b is not None and a == -b
    return False


def is_dead(init: InitSpec) -> bool:
    """Every entry equal (zeros, ones, constant, a zero-width draw): each unit of the layer gets
    the same gradient, or none, so training cannot break the symmetry."""
    s = init.scheme
    if s in ("zeros", "ones", "constant"):
        return True
    if s in ("normal", "trunc_normal", "uniform", "measured"):
        return weight_variance(init, None, None) == 0.0
    return False


def matched_init(activation: str, param: float | None = None) -> InitSpec | None:
    """The textbook init for a layer followed by `activation`: kaiming (fan_in) for the
    ReLU family, xavier with the activation's gain for tanh/sigmoid/identity, LeCun
    (kaiming, 'linear') for SELU. None where no standard choice exists."""
    if activation in ("relu", "gelu", "silu", "mish", "elu", "celu", "relu6", "hardswish", "softplus"):
        return InitSpec("kaiming_normal", (("nonlinearity", "relu"),))
    if activation in ("leaky_relu", "prelu"):
        a = (0.01 if activation == "leaky_relu" else 0.25) if param is None else float(param)
        return InitSpec("kaiming_normal", (("a", a), ("nonlinearity", "leaky_relu")))
    if activation == "selu":
        return InitSpec("kaiming_normal", (("nonlinearity", "linear"),))
    if activation == "tanh":
        return InitSpec("xavier_normal", (("gain", 5.0 / 3.0),))
    if activation in ("sigmoid", "identity", "linear"):
        return InitSpec("xavier_normal", (("gain", 1.0),))
    return None
