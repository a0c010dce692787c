"""Evaluations for the finite-difference check: the function autograd differentiates, and kinks.

Autograd does not differentiate the Python function the user wrote, but that function with its
stop-gradients held constant: a `.detach()`, a `.data`, an `.item()`, anything computed under
`torch.no_grad()`. Finite differences of the plain function see through them, so a SimSiam
stop-gradient, a backbone frozen under `no_grad` or a `x + (q(x) - x).detach()` straight-through
estimator looked like a wrong backward. The reference evaluation (at θ) records the value of
every such cut, in call order; the perturbed evaluations (θ ± h·v) replay those values. Both
sides then differentiate the same function. Gradient hooks registered during the forward
(gradient scaling, reversal, clipping) are deliberately not the derivative: they are not
registered inside the check, and counted.

Piecewise functions (ReLU, max-pooling, clamp, abs, round, comparisons, argmax) have kinks
where autograd picks one side. A central difference that crosses one measures a mixture of the
two sides and disagrees with autograd although nothing is wrong (six false GL704 on a ResNet-18
with zero-initialised residual branches). When a direction disagrees, its evaluations are
repeated with every branch decision of those operators fingerprinted (at the ATen level, so
it sees inside every module); a direction whose +h and −h evaluations decided differently
crossed a kink and proves nothing.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Tape:
    """What the reference evaluation recorded."""

    cuts: list[Any] = field(default_factory=list)  # stop-gradient values, in call order
    eps: float = 2.220446049250313e-16  # epsilon of the least precise floating result seen
    hooks: int = 0  # gradient hooks the forward registered (left out of the check)


@dataclass
class Perturbed:
    """One perturbed evaluation: L, the fingerprint of its branch decisions, and whether the
    code took another path than at the reference point (then the sample proves nothing)."""

    value: float
    fingerprint: Any
    diverged: bool


def _modes() -> tuple[type, type]:
    """The two mode classes, made on first use (torch is imported only inside the probe)."""
    global _FUNCTION_WATCH, _KINK_WATCH
    if _FUNCTION_WATCH is None:
        _FUNCTION_WATCH, _KINK_WATCH = _make_modes()
    return _FUNCTION_WATCH, _KINK_WATCH


_FUNCTION_WATCH: Any = None
_KINK_WATCH: Any = None

# ATen operators whose branch is the sign of their input (x - kink), by base name.
_SIGN_OF_INPUT = {"relu", "relu_", "leaky_relu", "leaky_relu_", "_prelu_kernel", "prelu", "abs", "abs_",
                  "hardshrink", "softshrink", "rrelu_with_noise", "rrelu_with_noise_"}
_CLAMPS = {"clamp", "clamp_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "hardtanh", "hardtanh_",
           "threshold", "threshold_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_"}
_PAIRWISE = {"maximum", "minimum", "fmax", "fmin"}
# Piecewise constant: the output itself is the decision.
_STEPS = {"round", "round_", "floor", "floor_", "ceil", "ceil_", "trunc", "trunc_", "sign", "sign_", "sgn",
          "sgn_", "frac", "frac_", "remainder", "fmod", "floor_divide", "heaviside"}
_GLOBAL_EXTREMES = {"max", "min"}  # max.default / min.default: where the extreme sits


def _bounds(name: str, args: tuple, kwargs: dict) -> list[Any]:
    if name.startswith("clamp_min"):
        return [args[1] if len(args) > 1 else kwargs.get("min")]
    if name.startswith("clamp_max"):
        return [args[1] if len(args) > 1 else kwargs.get("max")]
    if name.startswith("clamp"):
        return [args[1] if len(args) > 1 else kwargs.get("min"), args[2] if len(args) > 2 else kwargs.get("max")]
    if name.startswith("hardtanh"):
        return [args[1] if len(args) > 1 else -1.0, args[2] if len(args) > 2 else 1.0]
    if name.startswith("threshold"):
        return [args[1]]
    return [-3.0, 3.0]  # hardswish, hardsigmoid


def function_forward_test(torch: Any, through_apply: bool = True) -> Callable[[], bool]:
    """A test of whether the code that calls it runs inside a custom autograd Function's forward.
    Its frames sit below Function.apply's where apply is Python (torch up to 2.13); from 2.14 apply
    is built in (`Function.apply.__func__` raised AttributeError, and the probe's gradient check
    could not run at all): a frame is then a Function's forward when its code is the `forward` of
    a subclass of Function (each code object looked up once). `through_apply=False`: that second
    test whatever torch is (tests)."""
    apply = torch.autograd.function.Function.apply
    apply_code = getattr(getattr(apply, "__func__", None), "__code__", None) if through_apply else None
    known: dict[Any, bool] = {}

    def forward_of_a_function(code: Any) -> bool:
        found = known.get(code)
        if found is None:
            found = False
            stack = [torch.autograd.Function]
            while stack and not found:
                cls = stack.pop()
                stack.extend(cls.__subclasses__())
                forward = cls.__dict__.get("forward")
                forward = getattr(forward, "__func__", forward)  # (a staticmethod's function)
                found = getattr(forward, "__code__", None) is code
            known[code] = found
        return found

    def in_function_forward() -> bool:
        frame = sys._getframe(2)
        while frame is not None:
            code = frame.f_code
            if code is apply_code or (apply_code is None and code.co_name == "forward" and forward_of_a_function(code)):
                return True
            frame = frame.f_back
        return False

    return in_function_forward


def _make_modes() -> tuple[type, type]:
    import torch
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    detaching = {torch.Tensor.detach, torch.detach, torch.Tensor.detach_}
    to_python = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.numpy}
    data_get = torch._C.TensorBase.data.__get__
    register_hook = torch.Tensor.register_hook
    # A custom Function's forward runs under no_grad too, but its backward defines the gradient:
    # what it computes is no stop-gradient.
    in_function_forward = function_forward_test(torch)
    low = (torch.float32, torch.float16, torch.bfloat16)

    class _NoHandle:
        def remove(self) -> None:
            pass

    class FunctionWatch(TorchFunctionMode):
        def __init__(self, tape: Tape, replay: bool):
            super().__init__()
            self.tape, self.replay, self.k, self.diverged = tape, replay, 0, False

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is register_hook:
                if not self.replay:
                    self.tape.hooks += 1
                return _NoHandle()
            out = func(*args, **(kwargs or {}))
            if not self.replay:
                for t in _float_tensors(out):
                    if t.dtype in low:
                        self.tape.eps = max(self.tape.eps, torch.finfo(t.dtype).eps)
            if func in to_python or func in detaching or func == data_get:
                return self._cut(out)
            if (not torch.is_grad_enabled() and isinstance(out, torch.Tensor) and out.is_floating_point()
                    and not in_function_forward()):
                return self._cut(out)
            return out

        def _cut(self, out: Any) -> Any:
            if not self.replay:
                self.tape.cuts.append(_snapshot(out))
                return out
            k, self.k = self.k, self.k + 1
            if k >= len(self.tape.cuts) or not _same_kind(self.tape.cuts[k], out):
                self.diverged = True
                return out
            return _snapshot(self.tape.cuts[k])

    class KinkWatch(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.decisions: list[Any] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = func.__name__.split(".")[0]
            x = args[0] if args and isinstance(args[0], torch.Tensor) and args[0].is_floating_point() else None
            if x is not None:
                # Decided on the inputs, before an in-place operator overwrites them.
                if name in _SIGN_OF_INPUT:
                    self._note(torch.sign(x))
                elif name in _CLAMPS:
                    for b in _bounds(name, args, kwargs):
                        if b is not None:
                            self._note(torch.sign(x - b))
                elif name in _PAIRWISE and len(args) > 1:
                    self._note(torch.sign(x - args[1]))
                elif name in _GLOBAL_EXTREMES and len(args) == 1 and x.numel():
                    self._note(torch.argmax(x) if name == "max" else torch.argmin(x))
            out = func(*args, **kwargs)
            if x is not None or any(isinstance(a, torch.Tensor) and a.is_floating_point() for a in args):
                if name in _STEPS:
                    self._note(out)
                else:
                    for t in _tensors(out):
                        if not t.is_floating_point() and not t.is_complex():  # indices, masks, comparisons
                            self._note(t)
            return out

        def _note(self, d: Any) -> None:
            d = d.detach().reshape(-1).to(torch.float64)
            if d.numel():
                self.decisions.append((d * _weights(d.numel(), d.device)).sum())

        def fingerprint(self) -> Any:
            return torch.stack(self.decisions) if self.decisions else None

    def _float_tensors(value: Any) -> list[Any]:
        return [t for t in _tensors(value) if t.is_floating_point()]

    def _tensors(value: Any) -> list[Any]:
        if isinstance(value, torch.Tensor):
            return [value]
        if isinstance(value, (tuple, list)):
            return [t for v in value for t in _tensors(v)]
        return []

    return FunctionWatch, KinkWatch


_WEIGHTS: dict[tuple[int, str], Any] = {}


def _weights(n: int, device: Any) -> Any:
    """Fixed random weights: a decision vector's fingerprint is its weighted sum."""
    import torch

    key = (n, str(device))
    w = _WEIGHTS.get(key)
    if w is None:
        if len(_WEIGHTS) > 256:
            _WEIGHTS.clear()
        gen = torch.Generator(device="cpu").manual_seed(n)
        w = _WEIGHTS[key] = (torch.rand(n, generator=gen, dtype=torch.float64) + 0.5).to(device)
    return w


