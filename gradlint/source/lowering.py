"""Lowering a built module to the model IR: module paths, the parameter inventory, and `forward`.

`Lowerer` walks an instance built by the `__init__` interpreter, gives every submodule its dotted
path (as `named_modules()` would), collects the parameterised layers with their initialisation,
and lowers `forward` (through source/forward.py) into IR nodes over paths: one per combination of
undecided conditions and choices, bounded by MAX_PATHS. Whatever cannot be followed becomes an
`Opaque` node with its reason.
"""

from __future__ import annotations

import math
from typing import Any, TYPE_CHECKING

import libcst as cst

from gradlint.model.ir import (
    INPUT_WHAT, Activation, Extern, InitSpec, Norm, Opaque, Param, Passthrough, Recurrent, TransformerBlock, unfolded_size,
)
from gradlint.source import catalog as C
from gradlint.source import library as L
from gradlint.source.budget import MAX_DEPTH, MAX_UNFOLDED, MAX_UNROLL, Exhausted
from gradlint.source.foreign import CALLED
from gradlint.source.param_loops import ParamLoop, bound
from gradlint.source.engine.values import Alt, Ctor, HeldTensor, Instance, ListVal, PathVal, Sym, UNKNOWN
from gradlint.source.engine.values import is_number as _num
from gradlint.source.names import decorators, grad_state, is_off
from gradlint.source.outputs import no_grad_mark, parts_of

if TYPE_CHECKING:
    from gradlint.source.models import FileModel


# Forward paths explored per network when `if` conditions cannot be decided (each undecided
# condition doubles them); past this, the branches are merged into an opaque node as before.
MAX_PATHS = 8
NO_CHOICE: Any = object()  # Lowerer.pick when branches are merged
_TOO_LARGE = f"forward too large to model (over {MAX_UNFOLDED:,} layers unfolded)"


def _maybe_none(v: Any) -> bool:
    """A call of a function of another file: None, a module or any other value."""
    return isinstance(v, Ctor) and v.extern is not None and len(v.extern) > 2


def _neutral_nodes(nodes: tuple) -> bool:
    return all(isinstance(n, Passthrough) or isinstance(n, Activation) and n.fn == "identity" for n in nodes)


