"""Finite-difference gradient check in float64, then localisation of a wrong backward.

The whole loss is checked along a few random directions v of unit norm over all parameters:
the central difference D(h) = (L(θ+hv) − L(θ−hv)) / 2h against autograd's ∇L·v, on the
float64 copy of the model and on one sample of the probe's batch (GRADCHECK_BATCH when the model
cannot run on one).

- ε is that of the least precise floating result any torch call produced while computing L:
  float64, or float32 when code inside the float64 copy computes in float32 (x.float() in a
  norm, a kernel without double).
- float64: h = √ε, tolerance = 10 × 100·ε·|L|/h + 1e-3 relative (truncation is ~h²). float32
  inside: h = ε^(1/3), and the truncation error estimated by Richardson from D(2h).
- The function compared is the one autograd differentiates: stop-gradients (`detach`, `.data`,
  `no_grad`, `.item()`) are held at their reference values, gradient hooks left out; a
  direction whose ±h evaluations took different branches at a ReLU/max/clamp/round kink is
  dropped and another drawn (gradlint.probe.evaluate; branches are watched only when a
  direction disagrees, since watching them triples a forward's cost). The parameters are
  first moved by a tiny random amount (BASE_SHIFT of their scale): exact zeros at
  initialisation (zero-init residual branches, zero biases into ReLU) would otherwise put the
  base point on a kink.
- A direction fails when |∇L·v − D(h)| exceeds the tolerance; the check fails when most
  directions fail, and proves nothing when every direction crossed a kink.

Custom `torch.autograd.Function`s of the target's file are checked first, on the inputs they saw
in the forward pass. One whose forward is locally constant (round, sign: its backward is a
surrogate by design) is a straight-through estimator; one whose forward returns its input and
whose backward scales the true gradient by a constant is gradient scaling or reversal. Both
are deliberate, noted, and held constant (detached) in the whole check. When the whole check
fails anyway, the model's own (non-torch) modules are checked on the inputs they saw, from the
top down, descending only into failing ones ("fast mode": random output projections, never a
full Jacobian); the smallest failing one is reported. Built-in torch modules are trusted.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

DIRECTIONS = 3
LOCALISE_DIRECTIONS = 2
MAX_CALLS_PER_FUNCTION = 2
MAX_MODULES = 64
GRADCHECK_BATCH = 2
BASE_SHIFT = 1e-4


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
    deliberate: dict[str, str] = field(default_factory=dict)  # qualname -> why its backward differs
    crossed: int = 0  # directions dropped at kinks
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


@dataclass
class Directional:
    """The outcome of a directional check. `passed` is None when no direction could be used:
    every one crossed a kink, or the code took another path when perturbed."""

    passed: bool | None
    rows: list[dict[str, float]]
    error: str = ""
    crossed: int = 0  # directions dropped because they crossed a kink
    hooks: int = 0  # gradient hooks the forward registered (not part of the check)
    constant: bool = False  # the function did not move along any usable direction, autograd did
    ratio: float | None = None  # autograd / finite difference when it is one constant over all rows


def directional_check(f: Callable[[], Any], variables: list[Any], seed: int, directions: int = DIRECTIONS,
                      deadline: float | None = None) -> Directional:
    """Compare autograd and central differences of the scalar f() along random directions of the
    variables (tensors, changed in place and restored), with f's stop-gradients held at their
    reference values and kink-crossing directions dropped (see gradlint.probe.evaluate)."""
    import torch

    from gradlint.probe import evaluate

    variables = [v for v in variables if v.requires_grad]
    if not variables:
        return Directional(True, [])
    value, tape = evaluate.reference(f)
    try:
        grads = torch.autograd.grad(value, variables, allow_unused=True)
    except RuntimeError as exc:
        # A backward that returns the wrong number or shape of gradients fails here.
        return Directional(False, [], f"autograd failed: {exc}", hooks=tape.hooks)
    eps = max(tape.eps, torch.finfo(value.dtype).eps)
    coarse = eps > 1e-10
    # float64: h = sqrt(eps) makes the rounding error ~1e-8 relative and the truncation error
    # ~h² (negligible), and keeps each element's move tiny, so kinks are rarely crossed.
    # Code that computes in float32 inside the copy (x.float() in a norm): h = eps^(1/3) and a
    # Richardson estimate of the truncation error, as a float32 step needs.
    h = eps ** (1 / 3) if coarse else math.sqrt(eps)
    # Rounding of L is ~eps·|L| (cancellation inside can make it larger): a 100× margin costs
    # nothing at float64; at float32 (measured: the real error is ~100× below eps·|L|/h for a
    # float64 model with float32 norms) no extra margin, or the check would see nothing.
    margin = 1 if coarse else 100
    gen = torch.Generator(device="cpu").manual_seed(seed)
    originals = [v.detach().clone() for v in variables]
    rows: list[dict[str, float]] = []
    failed = crossed = 0
    moved = False

    def at(step: float, dirs: list[Any], kinks: bool) -> Any:
        # Grad mode stays on (stop-gradients are told apart by it, and user code may assume
        # it), but no variable requires grad: no graph is built, which makes a float64 forward
        # ~3x cheaper on CPU (ResNet-18: 3.3 s -> 1.0 s).
        with torch.no_grad():
            for v, o, d in zip(variables, originals, dirs):
                v.copy_(o + step * d)
                v.requires_grad_(False)
        try:
            return evaluate.perturbed(f, tape, kinks)
        finally:
            with torch.no_grad():
                for v, o in zip(variables, originals):
                    v.copy_(o)
                    v.requires_grad_(True)

    for _ in range(2 * directions):
        if len(rows) >= directions or (deadline is not None and time.monotonic() >= deadline):
            break
        raw = [torch.randn(v.shape, generator=gen, dtype=torch.float64) for v in variables]
        # Unit norm over all variables: each element moves by ~h/sqrt(n).
        norm = math.sqrt(sum(float((r * r).sum()) for r in raw)) or 1.0
        dirs = [(r / norm).to(device=v.device, dtype=v.dtype) for r, v in zip(raw, variables)]
        ad = sum(float((g * d).sum()) for g, d in zip(grads, dirs) if g is not None)
        steps = [h, -h, 2 * h, -2 * h] if coarse else [h, -h]
        points = [at(s, dirs, False) for s in steps]
        row = _row(points, ad, h, coarse, margin * eps, abs(float(value.detach())))
        if any(p.diverged for p in points) or not abs(ad - row["numeric"]) <= row["tolerance"]:
            # Disagreement: was a kink crossed? Evaluate again, watching every branch.
            points = [at(s, dirs, True) for s in steps]
            if not all(evaluate.same_branches(points[0], p) for p in points[1:]):
                crossed += 1
                continue
            row = _row(points, ad, h, coarse, margin * eps, abs(float(value.detach())))
        moved = moved or points[0].value != points[1].value
        rows.append(row)
        if not abs(ad - row["numeric"]) <= row["tolerance"]:
            failed += 1
    passed = (failed * 2 <= len(rows)) if rows else None
    constant = bool(rows) and not moved and any(r["autograd"] != 0 for r in rows)
    return Directional(passed, rows, "", crossed, tape.hooks, constant, _constant_ratio(rows))


def _row(points: list[Any], ad: float, h: float, coarse: bool, rounding: float, at_reference: float,
         ) -> dict[str, float]:
    """One direction's numbers: the central difference, and the tolerance (see the module doc)."""
    plus, minus = points[0].value, points[1].value
    fd1 = (plus - minus) / (2 * h)
    truncation = abs((points[2].value - points[3].value) / (4 * h) - fd1) / 3 if coarse else 0.0
    mag = max(abs(plus), abs(minus), at_reference)
    tol = 10 * (truncation + rounding * mag / h) + 1e-3 * max(abs(ad), abs(fd1))
    if not (math.isfinite(fd1) and math.isfinite(ad)):
        tol = math.nan
    return {"autograd": ad, "numeric": fd1, "tolerance": tol, "step": h}


