"""The probe's measurements: N forward/backward steps at initialisation with plain autograd hooks.

Per module call ("site"): the standard deviation of its output (forward hook) and the norm of the
gradient with respect to that output (a hook on the output tensor); per parameter: the gradient
norm and gradient-norm / weight-norm; per activation module: dead and saturated fractions. The
numbers of one step stay on the device as 0-d tensors and come to the host in one transfer.
No optimiser step is taken: every step measures the initialised model on a fresh random batch.
Where the ratio of two gradient norms of a chain looks like an explosion, the gain through the
chain between them is measured once more on the first batch (`measure_through`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

# Module kinds, by class name (user subclasses of these count as the base).
PARAMETRIC = ("Linear", "Bilinear", "LazyLinear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d",
              "ConvTranspose2d", "ConvTranspose3d", "LazyConv1d", "LazyConv2d", "LazyConv3d", "Embedding",
              "EmbeddingBag", "NonDynamicallyQuantizableLinear")
NORMS = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LayerNorm", "GroupNorm",
         "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "RMSNorm", "LocalResponseNorm",
         "LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d")
RECURRENT = ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell")
# Activations whose derivative is exactly zero over a whole region (a unit can be dead), with
# the test of an *active* output: ReLU y > 0; ReLU6 0 < y < 6; Threshold y > threshold. Leaky
# ReLU, PReLU, RReLU, ELU, CELU, SELU, GELU, SiLU and Mish pass a gradient everywhere: no unit
# of theirs is dead, whatever the sign of its output.
RELU_FAMILY = ("ReLU", "ReLU6", "Threshold")
SATURATING = ("Tanh", "Sigmoid", "Hardtanh", "Softsign")
SATURATED_DERIVATIVE = 1e-2
_SIGMOID_EDGE = math.sqrt(0.25 - SATURATED_DERIVATIVE)
_TANH_EDGE = math.sqrt(1 - SATURATED_DERIVATIVE)
_SOFTSIGN_EDGE = 1 - math.sqrt(SATURATED_DERIVATIVE)


def module_kind(module: Any) -> str:
    import torch.nn as nn

    for base in type(module).__mro__:
        if base is nn.Module:
            break
        name = base.__name__
        if name in PARAMETRIC:
            return "conv" if "Conv" in name else "param"
        if name in NORMS:
            return "norm"
        if name in RECURRENT:
            return "recurrent"
        if name in RELU_FAMILY:
            return "relu"
        if name in SATURATING:
            return "saturating"
    if _linear_like(module):
        return "param"
    return "other"


def _linear_like(module: Any) -> bool:
    """A leaf module with a 2-D weight used as a linear map: transformers' Conv1D, LoRA and
    quantised linears, hand-written Linear layers."""
    import torch

    weight = getattr(module, "weight", None)
    return (isinstance(weight, torch.Tensor) and weight.dim() == 2 and weight.is_floating_point()
            and next(iter(module.children()), None) is None)


@dataclass
class Site:
    """One call of one module: `name` is its path in named_modules(), `#k` added for the k-th
    extra call of a module used several times in one forward."""

    name: str
    module: str
    call: int
    type_name: str
    kind: str


@dataclass
class Measurements:
    """Plain numbers (no tensors): what the report, the join and the JSON read."""

    steps: int
    device: str
    dtype: str
    sites: list[Site] = field(default_factory=list)  # execution order of the first step
    act_std: dict[str, list[float]] = field(default_factory=dict)
    grad_norm: dict[str, list[float]] = field(default_factory=dict)
    saturated: dict[str, list[float]] = field(default_factory=dict)
    dead: dict[str, float] = field(default_factory=dict)
    param_grad_norm: dict[str, list[float]] = field(default_factory=dict)
    param_norm: dict[str, float] = field(default_factory=dict)
    param_owner: dict[str, str] = field(default_factory=dict)
    loss: list[float] = field(default_factory=list)
    # Parametric site -> whether its input depends on the previous parametric site's output
    # (found in the autograd graph on the first step); chains break where it does not.
    linked: dict[str, bool] = field(default_factory=dict)
    # Parameters (requiring grad) whose gradient was None or exactly zero in every step.
    without_grad: list[str] = field(default_factory=list)
    loss_cut: bool = False  # the loss depended on no parameter
    interrupted: str = ""  # 'interrupted' (Ctrl-C) or 'time budget': fewer steps than asked
    cuts: list[tuple[int, str]] = field(default_factory=list)  # (line, what) explaining without_grad
    # The first non-finite value: {'step', 'phase' ('forward'|'loss'|'backward'), 'site', 'module', 'what'}
    nonfinite: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    # Denominator site j -> {earlier site i of its chain: ||∂L/∂z_i through z_j|| / ||∂L/∂z_j||}
    # (`measure_through`), for the pairs whose plain ratio exceeds THROUGH_FLOOR.
    through: dict[str, dict[str, float]] = field(default_factory=dict)

    def site(self, name: str) -> Site | None:
        for s in self.sites:
            if s.name == name:
                return s
        return None

    def mean(self, table: dict[str, list[float]], name: str) -> float | None:
        values = [v for v in table.get(name, []) if v is not None]
        if not values:
            return None
        return sum(values) / len(values)

    def zero_weights(self) -> list[str]:
        """The parameters that start at zero and block the gradient to what is before them (a zero
        head, zero_init_residual, a layer scale of 0): biases start at 0 and block nothing."""
        return [n for n, v in self.param_norm.items() if v == 0.0 and not n.endswith("bias")]

    def grad_ratio(self, first: str, last: str) -> float | None:
        """||dL/dz_first|| / ||dL/dz_last||, averaged over the steps where both were measured."""
        ratios = []
        for a, b in zip(self.grad_norm.get(first, []), self.grad_norm.get(last, [])):
            if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
                continue
            if b == 0:
                continue  # nothing reached the last layer: a zero gradient (GL707), never an infinite gain
            ratios.append(a / b)
        ratios = [r for r in ratios if not math.isnan(r)]
        return sum(ratios) / len(ratios) if ratios else None

    def worst_gain(self, sites: list[str] | tuple[str, ...]) -> tuple[float | None, tuple[str, str] | None]:
        """The largest gain over every sub-chain i < j of `sites` (execution order), from the
        per-site mean gradient norms: a stack that explodes over its hidden layers is not diluted
        by a head at its end. The gain of a pair is ||∂L/∂z_i|| / ||∂L/∂z_j||, or, where it was
        measured (`through`), the part of ∂L/∂z_i that comes through z_j: in a residual network
        most of z_i's gradient comes down the skip connection, beside a branch layer j whose own
        gradient a small layer scale shrinks, and the plain ratio (5e5 on ConvNeXt) is no gain of
        the chain at all. Pairs whose later gradient is zero are skipped."""
        norms = [(s, self.mean(self.grad_norm, s)) for s in sites]
        norms = [(s, g) for s, g in norms if g is not None and math.isfinite(g)]
        best: tuple[float | None, tuple[str, str] | None] = (None, None)
        largest_before: tuple[float, str] | None = None
        for k, (s, g) in enumerate(norms):  # the largest norm before each site, in one pass
            through = self.through.get(s)
            if g > 0 and through is not None:  # this denominator was measured: pair by pair
                for earlier, ge in norms[:k]:
                    gain = through.get(earlier, ge / g)
                    if best[0] is None or gain > best[0]:
                        best = (gain, (earlier, s))
            elif g > 0 and largest_before is not None and (best[0] is None or largest_before[0] / g > best[0]):
                best = (largest_before[0] / g, (largest_before[1], s))
            if largest_before is None or g > largest_before[0]:
                largest_before = (g, s)
        return best

    def module_ratio(self, module: str) -> float | None:
        """The largest gradient-norm / weight-norm of a module's own parameters (averaged over steps)."""
        best = None
        for pname, owner in self.param_owner.items():
            if owner != module:
                continue
            w = self.param_norm.get(pname)
            g = self.mean(self.param_grad_norm, pname)
            if w and g is not None:
                r = g / w
                best = r if best is None or r > best else best
        return best