class Lowerer:
    """Assigns module paths and lowers forward to IR nodes for one root instance."""

    def __init__(self, fm: FileModel) -> None:
        self.fm = fm
        self.params: list[Param] = []
        self.recurrents: list[Recurrent] = []
        self.seen: set[int] = set()
        self.depth = 0
        self.plan: list[bool] | None = None
        self.order: list[bool] = []
        self.choices: dict[int, bool] = {}
        self.note = ""  # why forward could not be followed, for people (`gradlint model`)
        # the other outputs of the model's own forward (ForwardInterpreter.heads), of the first
        # run of forward_paths; None before one
        self.heads: list[tuple[str, tuple]] | None = None
        # Within one forward_paths: the nodes of each child module's forward with the decisions
        # its run consulted, reused by the later paths that decide them alike (_child_nodes);
        # and the decisions consulted since the outermost child run began, in order.
        self._memo: dict | None = None
        self._trace: list | None = None
        self._sizes: dict[int, tuple] = {}  # _sequence_size's memo

    # paths and parameter inventory
    def assign_paths(self, attrs: dict, prefix: str, type_inits: list) -> None:
        for name, value in attrs.items():
            if name in ("__torch__", "__parent__"):
                # the torch.nn layer a subclass of one is, the base of another file a subclass
                # runs (forward.parent_forward): its own path, its own inits
                self._assign(value, prefix[:-1] if prefix.endswith(".") else prefix, type_inits)
                continue
            if name.startswith("__"):
                continue
            if isinstance(value, Alt) and value.splice and name.isdigit():  # nn.Sequential subclass
                for option in value.options:
                    for k, inner in enumerate(option.items):
                        self._assign(inner, f"{prefix}{int(name) + k}", type_inits)
                continue
            self._assign(value, f"{prefix}{name}", type_inits)

    def _assign(self, value: Any, path: str, type_inits: list) -> None:
        if isinstance(value, Alt) and not value.splice:
            for option in value.options:  # every choice is a layer of some configuration
                self._assign(option, path, type_inits)
            return
        if type(value) is HeldTensor and value.path is None:
            value.path = path  # a raw weight (`self.W`, `self.weights.3`): its layer's name
            return
        if not isinstance(value, Ctor) or id(value) in self.seen:
            return
        self.seen.add(id(value))
        value.path = path
        if value.scoped_inits:
            type_inits = bound(value.scoped_inits, path) + type_inits
        value.__dict__["type_inits"] = type_inits
        if value.items is not None:
            keys = value.keys if value.keys is not None and len(value.keys) == len(value.items) else None
            i = 0
            for j, item in enumerate(value.items):
                if isinstance(item, Alt) and item.splice:
                    # Items after a splice are numbered as if its first option was taken.
                    for option in item.options:
                        for k, inner in enumerate(option.items):
                            self._assign(inner, f"{path}.{i + k}", type_inits)
                    i += len(item.options[0].items)
                    continue
                self._assign(item, f"{path}.{keys[j] if keys else i}", type_inits)
                i += 1
        if value.instance is not None:
            inner = bound(value.instance.type_inits, path) + type_inits  # the parent's apply() reaches children
            # (what reaches the instance's raw weights too: forward.weight_layer)
            value.instance.__dict__["reaching"] = inner
            self.assign_paths(value.instance.attrs, path + ".", inner)
        if value.kind == "torch" and value.cls in C.PARAM_LAYERS:
            self.params.append(self.param(value))
        if value.kind == "torch" and value.cls in C.RECURRENT_MODULES:
            self.recurrents.append(self.recurrent(value))

    def final_init(self, ctor: Ctor, tensor: str) -> InitSpec | None:
        """The last initialisation that reached `tensor` of `ctor` after it was built, or None."""
        best: tuple[int, InitSpec] | None = None
        for order, name, spec in ctor.inits:
            if (name == tensor or name == "*") and order > ctor.order and (best is None or order > best[0]):
                best = (order, spec)
        for order, types, name, spec in ctor.__dict__.get("type_inits", []):
            if order <= ctor.order or types and ctor.cls not in types and "Module" not in types or best and order < best[0]:
                continue
            if type(name) is ParamLoop:  # a loop over parameters: by the tensor's name and shape
                spec = name.spec_for(ctor.path, ctor.cls, tensor)
                if spec is not None:
                    best = (order, spec)
            elif name == tensor or name == "*":
                best = (order, spec)
        return best[1] if best else None

    def param(self, ctor: Ctor) -> Param:
        op, kdims = C.PARAM_LAYERS[ctor.cls]
        arg = _ArgReader(ctor)
        span = self.span(ctor)
        signal_ratio: float | None = 1.0
        alike = True
        if op == "linear":
            if ctor.cls == "LazyLinear":
                fan_in, fan_out = None, _fan(arg.get(0, "out_features"))
            else:
                fan_in, fan_out = _fan(arg.get(0, "in_features")), _fan(arg.get(1, "out_features"))
            default = InitSpec("torch-linear")
        elif op == "bilinear":
            fan_in, fan_out = _fan(arg.get(0, "in1_features")), _fan(arg.get(2, "out_features"))
            default = InitSpec("torch-linear")
        elif op == "embedding":
            fan_in, fan_out = _fan(arg.get(1, "embedding_dim")), _fan(arg.get(0, "num_embeddings"))
            default = InitSpec("torch-embedding")
        else:
            lazy = ctor.cls.startswith("Lazy")
            cin = None if lazy else arg.get(0, "in_channels")
            cout = arg.get(0 if lazy else 1, "out_channels")
            k = arg.get(1 if lazy else 2, "kernel_size")
            # Conv(in, out, kernel, stride, padding, dilation | output_padding, groups, bias, ...):
            # `groups` is sixth (fifth for a lazy one, which has no `in_channels`)
            groups = arg.get(5 if lazy else 6, "groups", 1, kwargs_hold=False)
            receptive = _receptive(k, kdims)
            # one output channel per group (depthwise): no two units read the same input
            alike = not (isinstance(groups, int) and groups > 1 and cout == groups)
            if op.startswith("convtranspose"):
                fan_in = _mul(_div(cout, groups), receptive)
                fan_out = _mul(cin, receptive)
                # ConvTranspose(in, out, kernel, stride, ...): an output sums in/groups * kernel /
                # stride**d terms, not torch's fan_in (Param.signal_ratio)
                step = _receptive(arg.get(2 if lazy else 3, "stride", 1), kdims)
                signal_ratio = _channel_ratio(cin, cout)
                if signal_ratio is not None:
                    signal_ratio = signal_ratio / step if isinstance(step, int) and step > 0 else None
            else:
                fan_in = _mul(_div(cin, groups), receptive)
                fan_out = _mul(cout, receptive)
            default = InitSpec("torch-linear")
        init = self.final_init(ctor, "weight") or default
        bias_flag = arg.get(_BIAS_POSITION[op] - (1 if ctor.cls.startswith("Lazy") else 0), "bias", True,
                           kwargs_hold=False) \
            if op in _BIAS_POSITION else True
        bias_init = self.final_init(ctor, "bias")
        if bias_init is None and bias_flag is False:
            bias_init = InitSpec("none")
        attr = (ctor.path or "").rsplit(".", 1)[-1]
        return Param(name=ctor.path or "", op=op, fan_in=fan_in, fan_out=fan_out, init=init, origin=span,
                     attr=attr, bias_init=bias_init, signal_ratio=signal_ratio, alike=alike, frozen=ctor.frozen)

    def recurrent(self, ctor: Ctor) -> Recurrent:
        arg = _ArgReader(ctor)
        cell = C.RECURRENT_MODULES[ctor.cls]
        nl = arg.kw("nonlinearity", "tanh")
        if cell in ("rnn", "rnn_cell"):
            pos = 3 if cell == "rnn" else 3
            v = arg.get(pos, "nonlinearity")
            nl = v if isinstance(v, str) else (nl if isinstance(nl, str) else "tanh")
        layers = arg.get(2, "num_layers") if cell in ("rnn", "lstm", "gru") else 1
        hh = self.final_init(ctor, "weight_hh_l0") or self.final_init(ctor, "weight_hh")
        return Recurrent(name=ctor.path or "", cell=cell, nonlinearity=nl if isinstance(nl, str) else "unknown",
                         hidden=_fan(arg.get(1, "hidden_size")), num_layers=layers if isinstance(layers, int) else 1,
                         origin=self.span(ctor), weight_hh_init=hh)

    def span(self, ctor: Ctor):
        """Where a layer is, for the user: its constructor call, or the user's call of the library
        block that built it."""
        node = ctor.site if ctor.site is not None else ctor.node
        found = self.fm.spans.get(id(node))
        if found is None:  # once per layer: each forward path lowers every layer again
            found = self.fm.spans[id(node)] = self.fm.src.span(node, within=self.fm.holder.get(id(node)))
        return found

    # forward paths: undecided conditions are decided by a plan, one run per combination
    def decide(self, node: cst.CSTNode) -> bool | None:
        """The branch this run takes at an `if` whose condition is unknown (None: merge both).
        One decision per `if` statement and run: every instance of a class takes the same side,
        which is what a condition on a setting or on the input's shape does."""
        if self.plan is None:
            return None
        key = id(node)
        if key in self.choices:
            choice = self.choices[key]
        else:
            i = len(self.order)
            choice = self.plan[i] if i < len(self.plan) else True
            self.order.append(choice)
            self.choices[key] = choice
        if self._trace is not None:
            self._trace.append((key, choice))
        return choice

    def _decides_alike(self, trace: list) -> bool:
        """Whether decide() would answer each call of `trace` (node, choice) as it did then."""
        fresh: dict[int, bool] = {}
        at = len(self.order)
        for key, choice in trace:
            now = self.choices.get(key, fresh.get(key))
            if now is None:
                now = fresh[key] = self.plan[at] if at < len(self.plan) else True
                at += 1
            if now != choice:
                return False
        return True

    def _decide_again(self, trace: list) -> None:
        """decide()'s calls of `trace`, made again (the order and choices a run makes)."""
        for key, choice in trace:
            if key not in self.choices:
                self.order.append(choice)
                self.choices[key] = choice
        if self._trace is not None:
            self._trace.extend(trace)

    def pick(self, alt: Alt) -> Any:
        """The option of `alt` this forward run takes; NO_CHOICE when branches are merged."""
        choice = self.decide(alt.key)
        if choice is None:
            return NO_CHOICE
        return alt.options[0] if choice or len(alt.options) < 2 else alt.options[1]

    def alt_nodes(self, alt: Alt, nodes_of) -> tuple:
        """The nodes of the option this run takes; when merging, the nodes all options share,
        else an opaque node."""
        chosen = self.pick(alt)
        if chosen is not NO_CHOICE:
            return nodes_of(chosen)
        found = [nodes_of(o) for o in alt.options]
        if all(f == found[0] for f in found) or all(_neutral_nodes(f) for f in found):
            return found[0]  # the same layers, or layers that all leave the gradient's scale alone
        return (Opaque("", "branches differ"),)

    def forward_paths(self, inst: "Instance", prefix: str) -> tuple[list[tuple], bool, str]:
        """Every path through forward (at most MAX_PATHS), as distinct node tuples; whether each
        was followed; and why not when one was not. Past the bound, one merged run."""
        plans: list[list[bool]] = [[]]
        results: list[tuple] = []
        runs = 0
        self.heads = None
        saved_memo, self._memo = self._memo, {}
        try:
            return self._forward_paths(inst, prefix, plans, results, runs)
        finally:
            self._memo = saved_memo

    def _forward_paths(self, inst: "Instance", prefix: str, plans: list, results: list,
                       runs: int) -> tuple[list[tuple], bool, str]:
        while plans and runs < MAX_PATHS:
            self.plan, self.order, self.choices = plans.pop(), [], {}
            self.note = ""
            nodes, known = self.forward(inst, prefix)
            runs += 1
            if not known:
                self.plan = None
                return [], False, self.note or "forward not followed"
            if unfolded_size(nodes) > MAX_UNFOLDED:
                self.plan = None
                return [], False, _TOO_LARGE
            if nodes not in results:
                results.append(nodes)
            for i in range(len(self.plan), len(self.order)):
                plans.append(self.order[:i] + [not self.order[i]])
            if runs + len(plans) > MAX_PATHS:
                # Each run takes one plan: more are left than runs allowed, so the paths end in the
                # merged run below whatever they find. It comes now, not after MAX_PATHS runs
                # thrown away (42 classes of timm and torchvision, a quarter of the lowering).
                break
        self.plan = None
        if plans:
            nodes, known = self.forward(inst, prefix)
            if known and unfolded_size(nodes) > MAX_UNFOLDED:
                return [], False, _TOO_LARGE
            return ([nodes] if known else []), known, (self.note or "forward not followed") if not known else ""
        return results, True, ""

    # forward
    def module_nodes(self, value: Any, where: str = "") -> tuple:
        """The IR nodes of calling a module value on a tensor; where: the code or the place it
        was built at, for the opaque node's detail when it is not a module."""
        if isinstance(value, Alt) and not value.splice:
            return self.alt_nodes(value, lambda o: self.module_nodes(o, where))
        if value is None:
            return (Opaque("", "None called as a module"),)
        if not isinstance(value, Ctor):
            return (Opaque("", "unknown module", detail=_unknown_detail(value, where)),)
        span = self.span(value)
        path = value.path or ""
        if value.kind == "pass":
            if value.cls in L.LAYER_SCALES:
                return (Passthrough(path, f"scale:{self.layer_scale(value)}", span),)
            drop = L.DROP_PATHS.get(value.cls)
            if drop is None:
                return (Passthrough(path, value.cls, span),)
            index, name, default = drop
            # timm's DropPath(scale_by_keep=False) keeps the kept paths unscaled: not modelled
            keep = _ArgReader(value).get(1, "scale_by_keep", True) if value.cls == "DropPath" else True
            p = drop_p(_ArgReader(value).get(index, name, default)) if keep is True else None
            return (Passthrough(path, value.cls, span, dropout="inverted", p=p),)
        if value.kind == "torch":
            cls = value.cls
            if cls in C.PARAM_LAYERS:
                return (self.param(value),)
            if cls in C.ACTIVATION_MODULES:
                fn, pname, position = C.ACTIVATION_MODULES[cls]
                param = None
                if pname:
                    v = _ArgReader(value).get(position, pname)
                    param = float(v) if _num(v) else C.ACTIVATION_DEFAULT_PARAM.get(fn)
                elif fn in C.ACTIVATION_DEFAULT_PARAM:
                    param = C.ACTIVATION_DEFAULT_PARAM[fn]
                return (Activation(path, fn, param, span),)
            if cls in C.NORM_MODULES:
                return (Norm(path, C.NORM_MODULES[cls], span),)
            if cls in C.DROPOUT_MODULES:
                p = drop_p(_ArgReader(value).get(0, "p", 0.5))
                return (Passthrough(path, cls, span, dropout=C.DROPOUT_MODULES[cls], p=p),)
            if cls in C.PASSTHROUGH_MODULES:
                return (Passthrough(path, cls, span),)
            if cls in C.RECURRENT_MODULES:
                return (self.recurrent(value),)
            if cls in C.TRANSFORMER_LAYERS:
                # (d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                # batch_first, norm_first, ...): `norm_first` is eighth for both layers
                nf = _ArgReader(value).get(7, "norm_first", False, kwargs_hold=False)
                return (TransformerBlock(path, C.TRANSFORMER_LAYERS[cls], nf if isinstance(nf, bool) else None, span),)
            if cls in C.TRANSFORMER_STACKS:
                arg = _ArgReader(value)
                layer = arg.get(0, "encoder_layer" if cls == "TransformerEncoder" else "decoder_layer")
                n = arg.get(1, "num_layers")
                nf = _ArgReader(layer).get(7, "norm_first", False, kwargs_hold=False) if isinstance(layer, Ctor) else None
                kind = C.TRANSFORMER_STACKS[cls]
                if isinstance(n, int) and n <= MAX_UNROLL:
                    return tuple(TransformerBlock(f"{path}.layers.{i}", kind, nf if isinstance(nf, bool) else None, span) for i in range(n))
                return (Opaque(path, f"{cls} of unknown depth", span),)
            if cls == "Transformer":
                arg = _ArgReader(value)
                # nn.Transformer(d_model, nhead, num_encoder_layers, num_decoder_layers, ...):
                # the depths are often passed by position (`nn.Transformer(128, 4, 2, 2, 256)`)
                ne, nd = arg.get(2, "num_encoder_layers", 6), arg.get(3, "num_decoder_layers", 6)
                nf = arg.get(11, "norm_first", False)
                if isinstance(ne, int) and isinstance(nd, int) and 0 <= ne + nd <= MAX_UNROLL:
                    nodes = [TransformerBlock(f"{path}.encoder.layers.{i}", "encoder", nf if isinstance(nf, bool) else None, span) for i in range(ne)]
                    if ne and nd:
                        # the decoder runs on the target, another input: its stack starts there
                        # (as the ONNX lowering marks an export's target), reading the encoder's
                        # output in its cross-attentions (model/blocks.transformer_stacks)
                        nodes.append(Passthrough(f"{path}.decoder", INPUT_WHAT, span))
                    nodes += [TransformerBlock(f"{path}.decoder.layers.{i}", "decoder", nf if isinstance(nf, bool) else None, span) for i in range(nd)]
                    return tuple(nodes)
                return (Opaque(path, "Transformer of unknown depth", span),)
            if cls == "Sequential" and value.items is not None:
                if _sequence_size(value, self._sizes) > MAX_UNFOLDED:
                    return (Opaque(path, _TOO_LARGE, span),)
                return self.sequence_nodes(value.items, lambda i: self._item_source(value, i))
            return (Opaque(path, f"nn.{cls} called as a layer: not modelled", span),)
        if value.kind == "local" and value.instance is not None:
            if self.depth >= MAX_DEPTH:
                return (Opaque(path, f"{value.cls}: nested deeper than {MAX_DEPTH} modules", span),)
            return self._child_nodes(value, path, span)
        why = getattr(value, "why", None)
        what = f"{value.cls}: {why or 'a class gradlint does not see (another file or library)'}"
        if _maybe_none(value) and why is None:
            what = f"{value.cls}(): what a function of another file (or library) returns"
            if value.extern[1] is not None and any(k == CALLED for k, _v in value.extern[1]):
                what = f"{value.cls}(...): a class another file gives (its table or function), called"
        if value.reached:
            return (Opaque(path, f"{value.cls}: a class of another file whose layers __init__ changes", span),)
        if value.kind == "unknown" and value.extern is not None and why is None:
            return (Extern(path, what, span, cls=value.extern[0], args=value.extern[1], inits=self.extern_inits(value)),)
        return (Opaque(path, what, span),)

    def module_outputs(self, value: Any) -> tuple[tuple, tuple | None]:
        """module_nodes, with the parts of the tuple the module returns when it is a class of this
        file whose forward returns one (outputs.parts_of; None for any other module)."""
        if isinstance(value, Ctor) and value.kind == "local" and value.instance is not None and self.depth < MAX_DEPTH:
            return self._child_run(value, value.path or "", self.span(value))
        return self.module_nodes(value), None

    def layer_scale(self, value: Ctor) -> float | str:
        """The factor of timm's LayerScale(dim, init_values=1e-5): gamma, a parameter filled with
        init_values, multiplies the input elementwise ('?' when init_values is not known, or an
        initialisation of this file may reach gamma after it was built: one of every module's
        parameters, not only of linear or convolution layers)."""
        index, name, default = L.LAYER_SCALES[value.cls]
        c = _ArgReader(value).get(index, name, default)
        if not _num(c) or any(not ops for ops, _tensor, _spec in self.extern_inits(value)):
            return "?"
        return float(c)

    def joined_outputs(self, value: Ctor, seeds: tuple) -> tuple[tuple, tuple | None]:
        """The nodes of calling a module of this file's classes with several tensors of one path
        (transformers' ViT layer: `self.output(mlp(norm(h)), h)`, whose forward adds `h` back):
        its forward runs with each of those inputs bound to its place on the path, so that a sum
        of two of them is a `Residual` as an in-class `x + f(x)` is. `seeds`: (parameter, nodes)
        for each such input, the parameter a position or a keyword, its nodes those since the
        earliest of them (the first input's seed holds the nodes between that value and the
        call). The nodes returned follow that earliest value, and so do the paths among the parts
        of the tuple it returns (module_outputs); a child this cannot run gets its plain nodes
        after the first input's seed."""
        first = dict(seeds)[0]
        if value.kind != "local" or value.instance is None or self.depth >= MAX_DEPTH:
            # A block whose forward is not run here (another file's, re-run there with one
            # input): a mark says that an earlier value re-enters, so that a norm before it is not
            # read as a Post-LN norm of the stream (model/blocks.py).
            mark = Passthrough(value.path or "", "an earlier value of the path enters", self.span(value),
                               rejoins=len(first) + 1)
            return first + (mark,) + self.module_nodes(value), None
        return self._child_run(value, value.path or "", self.span(value), seeds)

    def _child_nodes(self, value: Ctor, path: str, span: Any, seeds: tuple = ()) -> tuple:
        return self._child_run(value, path, span, seeds)[0]

    def _child_run(self, value: Ctor, path: str, span: Any, seeds: tuple = ()) -> tuple[tuple, tuple | None]:
        """The nodes of calling a module of this file's classes (its forward, under its path), and
        the parts of the tuple it returns (outputs.parts_of; None when it returns no tuple).

        Each forward path runs the whole forward again, children included. A child's run depends
        on the path only through the decisions it consults (decide()), so its nodes are kept with
        those decisions, and a later path that decides them alike takes the nodes and makes the
        same decisions again (about a quarter of the extraction's forward runs of timm and
        torchvision were those runs again). A reuse counts the steps and cuts the run took, and
        is refused where the run would have met the budget: the file's budgets run out where
        they did, and the facts are the same."""
        fm = self.fm
        lib = fm._lib
        key = before = None
        if self._memo is not None and self.plan is not None and value.instance.fm in (None, fm, lib) and _keyable(seeds):
            meter, lmeter = fm.meter, (lib.meter if lib is not None else None)
            key = (id(value.instance), path, self.depth, meter.depth, meter.limit,
                   (lmeter.depth, lmeter.limit) if lmeter is not None else None, seeds)
            for trace, result, steps, cuts, lib_steps, lib_cuts in self._memo.get(key, ()):
                if meter.steps + steps > meter.limit or (lmeter is not None and lmeter.steps + lib_steps > lmeter.limit):
                    break  # the run would meet the budget: run it
                if self._decides_alike(trace):
                    self._decide_again(trace)
                    meter.steps += steps
                    fm.cuts += cuts
                    if lib is not None:
                        lmeter.steps += lib_steps
                        lib.cuts += lib_cuts
                    return result
            before = (meter.steps, fm.cuts, lmeter.steps if lmeter else 0, lib.cuts if lib is not None else 0)
        outer, self._trace = self._trace, ([] if before is not None else self._trace)
        self.depth += 1
        note = self.note  # a child's failure is said by its opaque node, not as the parent's note
        try:
            nodes, known, parts = self._run(value.instance, path + ".", seeds)
        finally:
            self.depth -= 1
            self.note = note
            trace, self._trace = self._trace, outer
            if before is not None and outer is not None:
                outer.extend(trace)  # an enclosing child's run consulted them too
        result = (nodes, parts) if known else (dict(seeds).get(0, ()) + (Opaque(path, f"{value.cls}: forward not followed", span),), None)
        if before is not None:
            if fm._lib is lib and fm.meter.limit == key[4] and (lib is None or lib.meter.limit == key[5][1]):
                self._memo.setdefault(key, []).append((trace, result, fm.meter.steps - before[0], fm.cuts - before[1],
                                                       (lib.meter.steps - before[2]) if lib is not None else 0,
                                                       (lib.cuts - before[3]) if lib is not None else 0))
        return result

    def extern_inits(self, ctor: Ctor) -> tuple:
        """The initialisations of this file that reach the layers of a block of another file after
        it was built (`self.apply(fn)`, loops over `self.modules()`), by parametric op."""
        out: list = []
        for order, types, tensor, spec in sorted(ctor.__dict__.get("type_inits", []), key=lambda t: t[0]):
            if order <= ctor.order:
                continue
            if not types or "Module" in types:
                ops: tuple = ()
            else:
                ops = tuple(sorted({C.PARAM_LAYERS[t][0] for t in types if t in C.PARAM_LAYERS}))
                if not ops:
                    continue  # norms, activations: no parametric layer of the block
            # (a loop over parameters: its fallback, every tensor unknown; the block's paths are its own)
            out.append((ops, "*" if type(tensor) is ParamLoop else tensor, spec))
        return tuple(out)

    def sequence_nodes(self, items: list, source=None) -> tuple:
        """The nodes of running `items` in order; source(i): where item i was built (the opaque
        node's detail), called only for an item that is not a module."""
        out: list = []
        for i, item in enumerate(items):
            if isinstance(item, Alt) and item.splice:
                out.extend(self.alt_nodes(item, lambda o: self.sequence_nodes(o.items)))
            elif isinstance(item, (Ctor, Alt)) or item is None or source is None:
                out.extend(self.module_nodes(item))
            else:
                out.extend(self.module_nodes(item, source(i)))
        return tuple(out)

    def _item_source(self, seq: Ctor, i: int) -> str:
        """Where item i of an `nn.Sequential(...)` call came from: the argument's code when the
        arguments before it are one item each, the starred argument when it is the only one."""
        args = [a for a in seq.node.args if a.keyword is None] if type(seq.node) is cst.Call else []
        where = f"item {i} of {seq.path}" if seq.path else f"item {i}"
        if i < len(args) and not any(a.star for a in args[:i + 1]):
            return f"{_code(self.fm, args[i].value)}, {where}"
        if len(args) == 1 and args[0].star == "*":
            return f"from *{_code(self.fm, args[0].value)}, {where}"
        return where

    def _member_source(self, inst: Instance, key: str) -> str:
        made = inst.unread.get(key)
        return f"{_code(inst.fm or self.fm, made)}, self.{key}" if made is not None else f"self.{key}"

    def forward(self, inst: Instance, prefix: str, seeds: tuple = ()) -> tuple[tuple, bool]:
        return self._run(inst, prefix, seeds)[:2]

    def _run(self, inst: Instance, prefix: str, seeds: tuple = ()) -> tuple[tuple, bool, tuple | None]:
        """forward's nodes, whether it was followed, and the parts of the tuple it returns."""
        fm = inst.fm or self.fm
        saved, fm.pick = fm.pick, self.pick
        try:
            return self._forward(inst, prefix, fm, seeds)
        finally:
            fm.pick = saved

    def _forward(self, inst: Instance, prefix: str, fm: "FileModel", seeds: tuple = ()) -> tuple[tuple, bool, tuple | None]:
        fwd = fm._find_method(inst.cls, "forward")
        if fwd is None:
            if isinstance(inst.attrs.get("__torch__"), Ctor):
                return dict(seeds).get(0, ()) + self.module_nodes(inst.attrs["__torch__"]), True, None  # the torch layer's forward
            if inst.cls.sequential:
                members = _sequential_members(inst.attrs)
                nodes = self.sequence_nodes([v for _k, v in members], lambda i: self._member_source(inst, members[i][0]))
                return dict(seeds).get(0, ()) + nodes, True, None
            self.note = self.note or f"{inst.cls.name} has no forward"
            return (), False, None
        from gradlint.source.forward import ForwardInterpreter  # it builds on this module's values

        interp = ForwardInterpreter(self, inst)
        interp.prefix = prefix
        interp.owner = fm.defining(inst.cls, "forward")
        params = [p.name.value for p in fwd.params.params][1:]
        if not params:
            self.note = self.note or f"{inst.cls.name}.forward takes no input"
            return (), False, None
        given = dict(seeds)
        for i, p in enumerate(fwd.params.params[1:]):
            # The first input is the signal followed; the others are other inputs, unless they
            # default to None (an optional mask, a flag), which is what they are when omitted.
            # An input the caller gives from the first one's path is that path (joined_outputs).
            default = fwd.params.params[i + 1].default
            seed = given.get(i, given.get(p.name.value))
            if seed is not None:
                interp.env[p.name.value] = PathVal(params[0], seed)
            else:
                interp.env[p.name.value] = PathVal(p.name.value, ()) if i == 0 or default is None else fm.eval(default, {})
        for p in fwd.params.kwonly_params:
            seed = given.get(p.name.value)
            if seed is not None:
                interp.env[p.name.value] = PathVal(params[0], seed)
            else:
                interp.env[p.name.value] = fm.eval(p.default, {}) if p.default is not None else UNKNOWN
        try:
            interp.block(fwd.body)
        except Exhausted:
            self.note = self.note or f"{inst.cls.name}.forward exceeds the interpretation budget"
            return (), False, None
        result = interp.result(params[0])
        parts = parts_of(interp.returned, params[0]) if result is not None else None
        if prefix == "" and self.heads is None:
            self.heads = interp.heads  # the model's own forward (not a child's), its first run
        if result is None and not given:
            # the first input may be no signal: an ODE vector field is called `func(t, y)`
            # (torchdiffeq), its state the second input; follow the first other input, with no
            # default, whose path reaches the output
            later = [p.name.value for p in fwd.params.params[2:] if p.default is None]
            result = next((r for r in map(interp.result, later) if r is not None), None)
        if result is None:
            self.note = self.note or f"{inst.cls.name}.forward does not return a value computed from {params[0]}"
            return (), False, None
        if result != dict(seeds).get(0, ()) and is_off(grad_state(None, decorators(fwd), fm.imports.qualify)):
            # `@torch.no_grad()` on forward: nothing it runs gets a gradient through it (a frozen
            # feature extractor), as a `with torch.no_grad():` block's values (forward.with_stmt);
            # one that returns its input as it came hands back the caller's tensor
            result = no_grad_mark(PathVal(params[0], result)).nodes
            if parts is not None:  # (a part that is the input as it came keeps its gradient)
                parts = tuple(v if isinstance(v, PathVal) and not v.nodes else no_grad_mark(v) for v in parts)
        return result, True, parts