def _constant_ratio(rows: list[dict[str, float]]) -> float | None:
    """autograd / numeric when every row agrees on it to 1e-3: a backward that scales the true
    gradient by a constant (gradient scaling or reversal when the forward is the identity)."""
    ratios = [r["autograd"] / r["numeric"] for r in rows
              if r["numeric"] != 0 and math.isfinite(r["numeric"]) and math.isfinite(r["autograd"])]
    if len(ratios) < 2 or len(ratios) != len(rows):
        return None
    mid = sorted(ratios)[len(ratios) // 2]
    return mid if all(abs(r - mid) <= 1e-3 * max(abs(mid), 1e-12) for r in ratios) else None


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
                   seed: int, directions: int = DIRECTIONS) -> tuple[Directional | None, bool]:
    """Directional check of fn on captured inputs: variables are its float inputs and `extra`
    (a module's parameters). Returns (None when nothing needs a gradient, whether fn's first
    float output is its first float input unchanged)."""
    import torch

    args, kwargs = _clone_args(args), _clone_args(kwargs)
    leaves = _float_leaves((args, kwargs))
    for t in leaves:
        t.requires_grad_(True)
    variables = leaves + [p for p in extra if p.requires_grad]

    def f() -> Any:
        with _seeded(device, seed):
            return _projection(fn(*_fresh(args), **_fresh(kwargs)), seed)

    with _seeded(device, seed):
        out = fn(*_fresh(args), **_fresh(kwargs))
    outs = _float_leaves(out)
    if not outs or not any(t.requires_grad for t in outs):
        return None, False
    identity = bool(leaves) and outs[0].shape == leaves[0].shape and bool(torch.equal(outs[0].detach(), leaves[0].detach()))
    return directional_check(f, variables, seed, directions), identity