MIN_CHAIN = 2


def measured_chains(meas: Any) -> list[list[str]]:
    """Runs of parametric sites in execution order with no norm or recurrent module between them,
    each fed by the one before: a site whose input does not depend on the previous parametric
    site's output (found in the autograd graph) starts a new run. So does an embedding: it reads
    token ids, never the previous layer's output."""
    chains: list[list[str]] = []
    current: list[str] = []
    linked = getattr(meas, "linked", {}) or {}
    for site in meas.sites:
        if site.kind in ("param", "conv") and (site.type_name in ("Embedding", "EmbeddingBag")
                                               or not linked.get(site.name, True)):
            if len(current) >= MIN_CHAIN:
                chains.append(current)
            current = [site.name] if meas.grad_norm.get(site.name) else []
            continue
        if site.kind in ("param", "conv"):
            if meas.grad_norm.get(site.name):
                current.append(site.name)
                continue
            site_kind = "break"
        else:
            site_kind = site.kind
        if site_kind in ("norm", "recurrent", "break"):
            if len(current) >= MIN_CHAIN:
                chains.append(current)
            current = []
    if len(current) >= MIN_CHAIN:
        chains.append(current)
    return chains


def first_tensor(value: Any) -> Any:
    """The primary tensor of a module output: itself, the first of a tuple/list, or a dict's
    'logits'/'last_hidden_state'/first tensor value (Hugging Face style outputs)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict) or hasattr(value, "keys"):
        try:
            for key in ("logits", "last_hidden_state"):
                if key in value and isinstance(value[key], torch.Tensor):
                    return value[key]
            for v in value.values():
                t = first_tensor(v)
                if t is not None:
                    return t
        except Exception:  # a mapping-like we cannot read is not an output we can measure
            return None
        return None
    if isinstance(value, (tuple, list)):
        for v in value:
            t = first_tensor(v)
            if t is not None:
                return t
    return None


def map_tensors(value: Any, fn: Callable[[Any], Any]) -> Any:
    """`value` with fn applied to every tensor inside its tuples, lists and dicts."""
    import torch

    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, tuple):
        return tuple(map_tensors(v, fn) for v in value)
    if isinstance(value, list):
        return [map_tensors(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: map_tensors(v, fn) for k, v in value.items()}
    return value


def to_device(value: Any, device: Any, float_dtype: Any = None) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        if float_dtype is not None and value.is_floating_point():
            return value.to(device=device, dtype=float_dtype)
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(to_device(v, device, float_dtype) for v in value)
    if isinstance(value, list):
        return [to_device(v, device, float_dtype) for v in value]
    if isinstance(value, dict):
        return {k: to_device(v, device, float_dtype) for k, v in value.items()}
    return value


def hooked_modules(model: Any) -> list[tuple[str, Any]]:
    """Every module but nn.Identity: containers too, so that a NaN made by a container's own
    forward code is named after it rather than after the model."""
    import torch.nn as nn

    return [(name, m) for name, m in model.named_modules() if not isinstance(m, nn.Identity)]


def is_container(module: Any, root: Any) -> bool:
    """A module with children and no parameters of its own (not the model itself): measured for
    NaN/Inf only, and left out of the table, whose rows would repeat its last child's."""
    return (module is not root and next(iter(module.children()), None) is not None
            and next(iter(module.parameters(recurse=False)), None) is None)


