"""Finite-difference gradient check in float64, then localisation of a wrong backward.

The whole loss is checked along a few random directions v of unit norm over all parameters:
the central difference D(h) = (L(θ+hv) − L(θ−hv)) / 2h against autograd's ∇L·v.

- ε is that of the least precise floating result any torch call produced while computing L
  (watched with a TorchFunctionMode): float64, or float32 when code inside the float64 copy
  computes in float32 (x.float() in a norm, a kernel without double).
- h = ε^(1/3) balances truncation against rounding.
- Tolerance = 10 × (truncation + rounding) + 1e-3 relative. Truncation is estimated by
  Richardson: the error of D grows 4× from h to 2h, so |D(2h) − D(h)| / 3. Rounding is
  100·ε·|L|/h at float64 and ε·|L|/h at float32.
- A direction fails when |∇L·v − D(h)| exceeds the tolerance; the check fails when most
  directions fail. Unit-norm directions move each element by about h/√n, so few ReLU kinks are
  crossed; one that is crossed makes D(h) and D(2h) disagree, which widens the tolerance
  instead of failing.

Localisation ("fast mode": random output projections and random input directions, never a full
Jacobian): every custom `torch.autograd.Function` of the target's file is checked on the inputs
it saw in the forward pass; when the whole check fails, every module is checked on the inputs
it saw, smallest first, and the smallest failing one is reported.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable

DIRECTIONS = 3
MAX_CALLS_PER_FUNCTION = 2
MAX_MODULES = 400


@dataclass
class Failure:
    kind: str  # 'function' or 'module'
    name: str  # Function qualname, or module path
    type_name: str
    autograd: float
    numeric: float
    detail: str = ""
    obj: Any = None  # the Function class (for its source line); not serialised
    span: Any = None  # where the report puts it (set by the runner, which knows the file)


@dataclass
class GradcheckResult:
    ran: bool = False
    passed: bool | None = None
    directions: list[dict[str, float]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    checked_functions: dict[str, bool] = field(default_factory=dict)  # qualname -> passed
    notes: list[str] = field(default_factory=list)


def find_functions(module: Any) -> list[type]:
    """Custom autograd.Function subclasses defined in (or imported into) the target's module."""
    import torch

    found = []
    for value in list(vars(module).values()):
        if (isinstance(value, type) and issubclass(value, torch.autograd.Function)
                and value is not torch.autograd.Function and "backward" in _own_attrs(value)):
            found.append(value)
    return found


def _own_attrs(cls: type) -> set[str]:
    import torch

    names: set[str] = set()
    for base in cls.__mro__:
        if base is torch.autograd.Function:
            break
        names.update(vars(base))
    return names


@contextlib.contextmanager
def _seeded(device: str, seed: int):
    """Every evaluation draws the same dropout masks (and other torch randomness), and the
    caller's RNG state is left as it was."""
    import torch

    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def directional_check(f: Callable[[], Any], variables: list[Any], seed: int, directions: int = DIRECTIONS,
                      ) -> tuple[bool, list[dict[str, float]], str]:
    """Compare autograd and central differences of the scalar f() along random directions of the
    variables (tensors, changed in place and restored). Returns (passed, per-direction numbers, error)."""
    import torch

    variables = [v for v in variables if v.requires_grad]
    if not variables:
        return True, [], ""
    value, eps = lowest_precision(f)
    try:
        grads = torch.autograd.grad(value, variables, allow_unused=True)
    except RuntimeError as exc:
        # A backward that returns the wrong number or shape of gradients fails here.
        return False, [], f"autograd failed: {exc}"
    h = eps ** (1 / 3)
    # Rounding of L is ~eps·|L| (cancellation inside can make it larger): a 100× margin costs
    # nothing at float64; at float32 (measured: the real error is ~100× below eps·|L|/h for a
    # float64 model with float32 norms) no extra margin, or the check would see nothing.
    margin = 100 if eps < 1e-10 else 1
    gen = torch.Generator(device="cpu").manual_seed(seed)
    originals = [v.detach().clone() for v in variables]
    rows = []
    failed = 0
    for _ in range(directions):
        raw = [torch.randn(v.shape, generator=gen, dtype=torch.float64) for v in variables]
        # Unit norm over all variables: each element moves by ~h/sqrt(n), so few ReLU kinks
        # are crossed, while the rounding error (relative to L) stays at eps/h.
        norm = math.sqrt(sum(float((r * r).sum()) for r in raw)) or 1.0
        dirs = [(r / norm).to(device=v.device, dtype=v.dtype) for r, v in zip(raw, variables)]
        ad = sum(float((g * d).sum()) for g, d in zip(grads, dirs) if g is not None)

        def at(step: float) -> float:
            with torch.no_grad():
                for v, o, d in zip(variables, originals, dirs):
                    v.copy_(o + step * d)
            # Evaluated with grad mode on: user code may register hooks or otherwise assume it.
            try:
                return float(f().detach())
            finally:
                with torch.no_grad():
                    for v, o in zip(variables, originals):
                        v.copy_(o)

        def diff(step: float) -> tuple[float, float]:
            plus, minus = at(step), at(-step)
            return (plus - minus) / (2 * step), max(abs(plus), abs(minus))

        fd1, mag = diff(h)
        fd2, _ = diff(2 * h)
        if not (math.isfinite(fd1) and math.isfinite(ad)):
            row = {"autograd": ad, "numeric": fd1, "tolerance": math.nan, "step": h}
        else:
            truncation = abs(fd2 - fd1) / 3
            rounding = margin * eps * max(mag, abs(float(value.detach()))) / h
            tol = 10 * (truncation + rounding) + 1e-3 * max(abs(ad), abs(fd1))
            row = {"autograd": ad, "numeric": fd1, "tolerance": tol, "step": h}
        rows.append(row)
        if not abs(row["autograd"] - row["numeric"]) <= row["tolerance"]:
            failed += 1
    return failed * 2 <= len(rows) if rows else True, rows, ""