def classify_function(check: Directional, identity: bool) -> str:
    """'passed', 'failed', 'inconclusive', or why a backward is deliberately not the derivative."""
    if check.passed is None:
        return "inconclusive"
    if check.passed:
        return "passed"
    if check.constant:
        return "straight-through"
    if identity and check.ratio is not None:
        return "gradient-reversal" if check.ratio < 0 else "gradient-scaling"
    return "failed"


DELIBERATE = {
    "straight-through": "a straight-through estimator (its forward is locally constant; its backward passes a surrogate gradient)",
    "gradient-scaling": "gradient scaling (its forward returns its input; its backward scales the gradient by {ratio:.3g})",
    "gradient-reversal": "gradient reversal (its forward returns its input; its backward scales the gradient by {ratio:.3g})",
}


def _detach_all(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, tuple):
        return tuple(_detach_all(v) for v in value)
    if isinstance(value, list):
        return [_detach_all(v) for v in value]
    return value


@contextlib.contextmanager
def capture_function_inputs(functions: list[type], module: Any, store: dict[type, list[tuple]] | None,
                            held: set[type] | None = None):
    """Wrap each Function's `apply` (and module-level aliases of it) to record its inputs in
    `store` (unless None); the Functions in `held` return their output detached (held constant
    by the check)."""
    patched: list[tuple[Any, str, Any, bool]] = []
    held = held if held is not None else set()
    for cls in functions:
        original = cls.apply
        had_own = "apply" in vars(cls)

        def wrapper(*args: Any, _cls: type = cls, _orig: Any = original, **kwargs: Any) -> Any:
            if store is not None:
                calls = store.setdefault(_cls, [])
                if len(calls) < MAX_CALLS_PER_FUNCTION:
                    calls.append((_clone_args(args), _clone_args(kwargs)))
            out = _orig(*args, **kwargs)
            return _detach_all(out) if _cls in held else out

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


def _shift(params: list[Any], seed: int) -> None:
    """Move every parameter by BASE_SHIFT of its scale (1 for an all-zero tensor), off any kink
    an exact initial value puts it on."""
    import torch

    gen = torch.Generator(device="cpu").manual_seed(seed + 11)
    with torch.no_grad():
        for p in params:
            if not p.is_floating_point() or p.numel() == 0:
                continue
            scale = float(p.detach().abs().max()) or 1.0
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(device=p.device, dtype=p.dtype)
            p.add_(noise * (BASE_SHIFT * scale))


def small_batch(inputs: tuple[tuple, dict], raw: Any, size: int = GRADCHECK_BATCH) -> tuple[tuple[tuple, dict], Any]:
    """The first `size` samples of every tensor whose first dimension is the batch (the most
    common first dimension of the inputs): the check's cost follows the batch, its power does not."""
    import torch

    from gradlint.probe.measure import map_tensors

    firsts = [t.shape[0] for t in _all_tensors(inputs) if t.dim() >= 1]
    if not firsts:
        return inputs, raw
    batch = max(set(firsts), key=firsts.count)
    if batch <= size:
        return inputs, raw

    def cut(t: Any) -> Any:
        return t[:size] if isinstance(t, torch.Tensor) and t.dim() >= 1 and t.shape[0] == batch else t

    return map_tensors(inputs, cut), map_tensors(raw, cut)


def _all_tensors(value: Any) -> list[Any]:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _all_tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _all_tensors(v)]
    return []