class Recorder:
    """The hooks of one probe run. Values of a step accumulate as 0-d device tensors."""

    def __init__(self, model: Any):
        self.model = model
        self.modules = hooked_modules(model)
        self.names = {id(m): n for n, m in self.modules}
        self.kinds = {id(m): "container" if is_container(m, model) else module_kind(m) for _, m in self.modules}
        self.handles: list[Any] = []
        self.sites: dict[str, Site] = {}
        self.order: list[str] = []
        self.active: dict[str, Any] = {}  # ReLU-family: per-unit "ever active" flags, on device
        self.linked: dict[str, bool] = {}
        self.reset()

    def reset(self) -> None:
        self.calls: dict[str, int] = {}
        self.fwd_keys: list[tuple[str, str]] = []
        self.fwd_vals: list[Any] = []
        self.bwd_keys: list[str] = []
        self.bwd_vals: list[Any] = []
        self.last_param_kind = "param"
        self.last_param_node: Any = None

    def __enter__(self) -> "Recorder":
        for _, m in self.modules:
            self.handles.append(m.register_forward_hook(self._forward_hook))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def _forward_hook(self, module: Any, inputs: Any, output: Any) -> None:
        import torch

        name = self.names.get(id(module))
        if name is None:
            return
        call = self.calls.get(name, 0)
        self.calls[name] = call + 1
        site = name if call == 0 else f"{name}#{call}"
        kind = self.kinds[id(module)]
        t = first_tensor(output)
        if kind in ("param", "conv"):
            self.last_param_kind = kind
            if site not in self.linked:
                self.linked[site] = _depends_on(first_tensor(inputs), self.last_param_node)
            self.last_param_node = t.grad_fn if t is not None else None
        if t is None or not t.is_floating_point() or t.numel() == 0:
            return
        if site not in self.sites:
            self.sites[site] = Site(site, name, call, type(module).__name__, kind)
            self.order.append(site)
        d = t.detach()
        # std = sqrt(E[x²] − E[x]²) from two reductions; the rest is arithmetic on the host.
        # torch.std is several times slower on CPU, and on a GPU kernel launches, not bandwidth,
        # are what the probe pays for. The cancellation matters only when |mean| ≫ std by ~1e3,
        # where an activation's std says little anyway. NaN or Inf anywhere makes the mean or
        # the norm non-finite, so the non-finite check costs no extra pass.
        self.fwd_keys.append(("mean", site))
        # Reduced in float32 at least, in the tensor's own dtype when wider (float64 models).
        acc = torch.promote_types(d.dtype, torch.float32)
        self.fwd_vals.append(d.mean(dtype=acc))
        self.fwd_keys.append(("rms", site))
        self.fwd_vals.append(torch.linalg.vector_norm(d, dtype=acc) / math.sqrt(d.numel()))
        if kind == "relu" and d.dim() >= 1:
            self._dead(site, d, module)
        elif kind == "saturating":
            self.fwd_keys.append(("sat", site))
            self.fwd_vals.append(self._saturated(module, d).float().mean())
        if t.requires_grad:
            t.register_hook(self._grad_hook(site))

    def _dead(self, site: str, d: Any, module: Any) -> None:
        # A unit is a feature (last dim) after Linear, a channel (dim 1) after a convolution.
        unit = 1 if d.dim() >= 3 and self.last_param_kind == "conv" else d.dim() - 1
        dims = [i for i in range(d.dim()) if i != unit]
        bases = {b.__name__ for b in type(module).__mro__}
        if "ReLU6" in bases:
            active = (d > 0) & (d < 6)
        elif "Threshold" in bases:
            active = d > module.threshold
        else:
            active = d > 0
        flags = active.amax(dim=dims) if dims else active
        prev = self.active.get(site)
        self.active[site] = flags if prev is None or prev.shape != flags.shape else (prev | flags)

    @staticmethod
    def _saturated(module: Any, d: Any) -> Any:
        name = type(module).__name__
        kinds = [b.__name__ for b in type(module).__mro__]
        # Each test is |φ'| < 1e-2 written on the output y, in as few passes as possible.
        if "Sigmoid" in kinds:  # y(1−y) < c  <=>  |y − 1/2| > sqrt(1/4 − c)
            return (d - 0.5).abs() > _SIGMOID_EDGE
        if "Tanh" in kinds:  # 1 − y² < c  <=>  |y| > sqrt(1 − c)
            return d.abs() > _TANH_EDGE
        if "Hardtanh" in kinds:
            return (d <= module.min_val) | (d >= module.max_val)
        if "Softsign" in kinds:  # (1 − |y|)² < c  <=>  |y| > 1 − sqrt(c)
            return d.abs() > _SOFTSIGN_EDGE
        raise AssertionError(name)

    def _grad_hook(self, site: str) -> Callable[[Any], None]:
        import torch

        def hook(grad: Any) -> None:
            self.bwd_keys.append(site)
            self.bwd_vals.append(torch.linalg.vector_norm(grad, dtype=torch.promote_types(grad.dtype, torch.float32)))

        return hook