def _sequential_members(attrs: dict) -> list:
    """What nn.Sequential.forward runs for a subclass without a forward of its own: every
    registered submodule in registration order, the ones `super().__init__(*layers)` numbered
    first (it runs before any other can be registered), then those set or `add_module`d by name
    (timm's `ConvNorm(nn.Sequential)`: `self.add_module('c', conv)`, `self.add_module('bn', bn)`).
    A plain setting is no submodule, nor a parameter's value set as an attribute (a Sym:
    `self.out_channels = out_channels`); a value not known (`self.add_module('act', act_layer())`
    with act_layer not known, or a parameter `add_module`d: init_walk) may be one, and stands as an
    opaque module in its place."""
    numbered = sorted((int(k), k, v) for k, v in attrs.items() if k.isdigit())
    named = []
    for k, v in attrs.items():
        if k.isdigit() or k.startswith("__"):
            continue
        if isinstance(v, Alt) or isinstance(v, Ctor) and v.kind != "config":
            named.append((k, v))
        elif v is UNKNOWN:
            named.append((k, UNKNOWN))
    return [(k, v) for _n, k, v in numbered] + named


def _code(fm: Any, node: cst.CSTNode, limit: int = 60) -> str:
    """A node's code on one line, cut at `limit` characters (for people)."""
    try:
        text = " ".join(fm.src.code(node).split())
    except Exception:  # noqa: BLE001 - a detail for people; a node of another module has no code here
        return "?"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _unknown_detail(value: Any, where: str) -> str:
    """What a value called as a module was, and where it was built."""
    if value is UNKNOWN:
        what = "a value gradlint cannot follow"
    elif isinstance(value, Sym):
        what = f"known only as {value.text}"
    else:
        what = f"a {type(value).__name__}"
    return f"{where}: {what}" if where else what