def lowest_precision(f: Callable[[], Any]) -> tuple[Any, float]:
    """f() and the machine epsilon of the least precise floating result of any torch call made
    while computing it: code that computes in float32 inside the float64 copy (x.float() in a
    norm, a kernel without double) has float32 rounding, and the step and tolerance must follow."""
    import torch
    from torch.overrides import TorchFunctionMode

    worst = [torch.finfo(torch.float64).eps]

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in _float_leaves(out):
                if t.dtype in (torch.float32, torch.float16, torch.bfloat16):
                    worst[0] = max(worst[0], torch.finfo(t.dtype).eps)
            return out

    with Watch():
        value = f()
    eps = max(worst[0], torch.finfo(value.dtype).eps)
    return value, eps


def _clone_args(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple):
        return tuple(_clone_args(v) for v in value)
    if isinstance(value, list):
        return [_clone_args(v) for v in value]
    if isinstance(value, dict):
        return {k: _clone_args(v) for k, v in value.items()}
    return value


def _float_leaves(value: Any) -> list[Any]:
    import torch

    out: list[Any] = []
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            out.append(value)
    elif isinstance(value, (tuple, list)):
        for v in value:
            out.extend(_float_leaves(v))
    elif isinstance(value, dict):
        for v in value.values():
            out.extend(_float_leaves(v))
    return out