GRAPH_SEARCH_LIMIT = 256


def _depends_on(value: Any, node: Any) -> bool:
    """Whether `node` (an autograd graph node) is among the ancestors of tensor `value`, within
    GRAPH_SEARCH_LIMIT nodes: the layers of a chain feed each other; two towers run one after
    the other do not."""
    if value is None or node is None or getattr(value, "grad_fn", None) is None:
        return False
    seen = set()
    stack = [value.grad_fn]
    while stack and len(seen) < GRAPH_SEARCH_LIMIT:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        if current is node:
            return True
        seen.add(id(current))
        stack.extend(fn for fn, _ in getattr(current, "next_functions", ()))
    return False


@dataclass
class ProbeSetup:
    """How to run one step: inputs and loss come from target.py's loaders."""

    device: str
    steps: int
    seed: int
    dtype: str  # float32, bfloat16, float16: the forward pass under autocast when not float32
    make_inputs: Callable[[int], Any]  # step -> (args tuple, kwargs dict), already on the device
    make_loss: Callable[[Any, Any, int], Any]  # (output, raw inputs, step) -> scalar tensor
    deadline: float | None = None  # time.monotonic() past which no further step starts


def autocast_context(device: str, dtype: str) -> Any:
    import contextlib

    import torch

    if dtype == "float32":
        return contextlib.nullcontext()
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    return torch.autocast(device_type=device_type, dtype=getattr(torch, dtype))