def _keyable(seeds: tuple) -> bool:
    """Whether joined inputs can key the memo of children's nodes (IR nodes are frozen records
    of plain values; a value that is not would only cost the reuse). Not inputs over MAX_UNFOLDED
    nodes unfolded: a record's hash goes through every node it holds, unfolded (a residual body
    shared between paths hashed once per place), and the key is hashed three times; the seeds
    of diffusers' CogVideoX decoder, 7.7 million nodes unfolded, took 10 s of hashing (the forward is
    too large to model, whatever the memo gives)."""
    memo: dict[int, int] = {}
    if sum(unfolded_size(nodes, memo) for _p, nodes in seeds if type(nodes) is tuple) > MAX_UNFOLDED:
        return False
    try:
        hash(seeds)
    except TypeError:
        return False
    return True


# Where the `bias` flag is among a layer's positional arguments (one less for a lazy layer, which
# has no input size): Linear(in, out, bias), Bilinear(in1, in2, out, bias), convolutions
# (in, out, kernel, stride, padding, dilation | output_padding, groups, bias, ...).
_BIAS_POSITION = {"linear": 2, "bilinear": 3, **{f"{c}{d}d": 7 for c in ("conv", "convtranspose") for d in (1, 2, 3)}}


def _sequence_size(value: Ctor, memo: dict[int, tuple]) -> int:
    """The layers an nn.Sequential stands for unfolded, each distinct object counted once (memo:
    id -> (the object, its size)), stopping past MAX_UNFOLDED. Lowered as it is, `s =
    nn.Sequential(s, s)` forty times over is 2**40 layers from 41 objects: the run never ended."""
    got = memo.get(id(value))
    if got is not None:
        return got[1]
    total = 0
    for item in value.items:
        for one in (item.options if isinstance(item, Alt) else (item,)):
            if isinstance(one, Ctor) and one.kind == "torch" and one.cls == "Sequential" and one.items is not None:
                total += _sequence_size(one, memo)
            elif isinstance(one, ListVal):
                total += len(one.items)
            else:
                total += 1
        if total > MAX_UNFOLDED:
            break
    memo[id(value)] = (value, total)
    return total


