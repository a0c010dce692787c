"""forward() lowered to IR nodes: the statement interpreter that follows each tensor as the nodes
applied to an input since that input (models.PathVal), over the instance __init__ built.

It is the second half of source/models.py (which interprets __init__ and owns the value domain):
`Lowerer.forward` runs it once per forward path. What a call, an operator or a statement does to
the tensors it touches is decided here: module calls, functional activations and norms, joins of
branches (residual sums, concatenations, products and attention: which tensors meet is read here,
the nodes their meeting becomes are gradlint.source.joins's), checkpoint wrappers, stochastic
depth, `if` statements decided by the Lowerer's plan. Operators, reductions, torch's function
forms of them and `isinstance` tests are source/forward_ops.py's (ForwardOps, a mixin).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import libcst as cst

from gradlint.model.ir import Activation, Extern, InitSpec, Node, Norm, Opaque, Param, Passthrough, Residual
from gradlint.source import catalog as C
from gradlint.source import joins as J
from gradlint.source.joins import _add, _earlier_inputs, _nested_outputs
from gradlint.source import library as L
from gradlint.source import outputs
from gradlint.source.budget import MAX_DEPTH, MAX_EXPR_DEPTH, Exhausted, grown
from gradlint.source.construct import _NOT_HANDLED
from gradlint.source.foreign import SUPER_NAMES, _self_names
from gradlint.source.forward_ops import REDUCTIONS, TENSOR_FUNCTIONS, ForwardOps
from gradlint.source.engine.values import Alt, Ctor, DictVal, HeldTensor, Instance, ListVal, PathVal, held_tensor
from gradlint.source.init_walk import _truth, _Walker
from gradlint.source.names import bound_names
from gradlint.source.lowering import NO_CHOICE, _code, drop_p
from gradlint.source.engine.calls import arg as _arg_value
from gradlint.source.engine.values import UNKNOWN
from gradlint.source.engine.walk import children
from gradlint.source.engine.values import is_number as _num
from gradlint.source.names import decorators, dotted, grad_state, is_off, with_items

if TYPE_CHECKING:
    from gradlint.source.lowering import Lowerer


class ForwardInterpreter(_Walker, ForwardOps):
    """Interprets forward over paths of IR nodes."""

    def __init__(self, low: Lowerer, inst: Instance) -> None:
        self.low = low
        self.fm = inst.fm or low.fm
        self.inst = inst
        self.env: dict = {}
        self.returns: list = []
        # the other outputs of a tuple (or dict) forward returns, rooted at the input and not on
        # the path `result` gives (a detector's box head beside its class head): set by `result`
        self.heads: list[tuple[str, tuple]] = []
        self.returned: Any = UNKNOWN  # what forward returns, its returns merged: set by `result`
        self.done = False
        self.calls = 0
        self.prefix = ""  # module path of the instance, for the names of opaque nodes
        # The class whose method runs when it is a base of the instance's class (super().forward)
        self.owner: Any = None

    def attr(self, name: str) -> Any:
        return self.inst.attrs.get(name, UNKNOWN)

    def ev(self, e: cst.BaseExpression) -> Any:
        self.calls += 1
        if self.calls > 20000:
            raise Exhausted()
        meter = self.fm.meter
        # Meter.enter and Meter.leave, inlined (FileModel._eval does the same)
        meter.depth += 1
        meter.steps += 1
        try:
            if meter.depth > MAX_EXPR_DEPTH or meter.steps > meter.limit:
                raise Exhausted("depth" if meter.depth > MAX_EXPR_DEPTH else "steps")
            return self._ev_node(e)
        finally:
            meter.depth -= 1

    def _ev_node(self, e: cst.BaseExpression) -> Any:
        kind = type(e)  # libcst's node classes are ABCs: isinstance costs a cache lookup per miss
        if kind is cst.Name:
            if e.value in self.env:
                return self.env[e.value]
            return self.fm.lookup(e.value, {})
        if kind is cst.Attribute:
            if type(e.value) is cst.Name and e.value.value == "self":
                return self.attr(e.attr.value)
            base = self.ev(e.value)
            if isinstance(base, PathVal):
                if e.attr.value in ("T", "mT", "real", "data"):
                    return base if e.attr.value != "data" else PathVal(base.root, base.nodes + (Opaque("", ".data"),))
                return UNKNOWN  # x.shape and friends
            if isinstance(base, Ctor) and base.instance is not None:
                return base.instance.attrs.get(e.attr.value, UNKNOWN)
            if isinstance(base, Ctor) and base.keys is not None and e.attr.value in base.keys \
                    and len(base.keys) == len(base.items or ()):
                # a ModuleDict's (or a Sequential of an OrderedDict's) module by its key as an
                # attribute: torch registers each under its key (`self.transformer.wte(x)`)
                return base.items[base.keys.index(e.attr.value)]  # type: ignore[index]
            return UNKNOWN
        if kind is cst.Subscript:
            base = self.ev(e.value)
            if isinstance(base, PathVal) and base.parts is not None:
                base = ListVal(list(base.parts))  # `blk(x)[0]`: an item of the tuple the module returned
            elif isinstance(base, PathVal):
                return base  # slicing a tensor keeps its scale
            if len(e.slice) == 1 and type(e.slice[0].slice) is cst.Index:
                idx = self.ev(e.slice[0].slice.value)
                items = self.fm.items_of(base)
                if items is not None and isinstance(idx, int) and -len(items) <= idx < len(items):
                    return items[idx]
                if isinstance(base, Ctor) and base.keys is not None and isinstance(idx, str) and idx in base.keys:
                    return base.items[base.keys.index(idx)]  # type: ignore[index]
                if isinstance(base, DictVal) and isinstance(idx, str):
                    return base.items.get(idx, UNKNOWN)
            return UNKNOWN
        if kind is cst.Call:
            return self.call(e)
        if kind is cst.BinaryOperation:
            return self.binop(e)
        if kind is cst.UnaryOperation:
            v = self.ev(e.expression)
            return v if isinstance(v, PathVal) else self.fm.eval(e, self._numeric_env())
        if kind in (cst.Tuple, cst.List):
            return ListVal([self.ev(el.value) for el in e.elements if type(el) is not cst.StarredElement])
        if kind in (cst.ListComp, cst.GeneratorExp):
            return self.comprehension(e)
        if kind is cst.Dict:
            # `{"res": x_residual, "out": x}` with plain string keys: its values by key
            items = {}
            for el in e.elements:
                if type(el) is not cst.DictElement or type(el.key) is not cst.SimpleString:
                    return UNKNOWN
                items[el.key.evaluated_value] = self.ev(el.value)
            return DictVal(items)
        if kind in (cst.Integer, cst.Float, cst.SimpleString):
            return self.fm.eval(e, {})
        if kind is cst.Comparison:
            return self.fm.eval(e, self._numeric_env())
        if kind is cst.IfExp:
            test = _truth(self.fm.eval(e.test, self._numeric_env()))
            if test is None:
                test = self.kind_test(e.test)
            if test is None:
                test = self.low.decide(e)
            if test is not None:
                return self.ev(e.body if test else e.orelse)
            a, b = self.ev(e.body), self.ev(e.orelse)
            return _merge(a, b)
        return UNKNOWN

    def comprehension(self, e: cst.ListComp | cst.GeneratorExp) -> Any:
        """`[op(x) for op in self.paths]`, `[x] + [pool(x) for pool in self.poolings]`: one value
        per item when the items are known (a ModuleList's modules, a split's parts), as the `for`
        statement unrolls them; one `for`, no `if` (which items it keeps would be guessed)."""
        comp = e.for_in
        if comp.inner_for_in is not None or comp.ifs or comp.asynchronous is not None:
            return UNKNOWN
        items = self.loop_items(comp)
        if items is None:
            return UNKNOWN
        names = bound_names(comp.target)
        saved = {n: self.env[n] for n in names if n in self.env}
        out = []
        try:
            for item in items:
                self.assign_target(comp.target, item)
                out.append(self.ev(e.elt))
        finally:
            # the comprehension's variables are its own (Python 3): the names outside are as before
            for n in names:
                self.env.pop(n, None)
            self.env.update(saved)
        return ListVal(out)

    def _numeric_env(self) -> dict:
        env = {k: v for k, v in self.env.items() if not isinstance(v, PathVal)}
        for k, v in self.inst.attrs.items():
            env["self." + k] = v
        return env

    def paths_in(self, call: cst.Call) -> list:
        return [v for v in (self.ev(a.value) for a in call.args) if isinstance(v, PathVal)]

    def call(self, call: cst.Call) -> Any:
        func = call.func
        quals = self.fm.qual(func)
        # calling a module: self.fc(x), layer(x), self.blocks[i](x)
        if not quals:
            target = self.ev(func) if not (type(func) is cst.Attribute and isinstance(self.ev(func.value), PathVal)) else None
            while isinstance(target, Alt) and not target.splice:
                chosen = self.low.pick(target)
                if chosen is NO_CHOICE:  # merging: the options' nodes, when they agree
                    args = self.paths_in(call)
                    base = args[0] if args else PathVal("?", ())
                    return PathVal(base.root, base.nodes + self.low.module_nodes(target))
                target = chosen
            if isinstance(target, Ctor):
                given = [(a, self.ev(a.value)) for a in call.args]
                args = [v for _a, v in given if isinstance(v, PathVal)]
                base = args[0] if args else PathVal("?", ())
                if target.kind == "torch" and target.cls in C.ATTENTION_MODULES:
                    self.inst.attention = True
                    # query, key, value: the first three tensors (self-attention passes x three times);
                    # nn.MultiheadAttention returns (output, weights or None), as a recurrent layer
                    # returns (output, state)
                    out = self.attention(args[:3] or [base], "multihead", target.path or "", self.low.span(target))
                    return ListVal([out, UNKNOWN])
                if target.kind == "torch" and target.cls in C.RECURRENT_MODULES:
                    out = PathVal(base.root, base.nodes + self.low.module_nodes(target))
                    return ListVal([out, UNKNOWN])
                if target.kind != "torch" and len(args) > 1:
                    joined = _earlier_inputs(given, base)
                    if joined is not None:
                        start, seeds = joined
                        nodes, parts = self.low.joined_outputs(target, seeds)
                        return self.module_result(PathVal(base.root, base.nodes[:start]), nodes, parts, target, given)
                return self.module_call(base, target, given)
            if type(func) is cst.Attribute and type(func.value) is cst.Name and func.value.value == "self":
                method = self.fm._methods(self.inst.cls).get(func.attr.value)
                if method is not None and func.attr.value != "forward":
                    return self.call_method(method, call)
            if (type(func) is cst.Attribute and type(func.value) is cst.Call and dotted(func.value.func) == "super"
                    and func.attr.value == "forward"):
                return self.super_forward(call)
            if (type(func) is cst.Name and func.value in ("getattr", "hasattr") and len(call.args) >= 2
                    and type(call.args[0].value) is cst.Name and call.args[0].value.value == "self"):
                key = self.fm.eval(call.args[1].value, {})
                if isinstance(key, str):
                    if func.value == "hasattr":
                        return key in self.inst.attrs
                    if key in self.inst.attrs:
                        return self.attr(key)
                    return self.ev(call.args[2].value) if len(call.args) > 2 else UNKNOWN
            if type(func) is cst.Name and func.value in self.fm.functions and func.value not in self.env:
                # A function of the file (window_partition, a reshape helper): followed like a method.
                return self.call_method(self.fm.functions[func.value], call, bound_self=False)
        if type(func) is cst.Attribute and type(func.value) is cst.Name and func.attr.value in _LIST_METHODS and \
                isinstance(self.env.get(func.value.value), ListVal):
            return self.list_method(func.value.value, func.attr.value, call)
        special = self.call_special(call, quals)
        if special is not _NOT_HANDLED:
            return special
        for q in quals:
            if q in C.ACTIVATION_FUNCTIONS:
                return self.append(call, Activation("", C.ACTIVATION_FUNCTIONS[q], self._act_param(q, call)))
            if q in C.NORM_FUNCTIONS:
                return self.append(call, Norm("", C.NORM_FUNCTIONS[q]))
            if q in C.DROPOUT_FUNCTIONS:
                return self.append(call, self._dropout(q, call))
            if q in C.PASSTHROUGH_FUNCTIONS:
                return self.append(call, None)
            if q in ("torch.nn.functional.scaled_dot_product_attention",):
                paths = self.paths_in(call)
                return self.attention(paths[:3], "sdpa") if paths else UNKNOWN
        if type(func) is cst.Attribute:
            owner = self.ev(func.value)
            method = func.attr.value
            if isinstance(owner, PathVal):
                if method in _SIZE_READS:
                    return UNKNOWN  # `x.size(0)`: a number
                if method in C.ACTIVATION_METHODS:
                    return PathVal(owner.root, owner.nodes + (Activation("", C.ACTIVATION_METHODS[method]),))
                if method in C.NEUTRAL_METHODS:
                    return owner
                if method in REDUCTIONS and not self.paths_in(call):
                    dims = [self.ev(a.value) for a in call.args if a.keyword is None and not a.star][:1] + [
                        self.ev(a.value) for a in call.args if a.keyword is not None and a.keyword.value == "dim"]
                    return self.reduction(owner, method, dims)
                if method == "addcmul":
                    got = self.addcmul(call)
                    if got is not _NOT_HANDLED:
                        return got
                if method in ("chunk", "split", "unbind", "tensor_split"):
                    # Parts of one tensor: each keeps its scale (q, k, v from one projection).
                    return ListVal([PathVal(owner.root, owner.nodes + (Passthrough("", method),))] * 8)
                if method in ("mul", "mul_", "div", "div_"):
                    other = self.paths_in(call)
                    if not other:
                        return self.method_factor(owner, method, call)
                    return self.product(owner, other[0], cst.Multiply())
                if method in ("matmul", "bmm", "mm"):
                    other = self.paths_in(call)
                    if other and other[0].root == owner.root:
                        return self.attention([owner, other[0]], "matmul")
                    weight = self._held_weight(call) if not other else None
                    if weight is not None:
                        return self.weight_layer(owner, weight, "linear", right=True)
                if method in ("add", "add_"):
                    other = self.paths_in(call)
                    if other:
                        return _add(owner, other[0])
                    return owner
                if method == "softmax":
                    return PathVal(owner.root, owner.nodes + (Activation("", "softmax"),))
                return PathVal(owner.root, owner.nodes + (Opaque("", f".{method}()"),))
            if held_tensor(owner) and method in C.NEUTRAL_METHODS and not self.paths_in(call):
                # `self.cls_token.expand(B, -1, -1)`: still the tensor of __init__, beside the path
                return owner
        if type(func) is cst.Name and func.value in ("list", "tuple") and not quals and len(call.args) == 1 \
                and not call.args[0].keyword and not call.args[0].star and func.value not in self.env:
            value = self.ev(call.args[0].value)
            if isinstance(value, ListVal):
                return ListVal(list(value.items))  # `list(op(x) for op in self.paths)`
        paths = self.paths_in(call)
        if paths:
            first = paths[0]
            return PathVal(first.root, first.nodes + (self.unknown_call(func),))
        # list/tuple args (torch.cat([a, b])) hold paths too
        for a in call.args:
            v = self.ev(a.value)
            if isinstance(v, ListVal):
                ps = [i for i in v.items if isinstance(i, PathVal)]
                if ps:
                    return PathVal(ps[0].root, ps[0].nodes + (self.unknown_call(func),))
        return UNKNOWN

    def module_call(self, base: PathVal, module: Any, given: list) -> PathVal:
        """`module(x)` on the tensor `base`: its main output, carrying the parts of the tuple it
        returns when it is a class of this file whose forward returns one (PathVal.parts); given:
        the call's (argument, value) pairs, for the parts that are its other inputs."""
        nodes, parts = self.low.module_outputs(module)
        return self.module_result(base, nodes, parts, module, given)

    def module_result(self, base: PathVal, nodes: tuple, parts: tuple | None, module: Any, given: list) -> PathVal:
        """A module's output after the tensor `base`: its nodes, and the parts of its tuple."""
        out = PathVal(base.root, base.nodes + nodes)
        if parts is None:
            return out
        inst = module.instance
        inputs = outputs.bound_inputs((inst.fm or self.fm)._find_method(inst.cls, "forward"), given)
        return PathVal(out.root, out.nodes, parts=tuple(outputs.rebased(parts, base, out, inputs)))

    def list_method(self, name: str, method: str, call: cst.Call) -> Any:
        """`skips.append(x)`, `.extend`, `.insert`, `.pop` on a list of forward's own (a U-Net's
        skips, concatenated later with `torch.cat((x, skips[-i]), 1)` or `skips.pop()`): the name is
        bound to the list it now is (a new one: another binding of the old list keeps it); what
        cannot be followed leaves it a list of one unknown part."""
        items = list(self.env[name].items)
        args = [a for a in call.args if a.keyword is None and not a.star]
        result: Any = None
        if len(args) != len(call.args):
            items = None
        elif method == "append" and len(args) == 1:
            items.append(self.ev(args[0].value))
        elif method == "extend" and len(args) == 1 and isinstance(more := self.ev(args[0].value), ListVal):
            items.extend(more.items)
        elif method == "insert" and len(args) == 2 and isinstance(at := self.ev(args[0].value), int) and \
                not isinstance(at, bool):
            items.insert(at, self.ev(args[1].value))
        elif method == "pop" and len(args) <= 1 and items:
            at = self.ev(args[0].value) if args else -1
            if isinstance(at, int) and not isinstance(at, bool) and -len(items) <= at < len(items):
                result = items.pop(at)
            else:
                items, result = None, UNKNOWN
        else:
            items, result = None, UNKNOWN
        # (what cannot be followed leaves a list of unknown parts: a concatenation of them is
        # not taken for one of constants, `_unknown_part_reads_a_path`)
        self.env[name] = ListVal(grown(items)) if items is not None else ListVal([UNKNOWN])
        return result

    def super_forward(self, call: cst.Call) -> Any:
        """`super().forward(x)`: the forward of the class the running method's class derives from,
        run with the same instance (a base of this file), or the torch.nn layer a subclass of one
        built in __init__; anything else is an opaque call."""
        cls = self.owner or self.inst.cls
        for base in cls.bases:
            local = self.fm.classes.get(base)
            if local is not None and local is not cls:
                method = self.fm._methods(local).get("forward")
                if method is not None:
                    return self.call_method(method, call, owner=self.fm.defining(local, "forward"))
                break
        layer = self.inst.attrs.get("__torch__")
        paths = self.paths_in(call)
        if not paths:
            return UNKNOWN
        if isinstance(layer, Ctor) and self.fm.layer_base(cls) is not None:
            return PathVal(paths[0].root, paths[0].nodes + self.low.module_nodes(layer))
        parent = self.inst.attrs.get("__parent__")
        if isinstance(parent, Ctor) and parent.extern is not None and cls is self.inst.cls and len(call.args) == 1:
            return PathVal(paths[0].root, paths[0].nodes + (self.parent_forward(parent),))
        return PathVal(paths[0].root, paths[0].nodes + (Opaque("", "call of super().forward"),))

    def parent_forward(self, parent: Ctor) -> Opaque:
        """`super().forward(x)` of a class whose base is a class of another file: a placeholder of
        that class built with the `super().__init__` arguments, its layers under this instance's
        path. It holds only when the base's code touches nothing this class defines or changes:
        the names this class's code reads or sets on `self` travel with it (key SUPER_NAMES), and
        the re-run in the base's file (rerun.lower_class) refuses when the base mentions one."""
        name = self.prefix.rstrip(".")
        what = f"{parent.cls}.forward: a class of another file, run on this instance"
        args = parent.extern[1]
        if args is not None:
            names = ",".join(sorted(_self_names(self.fm, self.inst.cls)))
            args = args + ((SUPER_NAMES, (names,)),)
        return Extern(name, what, self.low.span(parent), cls=parent.extern[0], args=args,
                      inits=self.low.extern_inits(parent))

    def unknown_call(self, func: cst.BaseExpression) -> Opaque:
        """The opaque node of a call gradlint cannot follow, named by what it calls."""
        text = dotted(func)
        if type(func) is cst.Attribute and type(func.value) is cst.Name and func.value.value == "self":
            attr = func.attr.value
            if attr in self.inst.attrs:
                made = self.inst.unread.get(attr)
                detail = _code(self.inst.fm or self.fm, made) if made is not None else ""
                return Opaque(self.prefix + attr, f"self.{attr}: built by code gradlint cannot follow", detail=detail)
            return Opaque(self.prefix + attr, f"self.{attr}: not set in __init__")
        return Opaque("", f"call of {text}" if text else "call of a computed function")

    def call_special(self, call: cst.Call, quals: frozenset[str]) -> Any:
        """Calls that apply modules or join paths: checkpoint wrappers, stochastic depth,
        concatenation and stacking of branches."""
        lib = L.library_name(quals, self.fm.src.path) if quals else None
        if lib is None and isinstance(self.fm.src, L.LibrarySource):
            lib = dotted(call.func)
        last = {q.rsplit(".", 1)[-1] for q in quals}
        if lib in L.PASS_FUNCTIONS or "torchvision.ops.stochastic_depth" in quals:
            what = lib or "stochastic_depth"
            if what not in L.DROP_PATH_FUNCTIONS:
                return self.append(call, Passthrough("", what))
            p, at, training = L.DROP_PATH_FUNCTIONS[what]
            keep = _arg_value(call, 3, "scale_by_keep") if what == "drop_path" else None
            if keep is not None and self.fm.eval(keep, self._numeric_env()) is not True:
                # scale_by_keep=False keeps the kept paths unscaled: not modelled
                return self.append(call, Passthrough("", what, dropout="inverted", p=None))
            return self.append(call, self._dropout(what, call, ("inverted", p, training), at))
        if lib in L.NORM_FUNCTIONS:
            return self.append(call, Norm(self.prefix.rstrip("."), L.NORM_FUNCTIONS[lib]))
        if (lib in L.CHECKPOINT_FUNCTIONS or any(q.startswith("torch.utils.checkpoint.") for q in quals)) and call.args:
            return self.checkpoint(call, "seq" in (lib or "") or "sequential" in "".join(last))
        if quals & _JOINS:
            return self.stacked(call, self.join(call)) if "torch.stack" in quals else self.join(call)
        if "torch.addcmul" in quals:
            return self.addcmul(call)
        if quals & _FUNCTIONAL_LAYERS.keys() and call.args:
            return self.functional_layer(call, quals)
        if quals & _SPLITS:
            paths = self.paths_in(call)
            if paths:
                return ListVal([PathVal(paths[0].root, paths[0].nodes + (Passthrough("", "split"),))] * 8)
        if quals & {"torch.matmul", "torch.bmm", "torch.mm", "torch.einsum"}:
            paths = self.paths_in(call)
            if len(paths) == 2 and paths[0].root == paths[1].root:
                return self.attention(paths, "matmul")
            weight = self._held_weight(call) if len(paths) == 1 and "torch.einsum" not in quals else None
            if weight is not None:
                return self.weight_layer(paths[0], weight, "linear", right=weight is not call.args[0].value)
            if "torch.einsum" in quals and len(paths) == 1:
                return paths[0]  # a contraction with a parameter or a constant: a linear map of x
        if quals & TENSOR_FUNCTIONS.keys():
            return self.tensor_function(call, quals)
        return _NOT_HANDLED

    def functional_layer(self, call: cst.Call, quals: frozenset[str]) -> Any:
        """F.linear(x, self.weight, self.bias), F.conv2d(x, w, ...): a parametric layer whose
        weight the module holds. Its shape and initialisation are not read from the tensor, so the
        layer ends any chain (an unknown scale) but is no longer an opaque call. A weight computed
        from the input itself (dynamic filters) is a product of branches instead."""
        x = self.ev(call.args[0].value)
        w_expr = _arg_value(call, 1, "weight")
        w = self.ev(w_expr) if w_expr is not None else UNKNOWN
        if not isinstance(x, PathVal):
            return UNKNOWN
        if isinstance(w, PathVal):
            return self.product(x, w, cst.Multiply())
        op = next(_FUNCTIONAL_LAYERS[q] for q in quals if q in _FUNCTIONAL_LAYERS)
        return self.weight_layer(x, w_expr, op)

    def weight_layer(self, x: PathVal, w_expr: cst.BaseExpression | None, op: str, right: bool = False) -> PathVal:
        """x through a layer whose weight is a tensor the module holds (`F.linear(x, self.weight)`,
        `x @ self.W`): named after the attribute. When the weight is the attribute itself, made in
        __init__ by a factory we read (`nn.Parameter(torch.zeros(d_in, d_out))`: a HeldTensor), the
        layer has its fans (`right`: the weight is the right operand of a product, laid out
        (in, out); else as torch's layers, (out, in, *kernel)) and its init; else they are not
        known and the layer ends any chain (an unknown scale)."""
        attr = ""
        node = w_expr
        while type(node) in (cst.Call, cst.Attribute) and not (
                type(node) is cst.Attribute and type(node.value) is cst.Name and node.value.value == "self"):
            node = node.func.value if type(node) is cst.Call and type(node.func) is cst.Attribute else (
                node.value if type(node) is cst.Attribute else None)
        if type(node) is cst.Attribute:
            attr = node.attr.value
        name = self.prefix + attr if attr else self.prefix.rstrip(".")
        fan_in = fan_out = None
        init, origin = InitSpec("unknown"), None
        # (the attribute itself, or a name bound to one: `for W in self.weights: x = x @ W`)
        held = self.attr(attr) if attr and node is w_expr else self.ev(w_expr) if type(w_expr) is cst.Name else None
        if type(held) is HeldTensor and held.param:
            shape = held.shape
            kernel = 1
            for d in shape[2:]:
                kernel = kernel * d if d is not None and kernel is not None else None
            if right and len(shape) == 2:
                fan_in, fan_out = shape
            elif not right and len(shape) >= 2 and kernel is not None:
                fan_in = shape[1] * kernel if shape[1] is not None else None
                fan_out = shape[0] * kernel if shape[0] is not None else None
            init, origin = self._held_init(held, attr), held.made.origin
            if held.path is not None:
                name = held.path if held.path.startswith(self.prefix) else self.prefix + held.path
        return PathVal(x.root, x.nodes + (Param(name, op, fan_in, fan_out, init, origin, attr=attr),))

    def _held_init(self, held: HeldTensor, attr: str) -> InitSpec:
        """The init a raw weight holds when forward runs: its factory's fill or the last init
        call on it; unknown when an initialisation that may reach it ran after it was made (a
        loop over the parameters, an `apply` whose function may set it) (what reaches the
        instance: Lowerer._assign's `reaching`, the instance's own for the model itself)."""
        inst = self.inst
        reaching = inst.__dict__.get("reaching", inst.type_inits)
        spec, last = held.init(), max((o for o, _n, _s in held.inits), default=held.order)
        for order, types, name, found in sorted(reaching, key=lambda t: t[0]):
            if order <= held.order or not (not types or "Module" in types or inst.cls.name in types) \
                    or type(name) is str and name not in ("*", attr):
                continue
            if type(name) is str and name == attr and inst.cls.name in types and order > last:
                spec, last = found, order  # `if isinstance(m, Experts): m.up.data.normal_(...)`
            else:
                return InitSpec("unknown")  # a loop over parameters, an init of every tensor
        return spec

    def _held_weight(self, call: cst.Call) -> cst.BaseExpression | None:
        """The argument of a matrix product that is a tensor the module made in `__init__`
        (`torch.matmul(x, self.W)`, `x.mm(self.W)`), if exactly one is."""
        held = [a.value for a in call.args if a.keyword is None and not a.star and held_tensor(self.ev(a.value))]
        return held[0] if len(held) == 1 else None

    def checkpoint(self, call: cst.Call, sequence: bool) -> Any:
        """checkpoint(fn, x) is fn(x); checkpoint_seq(modules, x) runs them in order: recomputing
        activations in backward changes memory, not gradients."""
        fn = self.ev(call.args[0].value)
        rest = [self.ev(a.value) for a in call.args[1:] if a.keyword is None and not a.star]
        paths = [v for v in rest if isinstance(v, PathVal)]
        if not paths:
            return UNKNOWN
        base = paths[0]
        if sequence and isinstance(fn, Ctor) and fn.items is not None:
            nodes = base.nodes
            for item in fn.items:
                nodes = nodes + self.low.module_nodes(item)
            return PathVal(base.root, nodes)
        if isinstance(fn, Ctor):
            return self.module_call(base, fn, [(a, self.ev(a.value)) for a in call.args[1:]])
        return PathVal(base.root, base.nodes + (Opaque("", "checkpoint of a function"),))

    def join(self, call: cst.Call) -> Any:
        """torch.cat / torch.stack of branches of one input: a residual whose join is a
        concatenation; with the input itself among them (DenseNet), the skip is kept."""
        seq = self.ev(call.args[0].value) if call.args else UNKNOWN
        if not isinstance(seq, ListVal):
            paths = self.paths_in(call)
            return PathVal(paths[0].root, paths[0].nodes + (Opaque("", "concatenation of unknown parts"),)) if paths else UNKNOWN
        paths = [v for v in seq.items if isinstance(v, PathVal)]
        if not paths:
            return UNKNOWN
        if any(v is UNKNOWN for v in seq.items) and self._unknown_part_reads_a_path(call.args[0].value, seq):
            # a part nothing is known of that may hold an earlier layer's output (a U-Net's skip,
            # a list of its features): not a constant beside the path
            return PathVal(paths[0].root, paths[0].nodes + (Opaque("", "concatenation of unknown parts"),))
        roots = {p.root for p in paths}
        if len(roots) > 1:
            return PathVal(paths[0].root, paths[0].nodes + (Opaque("", "concatenation of different inputs"),))
        if len(paths) == 1:
            return paths[0]  # joined with constants or parameters (a class token): the scale is kept
        prefix = paths[0].nodes
        for p in paths[1:]:
            prefix = J.common_prefix(prefix, p.nodes)
        bodies = [p.nodes[len(prefix):] for p in paths]
        skip = any(not b for b in bodies)
        bodies = [b for b in bodies if b]
        if not bodies:
            return paths[0]
        nested = _nested_outputs(bodies, skip)
        if nested is not None:
            return PathVal(paths[0].root, prefix + nested)
        node = Residual(body=tuple(bodies[0]), skip_scale=None if skip else 0.0, join="cat",
                        branches=tuple(tuple(b) for b in bodies[1:]))
        return PathVal(paths[0].root, prefix + (node,))

    def _unknown_part_reads_a_path(self, written: cst.BaseExpression, seq: ListVal) -> bool:
        """Whether an unknown part of a concatenation may be computed from forward's tensors: in a
        display (`torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x])`), its expression
        reads a name that holds one, other than for its size; a list held in a name (a U-Net's
        skips) may hold anything."""
        if type(written) not in (cst.List, cst.Tuple) or len(written.elements) != len(seq.items):
            return True
        for el, v in zip(written.elements, seq.items):
            if v is UNKNOWN and self._reads_a_path(el.value):
                return True
        return False

    def _reads_a_path(self, expr: cst.BaseExpression) -> bool:
        stack: list = [expr]
        while stack:
            n = stack.pop()
            kind = type(n)
            if kind is cst.Attribute:
                if n.attr.value in _SIZE_READS:
                    continue  # `x.shape[0]`, `x.device`: no value of the tensor
                stack.append(n.value)
                continue
            if kind is cst.Call and type(n.func) is cst.Attribute and n.func.attr.value in _SIZE_READS:
                continue  # `x.size(0)`, `x.dim()`
            if kind is cst.Name:
                v = self.env.get(n.value)
                # (a list of forward's own that is empty where it is read lost track of what a call
                # put in it: `self.keep(skips, x)`)
                if isinstance(v, PathVal) or (isinstance(v, ListVal) and (not v.items or any(
                        isinstance(i, PathVal) or i is UNKNOWN for i in v.items))) or isinstance(v, Alt):
                    return True
                continue
            if kind in (cst.Lambda, cst.FunctionDef):
                return True
            stack.extend(children(n))
        return False

    def _act_param(self, q: str, call: cst.Call) -> float | None:
        fn = C.ACTIVATION_FUNCTIONS[q]
        if fn == "leaky_relu":
            v = self.fm.eval(_arg_value(call, 1, "negative_slope") or cst.Float("0.01"), self._numeric_env())
            return float(v) if _num(v) else None
        return C.ACTIVATION_DEFAULT_PARAM.get(fn)

    def _dropout(self, q: str, call: cst.Call, spec: tuple | None = None, at: int = 2) -> Passthrough | None:
        """A functional dropout's node (spec: C.DROPOUT_FUNCTIONS's, `training` at position
        `at`): None when `training` is False (it does nothing). A `training` not known
        (`self.training`) is taken as train mode, the mode in which gradients are taken; a p
        not known is carried as None."""
        kind, p_default, training_default = spec or C.DROPOUT_FUNCTIONS[q]
        env = self._numeric_env()
        arg = _arg_value(call, at, "train" if q == "torch.dropout" else "training")
        training = self.fm.eval(arg, env) if arg is not None else training_default
        if training is False:
            return None
        arg = _arg_value(call, 1, "p")
        p = drop_p(self.fm.eval(arg, env) if arg is not None else p_default)
        return None if p == 0.0 else Passthrough("", q.rsplit(".", 1)[-1], dropout=kind, p=p)

    def append(self, call: cst.Call, node: Node | None) -> Any:
        paths = self.paths_in(call)
        if not paths:
            return UNKNOWN
        p = paths[0]
        return p if node is None else PathVal(p.root, p.nodes + (node,))

    def with_stmt(self, stmt: cst.With) -> None:
        if not is_off(grad_state(None, with_items(stmt), self.fm.imports.qualify)):
            return super().with_stmt(stmt)
        # what the block computes carries a mark (outputs.NO_GRAD): an output made from it is a teacher's,
        # not a network of its own (`result`), unless the first output is made from it too
        before, returned = dict(self.env), len(self.returns)
        super().with_stmt(stmt)
        # (a tensor the block only names, `feats = x` or `return x` after updating statistics, is
        # the one computed before it: it keeps its gradient)
        old = {id(v) for v in before.values()}
        for k, v in self.env.items():
            if before.get(k) is not v and id(v) not in old:
                self.env[k] = outputs.no_grad_mark(v)
        self.returns[returned:] = [v if id(v) in old else outputs.no_grad_mark(v) for v in self.returns[returned:]]

    def call_method(self, method: cst.FunctionDef, call: cst.Call, bound_self: bool = True, owner: Any = None) -> Any:
        if self.low.depth >= MAX_DEPTH:
            return UNKNOWN
        sub = ForwardInterpreter(self.low, self.inst)
        sub.prefix = self.prefix
        sub.calls = self.calls
        sub.owner = owner
        declared = list(method.params.params)[1 if bound_self else 0:]
        params = [p.name.value for p in declared]
        positional = [a for a in call.args if a.keyword is None]
        keywords = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
        for i, p in enumerate(params):
            if i < len(positional):
                sub.env[p] = self.ev(positional[i].value)
            elif p in keywords:
                sub.env[p] = self.ev(keywords[p])
            elif declared[i].default is not None:
                sub.env[p] = self.fm.eval(declared[i].default, {})
            else:
                sub.env[p] = UNKNOWN
        passed = list(sub.env.values())
        self.low.depth += 1
        try:
            sub.block(method.body)
        finally:
            self.low.depth -= 1
        self.calls = sub.calls
        if not sub.returns:
            return UNKNOWN
        value = sub.returns[0]
        for other in sub.returns[1:]:
            value = _merge(value, other)
        if is_off(grad_state(None, decorators(method), self.fm.imports.qualify)) and \
                not any(value is given for given in passed):
            # (a no_grad method that returns what it was given, after updating statistics, hands
            # back the caller's tensor, gradient and all)
            return outputs.no_grad_mark(value)
        return value

    def attention(self, paths: list, what: str, name: str | None = None, origin: Any = None) -> PathVal:
        """Softmax attention over the operands (see gradlint.source.joins): modelled, no gain."""
        self.inst.attention = True
        name = self.prefix.rstrip(".") if name is None else name
        root, nodes = J.attention([(p.root, p.nodes) for p in paths], what, name, origin)
        return PathVal(root, nodes)

    # -- statements: the walker (engine/interp.py) with forward's values --------------------------
    evaluate = ev

    def bind_name(self, name: str, value: Any) -> None:
        self.env[name] = value

    def unpack(self, value: Any, count: int) -> list | None:
        if isinstance(value, PathVal) and value.parts is not None:
            value = ListVal(list(value.parts))  # `x, h = blk(x)`: the tuple the module returned
        return value.items[:count] if isinstance(value, ListVal) and len(value.items) >= count else None

    def unpacked(self, value: Any) -> Any:
        # `a, b = f(x)`: each part is the tensor through an op the IR does not follow
        return PathVal(value.root, value.nodes + (Opaque("", "tuple"),)) if isinstance(value, PathVal) else UNKNOWN

    def augmented(self, small: cst.AugAssign, cur: Any, val: Any) -> Any:
        if type(small.operator) in (cst.AddAssign, cst.SubtractAssign) and isinstance(cur, PathVal) and isinstance(val, PathVal):
            return _add(cur, val)
        if isinstance(cur, PathVal) and type(small.operator) is cst.PowerAssign:
            return PathVal(cur.root, cur.nodes + (Opaque("", "power of a tensor"),))  # as `x = x ** k`
        if isinstance(cur, PathVal) and type(small.operator) in (cst.MultiplyAssign, cst.DivideAssign) \
                and not isinstance(val, PathVal):
            # `x *= self.gamma`, `x /= 2`: as `x = x * ...`
            op = cst.Multiply() if type(small.operator) is cst.MultiplyAssign else cst.Divide()
            got = self.arith(cur, val, op, small.target, small.value)
            return got if isinstance(got, PathVal) else cur
        if isinstance(cur, PathVal):
            return self.product(cur, val, small.operator) if isinstance(val, PathVal) else cur
        if type(small.operator) in (cst.AddAssign, cst.SubtractAssign) and isinstance(val, PathVal):
            return val  # `out = 0; out += branch(x)`: as `0 + branch(x)` is
        return UNKNOWN

    def on_return(self, small: cst.Return, value: Any) -> None:
        self.returns.append(value if small.value is not None else UNKNOWN)

    def raise_stmt(self, small: cst.Raise) -> None:
        pass

    def assert_stmt(self, small: cst.Assert) -> None:
        pass

    def while_stmt(self, stmt: cst.While) -> None:
        self.loop_body(stmt)

    def loop_items(self, stmt: cst.For | cst.CompFor) -> list | None:
        env = self._numeric_env()
        for k, v in self.env.items():
            env[k] = v
        try:
            return self.fm._iterable(stmt.iter, env)
        except Exhausted:
            return None

    def join_loop(self, stmt: cst.For | cst.While, before: dict) -> None:
        # an iterable we cannot see: whatever the loop changes becomes opaque
        self.done = False
        for k, v in list(self.env.items()):
            if before.get(k) is not v and isinstance(v, PathVal):
                if type(stmt) is cst.While:
                    self.env[k] = PathVal(v.root, v.nodes + (Opaque("", "while loop"),))
                    continue
                self.env[k] = PathVal(v.root, J.common_prefix(v.nodes, before[k].nodes) if isinstance(before.get(k), PathVal) else v.nodes)
                self.env[k] = PathVal(v.root, self.env[k].nodes + (Opaque("", "loop of unknown length"),))

    def condition(self, stmt: cst.If) -> bool | None:
        cond = _truth(self.fm.eval(stmt.test, self._numeric_env()))
        if cond is None:
            cond = self.kind_test(stmt.test)
        if cond is not None:
            return cond
        # An `if` that only sets constants (`if window_size[0] >= pad_H: shift_size[0] = 0`)
        # runs no layer either way: its sides are merged, not made paths of their own (each
        # would run the whole forward again, and its later `if`s double them again)
        return None if _sets_constants(stmt) else self.low.decide(stmt)

    def restore(self, before: dict) -> None:
        self.env = dict(before)

    def settle(self, before: dict) -> tuple:
        done, self.done = self.done, False
        return self.env, done

    def join_branches(self, stmt: cst.CSTNode, before: dict, first: tuple, second: tuple) -> None:
        (after_body, body_done), (after_else, else_done) = first, second
        if body_done and else_done:
            self.done = True
            return
        if body_done:
            self.env = after_else
            return
        if else_done:
            self.env = after_body
            return
        merged = {}
        for k in set(after_body) | set(after_else):
            merged[k] = _merge(after_body.get(k, UNKNOWN), after_else.get(k, UNKNOWN))
        self.env = merged

    def result(self, main_input: str) -> tuple | None:
        if not self.returns:
            return None
        value = self.returns[0]
        for other in self.returns[1:]:
            value = _merge(value, other)
        self.returned = value
        main, self.heads = outputs.choose(value, main_input, self.fm, self.inst.cls)
        return main