def run_steps(model: Any, setup: ProbeSetup, progress: Callable[[int, int], None] | None = None) -> Measurements:
    """Run the probe steps and return the measurements; user errors propagate to the caller."""
    import torch

    meas = Measurements(steps=setup.steps, device=setup.device, dtype=setup.dtype)
    model.train()
    from torch.nn.parameter import UninitializedParameter

    if any(isinstance(p, UninitializedParameter) for p in model.parameters()):
        # Lazy modules get their shapes from a first forward; the norms below need them.
        torch.manual_seed(setup.seed)
        args, kwargs, _ = setup.make_inputs(0)
        with torch.no_grad(), autocast_context(setup.device, setup.dtype):
            model(*args, **kwargs)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    owners = {}
    for mname, m in model.named_modules():
        for pname, _ in m.named_parameters(recurse=False, prefix=mname):
            owners[pname] = mname
    meas.param_owner = {n: owners.get(n, "") for n, _ in params}
    if params:
        wn = torch._foreach_norm([p.detach() for _, p in params])
        wide = torch.float64 if any(w.dtype == torch.float64 for w in wn) else torch.float32
        values = torch.stack([w.to(wide) for w in wn]).cpu().tolist()
        meas.param_norm = dict(zip((n for n, _ in params), values))
    import time

    rec = Recorder(model)
    with rec:
        for step in range(setup.steps):
            if step and setup.deadline is not None and time.monotonic() >= setup.deadline:
                meas.interrupted = "time budget"
                meas.notes.append(f"time budget spent after {step} of {setup.steps} steps")
                meas.steps = step
                break
            if progress:
                progress(step, setup.steps)
            try:
                _one_step(model, setup, rec, meas, params, step)
            except KeyboardInterrupt:
                if step == 0:
                    raise  # nothing measured: nothing to report
                meas.interrupted = "interrupted"
                from gradlint.probe import INTERRUPTION

                meas.notes.append(f"{INTERRUPTION[0]} after {step} of {setup.steps} steps")
                meas.steps = step
                break
            if meas.nonfinite is not None:
                meas.steps = step + 1  # later steps would only repeat the NaN
                break
    if progress:
        progress(setup.steps, setup.steps)
    if meas.nonfinite is None:
        meas.without_grad = _without_gradient(meas, [n for n, _ in params])
    meas.sites = [rec.sites[s] for s in rec.order]
    meas.linked = dict(rec.linked)
    if meas.nonfinite is None and not meas.interrupted:
        if setup.deadline is not None and time.monotonic() >= setup.deadline:
            if suspicious_pairs(meas):
                meas.notes.append("time budget spent: the gains of the chains were not measured through them "
                                  "(a residual branch may read as exploding)")
        else:
            try:
                measure_through(model, setup, meas)
            except KeyboardInterrupt:
                meas.interrupted = "interrupted"
                meas.notes.append("interrupted while measuring the gains through the chains")
            except (Exception, SystemExit) as exc:
                # The steps measured the model; an extra measurement that fails (a backward that
                # cannot be taken twice, a second forward that differs) leaves the plain ratios.
                meas.through.clear()
                meas.notes.append(f"the gains of the chains could not be measured through them "
                                  f"({type(exc).__name__}: {exc}): a residual branch may read as exploding")
    if rec.active:
        names = list(rec.active)
        fractions = torch.stack([1 - rec.active[n].float().mean() for n in names]).cpu().tolist()
        meas.dead = dict(zip(names, fractions))
    return meas