class _ArgReader:
    """A layer's constructor arguments, read as torch binds them: by keyword, then by position.

    Positions are counted in the call as written, up to its first `*args` (the constructor's
    arguments hold one unknown for each `*args` / `**kwargs`, which is no position). A `*args`
    may hold any argument not given before it: UNKNOWN. A `**kwargs` may hold any keyword not
    written: UNKNOWN, unless `kwargs_hold` is False (timm passes `**dd`, the device and dtype, to
    most layers: a setting such as `groups` or `bias` is read as not in it). An argument the call
    does not give is the signature's `default` (UNKNOWN when none is named)."""

    def __init__(self, ctor: Any) -> None:
        self.ctor = ctor

    def get(self, index: int, name: str, default: Any = UNKNOWN, *, kwargs_hold: bool = True) -> Any:
        ctor = self.ctor
        if not isinstance(ctor, Ctor):
            return UNKNOWN
        if name in ctor.kwargs:
            return ctor.kwargs[name]
        node = ctor.node
        if type(node) is not cst.Call:  # built by the engine, not a call: its arguments are plain
            return ctor.args[index] if index < len(ctor.args) else default
        written = 0
        for a in node.args:
            if a.star == "*":
                return UNKNOWN
            if a.keyword is None and not a.star:
                if written == index:
                    return ctor.args[index] if index < len(ctor.args) else UNKNOWN
                written += 1
        if kwargs_hold and any(a.star == "**" for a in node.args):
            return UNKNOWN
        return default

    def kw(self, name: str, default: Any) -> Any:
        if not isinstance(self.ctor, Ctor):
            return default
        return self.ctor.kwargs.get(name, default)