def _snapshot(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if hasattr(value, "copy") and type(value).__module__ == "numpy":
        return value.copy()
    if isinstance(value, list):
        return [_snapshot(v) for v in value]
    return value


def _same_kind(recorded: Any, value: Any) -> bool:
    import torch

    if isinstance(recorded, torch.Tensor) or isinstance(value, torch.Tensor):
        return (isinstance(recorded, torch.Tensor) and isinstance(value, torch.Tensor)
                and recorded.shape == value.shape and recorded.dtype == value.dtype)
    return type(recorded) is type(value)


def reference(f: Callable[[], Any]) -> tuple[Any, Tape]:
    """f() at the reference point, recording its stop-gradient values and its precision."""
    tape = Tape()
    watch, _ = _modes()
    with watch(tape, replay=False):
        value = f()
    return value, tape


def perturbed(f: Callable[[], Any], tape: Tape, kinks: bool = True) -> Perturbed:
    """f() at a perturbed point, with the reference point's stop-gradient values and (`kinks`)
    the fingerprint of its branch decisions. Watching kinks at the ATen level makes a forward
    ~3x slower on CPU (measured on a float64 ResNet-18: 1.0 s -> 3.0 s with a pass-through
    dispatch mode), so the check asks for it only to explain a disagreement. Evaluated with
    grad mode on: user code may assume it."""
    import contextlib

    import torch

    watch, kink_mode = _modes()
    fw = watch(tape, replay=True)
    kw = kink_mode() if kinks else None
    with fw, (kw if kw is not None else contextlib.nullcontext()):
        value = f()
    out = float(value.detach()) if isinstance(value, torch.Tensor) else math.nan
    return Perturbed(out, kw.fingerprint() if kw is not None else None, fw.diverged or fw.k != len(tape.cuts))


def same_branches(a: Perturbed, b: Perturbed) -> bool:
    """Whether two evaluations took every branch alike (no kink between them)."""
    import torch

    if a.diverged or b.diverged:
        return False
    if a.fingerprint is None or b.fingerprint is None:
        return a.fingerprint is None and b.fingerprint is None
    return a.fingerprint.shape == b.fingerprint.shape and bool(torch.equal(a.fingerprint, b.fingerprint))


def find_cuts(run: Callable[[], Any], path: str, limit: int = 5) -> list[tuple[int, str]]:
    """(line, what) of the stop-gradients run() executes in the file `path`, in call order and
    each line once: the `.detach()`, `.data`, `.item()` and `torch.no_grad()` that explain
    parameters without gradient (GL707)."""
    import os

    import torch
    from torch.overrides import TorchFunctionMode

    real = os.path.realpath(path)
    kinds = {torch.Tensor.detach: ".detach()", torch.detach: ".detach()", torch.Tensor.detach_: ".detach_()",
             torch.Tensor.item: ".item()", torch.Tensor.tolist: ".tolist()", torch.Tensor.numpy: ".numpy()"}
    data_get = torch._C.TensorBase.data.__get__
    found: dict[int, str] = {}

    def user_line() -> int | None:
        frame = sys._getframe(2)
        while frame is not None:
            if os.path.realpath(frame.f_code.co_filename) == real:
                return frame.f_lineno
            frame = frame.f_back
        return None

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            what = kinds.get(func) if not isinstance(func, type) else None
            if what is None and func == data_get:
                what = ".data"
            if what is None and not torch.is_grad_enabled() and isinstance(out, torch.Tensor) and out.is_floating_point():
                what = "torch.no_grad()"
            if what is not None and len(found) < limit:
                line = user_line()
                if line is not None and line not in found:
                    found[line] = what
            return out

    with Watch():
        run()
    return sorted(found.items())