# Pairs whose plain gradient ratio is at most this are taken as measured: no exploding
# threshold worth the name is this low, and measuring through every pair of every chain costs
# a backward per layer.
THROUGH_FLOOR = 10.0


def suspicious_pairs(meas: Measurements) -> dict[str, list[str]]:
    """Denominator site j -> the earlier sites i of its chain with ||∂L/∂z_i|| / ||∂L/∂z_j|| >
    THROUGH_FLOOR (mean norms): the pairs whose ratio could make an exploding finding."""
    pairs: dict[str, list[str]] = {}
    for chain in measured_chains(meas):
        norms = [(s, meas.mean(meas.grad_norm, s)) for s in chain]
        norms = [(s, g) for s, g in norms if g is not None and math.isfinite(g)]
        largest = 0.0
        for k, (s, g) in enumerate(norms):
            if g > 0 and largest > THROUGH_FLOOR * g:
                pairs[s] = [e for e, ge in norms[:k] if ge > THROUGH_FLOOR * g]
            largest = max(largest, g)
    return pairs


def measure_through(model: Any, setup: ProbeSetup, meas: Measurements) -> None:
    """For each pair of `suspicious_pairs`, the part of ∂L/∂z_i that comes through z_j:
    the vector-Jacobian product of ∂L/∂z_j back to z_i (every path from z_i to z_j, skip
    connections between them included), over ||∂L/∂z_j||, into `meas.through`. In a plain chain
    all of z_i's gradient comes through z_j and this is the plain ratio; in a residual network
    with a layer scale, most of it comes down the skip connection, beside the branch layer j.
    Measured on the first step's batch again (one forward, then one backward per denominator,
    each only as far back as its earliest numerator), only where a pair is suspicious: a
    healthy model pays nothing. Gradient edges taken in the forward hook are the layer's own
    output even when an in-place activation overwrites the tensor afterwards."""
    import time

    import torch

    pairs = suspicious_pairs(meas)
    if not pairs:
        return
    wanted = set(pairs) | {i for nums in pairs.values() for i in nums}
    owners = {s.module for s in meas.sites if s.name in wanted}
    edge_of = getattr(torch.autograd.graph, "get_gradient_edge", None)  # torch >= 2.2
    edges: dict[str, Any] = {}
    calls: dict[str, int] = {}

    def hook(name: str) -> Callable[..., None]:
        def forward_hook(module: Any, inputs: Any, output: Any) -> None:
            call = calls.get(name, 0)
            calls[name] = call + 1
            site = name if call == 0 else f"{name}#{call}"
            t = first_tensor(output)
            if site in wanted and t is not None and t.requires_grad and t.grad_fn is not None:
                edges[site] = edge_of(t) if edge_of is not None else (t, t._version)

        return forward_hook

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n in owners]
    try:
        torch.manual_seed(setup.seed)
        args, kwargs, raw = setup.make_inputs(0)
        with autocast_context(setup.device, setup.dtype):
            output = model(*args, **kwargs)
        loss = setup.make_loss(output, raw, 0)
    finally:
        for h in handles:
            h.remove()
    if edge_of is None:  # the tensor itself, unless an in-place operation overwrote it since
        edges = {s: t for s, (t, version) in edges.items() if t._version == version}
    # the most suspicious first: a time budget that runs out leaves the mildest unmeasured
    ratio = {j: max(meas.mean(meas.grad_norm, i) or 0.0 for i in nums) / (meas.mean(meas.grad_norm, j) or 1.0)
             for j, nums in pairs.items()}
    dens = sorted((j for j in pairs if j in edges), key=lambda j: -ratio[j])
    if not dens or not loss.requires_grad:
        return
    wide = torch.float64 if loss.dtype == torch.float64 else torch.float32
    grads = torch.autograd.grad(loss, [edges[j] for j in dens], retain_graph=True, allow_unused=True)
    keys: list[tuple[str, str]] = []
    values: list[Any] = []
    left = 0
    for k, (j, g) in enumerate(zip(dens, grads)):
        nums = [i for i in pairs[j] if i in edges]
        if g is None or not nums:
            continue
        if setup.deadline is not None and time.monotonic() >= setup.deadline:
            left = len(dens) - k
            break
        through = torch.autograd.grad([edges[j]], [edges[i] for i in nums], [g], retain_graph=True,
                                      allow_unused=True)
        g_norm = torch.linalg.vector_norm(g, dtype=wide)
        for i, v in zip(nums, through):
            keys.append((j, i))
            # None: z_j does not depend on z_i at all, nothing of z_i's gradient comes through it
            values.append(torch.zeros((), dtype=wide, device=g.device) if v is None
                          else torch.linalg.vector_norm(v, dtype=wide) / g_norm)
    del loss, output, grads
    for (j, i), v in zip(keys, torch.stack(values).cpu().tolist() if values else []):
        if math.isfinite(v):
            meas.through.setdefault(j, {})[i] = v
    if left:
        meas.notes.append(f"time budget spent: the gains into {left} layer(s) were not measured through the chain "
                          "(a residual branch may read as exploding)")


