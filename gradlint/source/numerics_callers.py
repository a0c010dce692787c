"""The numerics evaluator's call graph: each call as an edge with what it passes, for the joins
over callers (`Extractor.binding` in this file, `facts.numerics.bind_parameters` across files).

`record_call` keeps the callee as written (`trainer.fit`, `make_trainer().fit`) with the models and
criteria it passes and the class of its receiver when known (`Call.args`); `_record_passed` keeps
what a call of a function or method of this file passes, for this file's own join. A mixin of
`numerics_walk.FunctionWalk`, beside the evaluation of calls (`numerics_calls.TensorCalls`).
"""

from __future__ import annotations

import builtins
import sys

import libcst as cst

from gradlint.facts.numerics import Call
from gradlint.source.engine.tensors import UNKNOWN, V
from gradlint.source.engine.walk import children
from gradlint.source.names import dotted

_STDLIB = frozenset(sys.stdlib_module_names)
_BUILTINS = frozenset(dir(builtins))

def _shape(v: V, unfree: bool = False) -> str:
    """An argument as a caller in another file needs it (Call.args): '' when nothing useful. A
    criterion, a model (its one class), a probability (softmax, sigmoid or 1 - sigmoid, unshifted)
    or the output of a model of one class, for a site on the callee's parameter; a value that
    carries no gradient (unless `unfree`: changed in place by what may)."""
    if v.crit:
        return "crit:" + v.crit
    if len(v.inst) == 1 and not v.crit:
        return "inst:" + next(iter(v.inst))
    if v.nograd:
        # a fresh tensor, a literal or a cut value: no gradient reaches the callee through it (a
        # parameter every call hands such a value carries none either: facts.free)
        return "" if unfree else "free"
    if v.shifted:
        return ""
    if v.prob in ("softmax", "sigmoid", "one_minus_sigmoid"):
        return "prob:" + v.prob
    if len(v.out) == 1 and not v.prob and not next(iter(v.out)).startswith("fn:"):
        # an element of a returned tuple (`recon, mu, logvar = model(x)`) as `out:Class@0`
        cls = next(iter(v.out))
        return "out:" + cls if v.out_elem is None else f"out:{cls}@{v.out_elem}"
    if v.params and v.tensor and not (v.clamped or v.const or v.numpy or v.unit == "strict"):
        # a tensor that carries gradient, for a site on the callee's parameter that needs one:
        # 'grad' may be exactly zero (`relu(lin(x))`: `def unit(v): return v / v.norm()`),
        # 'grad:dense' is a learned projection's output (never all zero; `acos` still may be 1)
        return "grad:dense" if v.dense else "grad"
    return ""


def _only_called(body: cst.CSTNode, name: str) -> bool:
    """Whether every read of `name` in a function's body is the callee of a call (`loss_fn(...)`,
    not `self.loss_fn = loss_fn`, `partial(loss_fn, ...)` or a nested function's parameter).
    `obj.loss_fn` and a keyword `loss_fn=...` read no name `loss_fn`. (A walk of our own: libcst's
    visitor rebuilt every node it passed, 0.9 s over timm + torchvision.)"""
    stack: list = [body]
    while stack:
        n = stack.pop()
        kind = type(n)
        if kind is cst.Name:
            if n.value == name:
                return False
            continue
        if kind is cst.Call and type(n.func) is cst.Name:
            stack.extend(a.value for a in n.args)
            continue
        if kind is cst.Attribute or kind is cst.Arg:
            stack.append(n.value)
            continue
        stack.extend(children(n))
    return True