# List methods a forward's own list is followed through (ForwardInterpreter.list_method).
_LIST_METHODS = frozenset({"append", "extend", "insert", "pop"})
# What reads a tensor's size or place, not its values.
_SIZE_READS = frozenset({"shape", "size", "dim", "ndim", "ndimension", "numel", "dtype", "device", "is_cuda"})


_FUNCTIONAL_LAYERS = {"torch.nn.functional.linear": "linear", "torch.nn.functional.conv1d": "conv1d",
                      "torch.nn.functional.conv2d": "conv2d", "torch.nn.functional.conv3d": "conv3d"}
_SPLITS = frozenset({"torch.split", "torch.chunk", "torch.unbind", "torch.tensor_split"})
_JOINS = frozenset({"torch.cat", "torch.concat", "torch.concatenate", "torch.stack", "torch.hstack", "torch.vstack",
                    "torch.dstack"})


def _merge(a: Any, b: Any) -> Any:
    # Where control flow meets (an `if`'s sides, the returns of one forward): which side ran is
    # not known, so what they do not share is opaque; a join of the network's own branches (a
    # sum, a concatenation) is gradlint.source.joins's
    if a is b:
        return a
    if a == b:
        # (two module outputs of one path whose tuples differ, or only one of them a tuple: the path)
        return PathVal(a.root, a.nodes) if isinstance(a, PathVal) and a.parts != getattr(b, "parts", None) else a
    if isinstance(a, PathVal) and isinstance(b, PathVal) and a.root == b.root:
        return PathVal(a.root, J.common_prefix(a.nodes, b.nodes) + (Opaque("", "branches differ"),))
    if isinstance(a, PathVal):
        return PathVal(a.root, a.nodes + (Opaque("", "branches differ"),))
    if isinstance(b, PathVal):
        return PathVal(b.root, b.nodes + (Opaque("", "branches differ"),))
    return UNKNOWN


_CONSTANT_NAMES = frozenset(("True", "False", "None"))


def _constant(e: cst.BaseExpression) -> bool:
    kind = type(e)
    if kind is cst.UnaryOperation:
        return _constant(e.expression)
    return kind in (cst.Integer, cst.Float, cst.SimpleString) or (kind is cst.Name and e.value in _CONSTANT_NAMES)


def _sets_constants(stmt: cst.If) -> bool:
    """Whether every statement of the `if` (and of its `elif`s and `else`) assigns a literal
    (`flag = False`, `shift[0] = 0`) or passes: no call, no arithmetic on tensors, no return."""
    part: Any = stmt
    while part is not None:
        body = part.body
        if type(body) is not cst.IndentedBlock:
            return False
        for line in body.body:
            if type(line) is not cst.SimpleStatementLine:
                return False
            for small in line.body:
                if type(small) is cst.Pass:
                    continue
                if type(small) is not cst.Assign or not _constant(small.value) or any(
                        type(t.target) not in (cst.Name, cst.Subscript) for t in small.targets):
                    return False
        part = getattr(part, "orelse", None)
    return True