def _without_gradient(meas: Measurements, names: list[str]) -> list[str]:
    """The parameters that got no gradient in any step: none at all (not in the graph), or exactly
    zero ones, unless the model zero-initialises a weight (a zero head, zero_init_residual, a
    layer scale of 0: every parameter before it gets exactly zero at initialisation, by design, and
    a gradient after the first update; a note says so). Biases start at 0 and block nothing."""
    never = [n for n in names if not any(v is not None for v in meas.param_grad_norm.get(n) or [])]
    zero = [n for n in names if n not in never and not any(meas.param_grad_norm.get(n) or [])]
    blocking = meas.zero_weights()  # (param_norm holds exactly the parameters of `names`)
    if zero and blocking:
        shown = ", ".join(f"`{n}`" for n in blocking[:3]) + (f" and {len(blocking) - 3} more" if len(blocking) > 3 else "")
        meas.notes.append(f"{len(zero)} parameter tensor(s) got exactly zero gradients: the model starts with "
                          f"{shown} at zero (a zero-initialised layer, as zero_init_residual or a zero head "
                          "does), which passes no gradient before the first update; not counted as unused")
        return never
    return never + zero


def _one_step(model: Any, setup: ProbeSetup, rec: Recorder, meas: Measurements, params: list[tuple[str, Any]],
              step: int) -> None:
    """One forward/backward on a fresh batch; its numbers come to the host in one transfer."""
    import torch

    rec.reset()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(setup.seed + step)
    args, kwargs, raw = setup.make_inputs(step)
    with autocast_context(setup.device, setup.dtype):
        output = model(*args, **kwargs)
    loss = setup.make_loss(output, raw, step)
    n_fwd = len(rec.fwd_vals)
    if loss.requires_grad:
        loss.backward()
    else:
        meas.loss_cut = True
    grads = [(n, p.grad) for n, p in params if p.grad is not None]
    gnorms = torch._foreach_norm([g for _, g in grads]) if grads else []
    pieces = rec.fwd_vals[:n_fwd] + rec.bwd_vals + list(gnorms) + [loss.detach().reshape(())]
    wide = torch.float64 if any(p.dtype == torch.float64 for p in pieces) else torch.float32
    host = torch.stack([p if p.dtype == wide else p.to(wide) for p in pieces]).cpu().tolist()
    _store_step(meas, rec, step, host, n_fwd, [n for n, _ in grads])