class CallRecords:
    """The call graph of FunctionWalk (a mixin: the walk's environment and file extractor)."""

    def record_call(self, func: cst.BaseExpression) -> None:
        """An edge of the call graph (callee as written), and `func` is not a read of a value."""
        self.x.callees.add(id(func))
        text = dotted(func)
        if text is None and type(func) is cst.Attribute:
            text = self._chain_text(func)
        if text is not None:
            self.calls.setdefault(Call(text, nograd=self.nograd > 0, args=self._shapes(func)))

    def _shapes(self, func: cst.BaseExpression) -> tuple[tuple[str, str], ...]:
        """The models and criteria a call passes (Call.args), for callers of other files."""
        node = self.x.calling.get(id(func))
        through = self._through(func) if node is not None else None
        if node is None or not (node.args or through):
            return ()
        receiver = None
        if type(func) is cst.Attribute:
            receiver = self._receiver_class(func.value)
            if type(func.value) is not cst.Name and receiver is None:
                return ()
        names = self.x.q(func)
        if names and all(n.startswith(("torch.", "numpy.")) or n == "torch" or n.partition(".")[0] in _STDLIB
                         for n in names):
            return ()
        if not names and not self._may_call_project(func) and through is None:
            return ()
        out = [("&", through)] if through is not None else []
        position = 0
        unknown = []
        starred = False
        for a in node.args:
            if a.star:
                # `f(x, t, *args, **kwargs)`: what comes before the first star is still at its
                # place; positions after it, and any keyword, may be anything
                if not starred:
                    out.append(("*", ""))
                starred = True
                continue
            if starred and a.keyword is None:
                continue
            key = a.keyword.value if a.keyword is not None else str(position)
            position += a.keyword is None
            passed = self._function_passed(a.value)
            if passed:
                self.x.fn_args.add(id(a.value))  # (its read is no free reference: Extractor.fn_args)
            v = self.ev(a.value)
            # (the output of a model that is an open parameter carries its gradient too; a fresh
            # tensor changed in place by what may carry gradient is no longer fresh: numerics_free)
            shape = _shape(v, id(v) in self.x.unfree) or ("grad:dense" if self.param_output(v) is not None else "") \
                or self._passed_on(v)
            if passed and (v is UNKNOWN or not shape):
                shape = "fn:" + passed
            if self.leaving and shape.startswith(("grad", "out:", "prob:")):
                # `geodesic(pred, t).mean().item()`: what the call makes of it leaves autograd (a
                # metric), so no gradient the tensor carries reaches a hazard of the callee's
                shape = ""
            if shape:
                out.append((key, shape))
            elif a.keyword is not None:
                unknown.append(key)
        # what else it passes, so that a parameter left to its default is told apart
        if position:
            out.append(("#", str(position)))
        if unknown:
            out.append(("=", ",".join(unknown)))
        if (self.conditional or self.looping or self.lazy or self.leaving or self.nograd) and any(
                shape.startswith("param:") for _k, shape in out):
            # a parameter passed on, on some paths only (`if self.with_edges: self.edge(e, t)`, a
            # loop over a setting, `flag and self.edge(e, t)`, a lambda), or where its result
            # trains nothing (`.item()`, no_grad): no route that holds on every path
            # (facts.numerics.forward_feeds)
            out.append(("?", "branch"))
        if receiver is not None and not names:
            # `trainer.train_step(...)`, `self.trainer.fit(...)`, `Trainer(cfg).fit(...)`: the class
            # of the instance, for callers of its method
            out.append(("@", receiver))
        return tuple(out)

    def _function_passed(self, arg: cst.BaseExpression) -> str:
        """The name of a function of this file, or one it imports, that a call's argument passes
        as a value (`fit(model, data, deviance)`), when no local binding shadows it; else ''."""
        if type(arg) is not cst.Name:
            return ""
        name = arg.value
        if name not in self.x.ref_names or name in self.env or name in self.globals or name in self.x.local_classes:
            return ""
        if name in self.x.def_names and (self.x.def_counts.get(name) != 1 or name in self.x.imports.names):
            return ""  # two definitions of the name, or a definition and an import: which one is passed?
        return name

    def _through(self, func: cst.BaseExpression) -> str | None:
        """'loss_fn@2' when `func` is this function's own open parameter (position after self; -1
        keyword-only) and the function reads it nowhere but as the callee of a call: each call
        of it is a call of what its callers pass (facts.callgraph, a function of the project)."""
        if type(func) is not cst.Name or self.fn_node is None:
            return None
        ref = self.x.open_param(self.env.get(func.value, UNKNOWN))
        if ref is None or ref[0] != self.qual or ref[1] != func.value:
            return None
        key = (id(self.fn_node), func.value)
        only = self.x.only_called.get(key)
        if only is None:
            only = self.x.only_called[key] = _only_called(self.fn_node.body, func.value)
        return f"{ref[1]}@{ref[2]}" if only else None

    def _passed_on(self, v: V) -> str:
        """`param:input@0` when `v` is this function's own open parameter (or a reshape or
        selection of it) at that position: a caller passes it on, and what that function's
        callers pass is what this call passes (facts.callgraph.passed_everywhere).
        `param:inputs@0#1` when it is an element unpacked from one (`seg, edge = inputs`), which
        a method called with it receives (facts.numerics.forward_feeds)."""
        ref = self.x.kept_param(v)
        if ref is None:
            got = self.x.open_elem(v)
            if got is None or got[0][0] != self.qual or got[0][2] < 0:
                return ""
            return f"param:{got[0][1]}@{got[0][2]}#{got[1]}"
        if ref[0] != self.qual or ref[2] < 0:
            return ""
        return f"param:{ref[1]}@{ref[2]}"

    def _receiver_class(self, recv: cst.BaseExpression) -> str | None:
        """The one class (as written) of a method call's receiver when it is known: a name or an
        attribute of `self` holding an instance of one class (`trainer`, `self.trainer` set in
        `__init__`), or a class called there (`Trainer(cfg)`); None for `self`, `cls` and the rest."""
        if type(recv) is cst.Name:
            if recv.value in ("self", "cls"):
                return None
            held = self.env.get(recv.value) or self.globals.get(recv.value)
        elif type(recv) is cst.Attribute and type(recv.value) is cst.Name and recv.value.value == "self":
            held = self.env.get("self." + recv.attr.value)
        elif type(recv) is cst.Call:
            return self._constructed_class(recv)
        else:
            return None
        return next(iter(held.inst)) if held is not None and len(held.inst) == 1 else None

    def _chain_text(self, func: cst.Attribute) -> str | None:
        """The callee as written of a method reached from what a call returns: `super().m`,
        `Trainer(cfg).fit`, `make_trainer().fit`, `Runner().trainer.fit` (the call's class, when
        known, is its `@`: Call.args); None when the call is no object of the project's."""
        attrs = []
        base: cst.BaseExpression = func
        while type(base) is cst.Attribute:
            attrs.append(base.attr.value)
            base = base.value
        if type(base) is not cst.Call:
            return None
        if type(base.func) is cst.Name and base.func.value == "super" and not base.args:
            return "super()." + attrs[0] if len(attrs) == 1 else None
        made = self._made_by(base)
        return ".".join([made + "()", *reversed(attrs)]) if made is not None else None

    def _made_by(self, call: cst.Call) -> str | None:
        """The callee of `call` as written when what it returns may be an object of the project: a
        function or class of the file or an imported one (`Trainer`, `engine.make_trainer`), not a
        builtin, torch's, numpy's or the standard library's, nor a value held by a name (`model(x)`,
        `x.view(...)`: a tensor, mostly); else None."""
        func = call.func
        written = dotted(func)
        if written is None:
            return None
        head = written.partition(".")[0]
        if head in self.env or head in self.globals or head in ("self", "cls") or (
                type(func) is cst.Name and head in _BUILTINS):
            return None
        names = self.x.q(func)
        if names and all(n.startswith(("torch.", "numpy.", "np.")) or n in ("torch", "numpy")
                         or n.partition(".")[0] in _STDLIB for n in names):
            return None
        return written

    def _constructed_class(self, call: cst.Call) -> str | None:
        """The class `call` constructs, as written, when it is one the evaluator takes for a class
        of the project (`Trainer(...)`: of this file, or imported and capitalised, not torch's,
        numpy's or the standard library's), else None."""
        func = call.func
        if type(func) is cst.Name:
            name = func.value
            if name in self.env or name in self.globals:
                return None
            if name in self.x.local_classes:
                return None if name in self.x.autograd_classes else name
        elif type(func) is not cst.Attribute:
            return None
        names = self.x.q(func)
        written = dotted(func)
        if not names or written is None or any(n.startswith(("torch.", "numpy.", "np.")) or n in ("torch", "numpy")
                                                or n.partition(".")[0] in _STDLIB for n in names):
            return None
        shorts = {n.rsplit(".", 1)[-1] for n in names}
        return written if len(shorts) == 1 and next(iter(shorts))[:1].isupper() else None

    def _record_passed(self, node: cst.Call) -> None:
        """At a call of a function or method of this file, what it passes (Extractor.binding)."""
        if self.settings is not None:
            return  # a walk under assumed defaults (numerics_defaults): its values are no caller's
        func = node.func
        x = self.x
        if type(func) is cst.Name:
            name = func.value
            if name in self.env or name in self.globals:
                qual = self._forward_of(self.env.get(name) or self.globals.get(name))
                if qual is None:
                    return
            elif name in x.local_classes:
                qual = name + ".__init__"
            elif name in x.def_names:
                qual = name
            else:
                return
        elif (type(func) is cst.Attribute and type(func.value) is cst.Name and func.value.value == "self"
              and self.cls is not None and func.attr.value not in self.cls.methods
              and (qual := self._forward_of(self.env.get("self." + func.attr.value))) is not None):
            pass  # `self.criterion(a, b)` with `self.criterion = ContrastiveLoss()` in __init__
        elif type(func) is cst.Attribute and type(func.value) is cst.Name and func.attr.value in x.def_names:
            if func.value.value == "self" and self.cls is not None:
                owner = self.cls.name
            else:
                inst = self.ev(func.value).inst
                if len(inst) != 1:
                    return
                owner = next(iter(inst))
            qual = owner + "." + func.attr.value
        elif type(func) is cst.Attribute and func.attr.value in x.def_names and type(func.value) is not cst.Name:
            owner = self._receiver_class(func.value)  # `self.trainer.fit(...)`, `Trainer(cfg).fit(...)`
            if owner is None or owner not in x.local_classes:
                return
            qual = owner + "." + func.attr.value
        else:
            return
        pos: list[V] = []
        kw: dict[str, V] = {}
        star = False
        for a in node.args:
            if a.star:
                star = True
            elif a.keyword is not None:
                kw[a.keyword.value] = self.ev(a.value)
            elif not star:
                pos.append(self.ev(a.value))
        if x.fresh is not None:  # a unit walked again (Extractor.fresh)
            x.fresh.setdefault(qual, []).append((pos, kw, star))
        else:
            x.passed.setdefault(qual, {}).setdefault(x.unit, []).append((pos, kw, star))

    def _forward_of(self, held: V | None) -> str | None:
        """`Class.forward` when `held` is an instance of one class of this file that defines
        `forward`: calling the instance runs it with the call's arguments (`crit(e1, e2, y)` with
        `crit = ContrastiveLoss()`), so those calls are its callers."""
        if held is None or len(held.inst) != 1:
            return None
        cls = next(iter(held.inst))
        return cls + ".forward" if cls in self.x.local_classes and (
            cls + ".forward" in self.x.signatures or cls in self.x.forward_classes) else None

    def _may_call_project(self, func: cst.Name | cst.Attribute) -> bool:
        """Whether a callee no import names may be a function, class or method of the project
        whose callers a join reads (facts.numerics.bind_parameters): not a builtin, a local value
        (`fn(x)`), an attribute holding a value (`self.fc(x)`), or a method of a value that is no
        instance of one class (a receiver of unknown class leaves the join unknown anyway)."""
        if type(func) is cst.Name:
            name = func.value
            if name in self.x.def_names or name in self.x.local_classes:
                return True
            return not (name in self.env or name in self.globals or name in _BUILTINS)
        if type(func.value) is cst.Name and func.value.value in ("self", "cls"):
            return dotted(func) not in self.env
        return self._receiver_class(func.value) is not None

    def param_output(self, v: V) -> tuple[str, str, int] | None:
        """The open parameter whose call made `v` (`model(x)` with `model` a parameter), if any."""
        called = self.param_outputs.get(id(v))
        return called[1] if called is not None and called[0] is v else None