def drop_p(v: Any) -> float | None:
    """A dropout's drop probability as the constructor gives it; None when it is not a number
    in [0, 1] (a name the lowering could not bind)."""
    return float(v) if _num(v) and not isinstance(v, bool) and 0.0 <= v <= 1.0 else None


def _fan(v: Any):
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, Sym):
        return v.text
    return None


def _receptive(k: Any, dims: int):
    if isinstance(k, int):
        return k ** dims
    if isinstance(k, ListVal) and all(isinstance(i, int) for i in k.items):
        return math.prod(k.items)
    if isinstance(k, Sym):
        return f"({k.text})**{dims}" if dims > 1 else k.text
    return None


def _channel_ratio(cin: Any, cout: Any) -> float | None:
    """in / out channels: numbers divide, one symbol over itself is 1, else None."""
    a, b = _fan(cin), _fan(cout)
    if isinstance(a, int) and isinstance(b, int):
        return a / b if b > 0 else None
    return 1.0 if isinstance(a, str) and a == b else None


def _mul(a: Any, b: Any):
    a, b = _fan(a) if not isinstance(a, str) else a, _fan(b) if not isinstance(b, str) else b
    if a is None or b is None:
        return None
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    if b == 1:
        return a
    return f"{a}*{b}"


def _div(a: Any, b: Any):
    a = _fan(a) if not isinstance(a, str) else a
    if b == 1 or b is None:
        return a
    b = _fan(b)
    if isinstance(a, int) and isinstance(b, int) and b:
        return a // b
    if a is None or b is None:
        return None
    return f"{a}/{b}"


def stack_sites(fm: FileModel, inst: Instance, prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    """(module path, where it is built) of the ModuleLists and Sequentials an instance holds, in
    its submodules of this file too (a few levels down): Network.containers."""
    out: list[tuple[str, Any]] = []
    for attr, value in inst.attrs.items():
        if type(value) is not Ctor or attr.startswith("__"):
            continue
        path = prefix + attr
        if value.kind == "torch" and value.cls in ("ModuleList", "Sequential") and type(value.node) is cst.Call:
            # (within the function that built it: a lookup in its whole class paired all of it)
            out.append((path, fm.src.span(value.node, within=fm.holder.get(id(value.node)))))
        elif value.kind == "local" and value.instance is not None and depth < 3:
            out.extend(stack_sites(fm, value.instance, path + ".", depth + 1))
    return out