def _store_step(meas: Measurements, rec: Recorder, step: int, host: list[float], n_fwd: int,
                grad_names: list[str]) -> None:
    fwd, rest = host[:n_fwd], host[n_fwd:]
    bwd, rest = rest[: len(rec.bwd_keys)], rest[len(rec.bwd_keys):]
    pg, loss = rest[:-1], rest[-1]

    def put(table: dict[str, list[float]], key: str, value: float) -> None:
        row = table.setdefault(key, [])
        row.extend([None] * (step - len(row)))  # type: ignore[list-item]
        if len(row) == step:
            row.append(value)

    stds: dict[str, float] = {}
    means: dict[str, float] = {}
    for (what, site), v in zip(rec.fwd_keys, fwd):
        if what == "mean":
            means[site] = v
        elif what == "rms":
            m = means.get(site, 0.0)
            std = math.sqrt(max(v * v - m * m, 0.0)) if math.isfinite(v) and math.isfinite(m) else math.nan
            stds[site] = std
            put(meas.act_std, site, std)
        else:
            put(meas.saturated, site, v)
    for site, v in zip(rec.bwd_keys, bwd):
        put(meas.grad_norm, site, v)
    for name, v in zip(grad_names, pg):
        put(meas.param_grad_norm, name, v)
    meas.loss.append(loss)
    if meas.nonfinite is not None:
        return
    # Forward: the first site, in execution order, whose output holds NaN/Inf.
    for site, v in stds.items():  # dicts keep insertion order: execution order
        if not math.isfinite(v):
            meas.nonfinite = {"step": step, "phase": "forward", "site": site, "module": rec.sites[site].module,
                              "type": rec.sites[site].type_name, "what": "NaN/Inf in its output"}
            return
    if not math.isfinite(loss):
        meas.nonfinite = {"step": step, "phase": "loss", "site": None, "module": None, "type": None,
                          "what": f"the loss is {loss}"}
        return
    bad_out = {site for site, v in zip(rec.bwd_keys, bwd) if not math.isfinite(v)}
    bad_param_owner = [meas.param_owner.get(n, "") for n, v in zip(grad_names, pg) if not math.isfinite(v)]
    if not bad_out and not bad_param_owner:
        return
    order = [s for s in rec.order]
    # Backward runs in reverse: the module whose backward first made a non-finite gradient is the
    # one executed right after the last module (in execution order) whose output gradient is
    # non-finite; or a module with finite output gradient but non-finite parameter gradients.
    culprit = None
    last_bad = max((order.index(s) for s in bad_out if s in order), default=None)
    if last_bad is not None:
        after = [s for s in order[last_bad + 1:] if s not in bad_out]
        culprit = after[0] if after else None
    if culprit is None and bad_param_owner:
        for s in order:
            if rec.sites[s].module in bad_param_owner and s not in bad_out:
                culprit = s
                break
    site = rec.sites.get(culprit) if culprit else None
    meas.nonfinite = {"step": step, "phase": "backward", "site": culprit, "module": site.module if site else None,
                      "type": site.type_name if site else None, "what": "NaN/Inf in the gradient its backward produced"}