def _fresh(value: Any) -> Any:
    """A copy of the inputs for one evaluation: in-place ops in the checked code must not change
    the captured originals (a clone keeps the graph back to them)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, tuple):
        return tuple(_fresh(v) for v in value)
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    return value


def _projection(outputs: Any, seed: int) -> Any:
    """Σ u·out over every float output tensor with a fixed random u: one scalar per check."""
    import torch

    total = None
    gen = torch.Generator(device="cpu").manual_seed(seed + 7)
    for t in _float_leaves(outputs):
        u = torch.randn(t.shape, generator=gen, dtype=torch.float64).to(device=t.device, dtype=t.dtype)
        term = (t * u).sum()
        total = term if total is None else total + term
    return total


def check_callable(fn: Callable[..., Any], args: tuple, kwargs: dict, extra: list[Any], device: str,
                   seed: int) -> tuple[bool | None, list[dict[str, float]], str]:
    """Directional check of fn on captured inputs: variables are its float inputs and `extra`
    (a module's parameters). None: nothing to check (no float input needs a gradient)."""
    args, kwargs = _clone_args(args), _clone_args(kwargs)
    leaves = _float_leaves((args, kwargs))
    for t in leaves:
        t.requires_grad_(True)
    variables = leaves + [p for p in extra if p.requires_grad]

    def f() -> Any:
        with _seeded(device, seed):
            return _projection(fn(*_fresh(args), **_fresh(kwargs)), seed)

    first = f()
    if first is None or not first.requires_grad:
        return None, [], ""
    return directional_check(f, variables, seed)


@contextlib.contextmanager
def capture_function_inputs(functions: list[type], module: Any, store: dict[type, list[tuple]]):
    """Wrap each Function's `apply` (and module-level aliases of it) to record its inputs."""
    patched: list[tuple[Any, str, Any, bool]] = []
    for cls in functions:
        original = cls.apply
        had_own = "apply" in vars(cls)

        def wrapper(*args: Any, _cls: type = cls, _orig: Any = original, **kwargs: Any) -> Any:
            calls = store.setdefault(_cls, [])
            if len(calls) < MAX_CALLS_PER_FUNCTION:
                calls.append((_clone_args(args), _clone_args(kwargs)))
            return _orig(*args, **kwargs)

        patched.append((cls, "apply", vars(cls).get("apply"), had_own))
        cls.apply = wrapper  # a plain function on the class: MyFn.apply(x) calls it with x
        for key, value in list(vars(module).items()):
            if value == original and not isinstance(value, type):
                patched.append((module, key, value, True))
                setattr(module, key, wrapper)
    try:
        yield
    finally:
        for owner, key, value, had in reversed(patched):
            if owner in functions and not had:
                delattr(owner, key)
            else:
                setattr(owner, key, value)


def run_gradcheck(model: Any, inputs: tuple[tuple, dict], loss_of: Callable[[Any], Any], functions: list[type],
                  user_module: Any, device: str, seed: int) -> GradcheckResult:
    """Check the model's gradient in float64 on a deep copy; localise a failure."""
    import torch

    result = GradcheckResult()
    try:
        model64 = copy.deepcopy(model).to(dtype=torch.float64)
    except Exception as exc:  # some models cannot be copied (open handles, compiled code)
        result.notes.append(f"gradient check skipped: the model cannot be deep-copied ({type(exc).__name__}: {exc})")
        return result
    model64.train()
    args, kwargs = _to64(inputs[0], device), _to64(inputs[1], device)
    calls: dict[type, list[tuple]] = {}
    params = [p for p in model64.parameters() if p.requires_grad]

    def loss() -> Any:
        with _seeded(device, seed):
            return loss_of(model64(*_fresh(args), **_fresh(kwargs)))

    with capture_function_inputs(functions, user_module, calls):
        first = loss()
    result.ran = True
    if not first.requires_grad:
        result.notes.append("gradient check skipped: the loss does not depend on the parameters")
        result.ran = False
        return result
    ok, rows, error = directional_check(loss, params + [t for t in _float_leaves((args, kwargs))
                                                        if t.requires_grad], seed)
    result.passed, result.directions = ok, rows
    if error:
        result.notes.append(error)

    for cls in functions:
        name = cls.__qualname__
        for call_args, call_kwargs in calls.get(cls, []):
            passed, frows, ferr = check_callable(cls.apply, call_args, call_kwargs, [], device, seed)
            if passed is None:
                continue
            result.checked_functions[name] = result.checked_functions.get(name, True) and passed
            if not passed:
                worst = _worst(frows)
                result.failures.append(Failure("function", name, "autograd.Function", worst[0], worst[1],
                                               ferr, obj=cls))
                break
    if result.passed is False and not any(f.kind == "function" for f in result.failures):
        result.failures.extend(_localise_modules(model64, args, kwargs, device, seed))
    return result


def _worst(rows: list[dict[str, float]]) -> tuple[float, float]:
    if not rows:
        return math.nan, math.nan
    row = max(rows, key=lambda r: abs(r["autograd"] - r["numeric"]) if math.isfinite(r["numeric"]) else math.inf)
    return row["autograd"], row["numeric"]


def _to64(value: Any, device: str) -> Any:
    import torch

    from gradlint.probe.measure import to_device

    return to_device(value, torch.device(device), torch.float64)


def _localise_modules(model: Any, args: Any, kwargs: Any, device: str, seed: int) -> list[Failure]:
    """Check every module on the inputs it saw, deepest first; report the smallest failing ones."""
    seen: dict[str, tuple] = {}
    named = list(model.named_modules())
    by_id = {id(m): n for n, m in named}
    handles = []

    def pre_hook(mod: Any, a: Any, kw: Any) -> None:
        name = by_id[id(mod)]
        if name not in seen:
            seen[name] = (_clone_args(a), _clone_args(kw))

    for _, m in named:
        handles.append(m.register_forward_pre_hook(pre_hook, with_kwargs=True))
    try:
        with _seeded(device, seed):
            model(*_fresh(args), **_fresh(kwargs))
    finally:
        for h in handles:
            h.remove()
    failed: set[str] = set()
    out: list[Failure] = []
    order = sorted((n for n, _ in named if n in seen), key=lambda n: -(n.count(".") + (n != "")))
    modules = dict(named)
    for name in order[:MAX_MODULES]:
        if any(f == name + "." or f.startswith(name + ".") or (name == "" and f) for f in failed):
            failed.add(name)  # a descendant already explains it
            continue
        mod = modules[name]
        a, kw = seen[name]
        passed, rows, err = check_callable(mod, a, kw, list(mod.parameters()), device, seed)
        if passed is False:
            failed.add(name)
            ad, fd = _worst(rows)
            out.append(Failure("module", name, type(mod).__name__, ad, fd, err))
    return out