def run_gradcheck(model: Any, inputs: tuple[tuple, dict], loss_of: Callable[[Any], Any], functions: list[type],
                  user_module: Any, device: str, seed: int, deadline: float | None = None) -> GradcheckResult:
    """Check the model's gradient in float64 on a deep copy; localise a failure. Past `deadline`
    (time.monotonic()) no further direction, Function or module is started."""
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
    _shift(params, seed)

    def loss() -> Any:
        with _seeded(device, seed):
            return loss_of(model64(*_fresh(args), **_fresh(kwargs)))

    with capture_function_inputs(functions, user_module, calls):
        first = loss()
    if not isinstance(first, torch.Tensor) or not first.requires_grad:
        result.notes.append("gradient check skipped: the loss does not depend on the parameters")
        return result
    result.ran = True

    held: set[type] = set()
    for cls in functions:
        name = cls.__qualname__
        for call_args, call_kwargs in calls.get(cls, []):
            if deadline is not None and time.monotonic() >= deadline:
                break
            check, identity = check_callable(cls.apply, call_args, call_kwargs, [], device, seed)
            if check is None:
                continue
            kind = classify_function(check, identity)
            if kind in DELIBERATE:
                result.deliberate[name] = kind
                held.add(cls)
                result.notes.append(f"gradient check: `{name}` is " + DELIBERATE[kind].format(ratio=check.ratio or 0.0)
                                    + "; held constant in the whole check")
                break
            if kind == "inconclusive":
                continue
            result.checked_functions[name] = result.checked_functions.get(name, True) and kind == "passed"
            if kind == "failed":
                worst = _worst(check.rows)
                result.failures.append(Failure("function", name, "autograd.Function", worst[0], worst[1],
                                               check.error, obj=cls))
                break

    with capture_function_inputs(functions, user_module, None, held):
        whole = directional_check(loss, params + [t for t in _float_leaves((args, kwargs)) if t.requires_grad], seed,
                                  deadline=deadline)
        result.passed, result.directions, result.crossed = whole.passed, whole.rows, whole.crossed
        if whole.error:
            result.notes.append(whole.error)
        if whole.hooks:
            result.notes.append(f"gradient check: {whole.hooks} gradient hook(s) registered in the forward "
                                "(gradient scaling or clipping) were left out of it: they are deliberately not the derivative")
        if whole.passed is None and whole.crossed:
            result.notes.append("gradient check inconclusive: every direction crossed a kink (ReLU, max, clamp, round)")
        elif whole.passed is None:
            result.notes.append("gradient check inconclusive: the time budget ended it before a direction was done")
        if whole.passed is False and not any(f.kind == "function" for f in result.failures):
            failures, note = _localise_modules(model64, args, kwargs, device, seed, whole.rows, deadline)
            result.failures.extend(failures)
            if note:
                result.notes.append(note)
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


def is_builtin(module: Any) -> bool:
    """A module class of torch itself: its backward is torch's, trusted and never blamed."""
    return type(module).__module__.split(".")[0] == "torch"


def _localise_modules(model: Any, args: Any, kwargs: Any, device: str, seed: int,
                      whole_rows: list[dict[str, float]], deadline: float | None = None) -> tuple[list[Failure], str]:
    """Check the model's own modules on the inputs they saw, from the top down, descending into
    the failing ones only; report the smallest failing module of the user's own classes."""
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
    budget = [MAX_MODULES]

    def fails(name: str, mod: Any) -> tuple[bool, list[dict[str, float]], str]:
        if name not in seen or budget[0] <= 0 or (deadline is not None and time.monotonic() >= deadline):
            return False, [], ""
        budget[0] -= 1
        a, kw = seen[name]
        check, _ = check_callable(mod, a, kw, list(mod.parameters()), device, seed, LOCALISE_DIRECTIONS)
        return (check is not None and check.passed is False), (check.rows if check else []), (check.error if check else "")

    def descend(prefix: str, mod: Any) -> list[Failure]:
        """The smallest failing user modules below `mod` (whose own check failed)."""
        found: list[Failure] = []
        for child_name, child in mod.named_children():
            name = f"{prefix}.{child_name}" if prefix else child_name
            if is_builtin(child) and next(iter(child.children()), None) is None:
                continue  # a torch layer: trusted
            bad, rows, err = fails(name, child)
            if not bad:
                continue
            below = descend(name, child)
            if below:
                found.extend(below)
            elif not is_builtin(child):
                ad, fd = _worst(rows)
                found.append(Failure("module", name, type(child).__name__, ad, fd, err))
        return found

    failures = descend("", model)
    if failures:
        return failures, ""
    if not is_builtin(model):
        ad, fd = _worst(whole_rows)
        return [Failure("module", "", type(model).__name__, ad, fd,
                        "the whole check failed and none of its submodules did on its own: the model's own forward code")], ""
    return [], "gradient check failed for the whole model, but no module of yours failed on its own: inconclusive"
