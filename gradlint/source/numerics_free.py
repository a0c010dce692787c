"""Values that carry no gradient as long as the project's callers pass none: what a value needs of
parameters to be grad-free (GL3xx's "carries gradient", decided across files).

A value built only from fresh tensors (`torch.zeros`, `rand`, `arange`...), literals and cut values
carries no gradient (`V.nograd`). One built from a function's open parameters as well carries none
when every call of the function in the project passes a grad-free value there: the value's
*conditions* (`Cond`; facts.numerics.grad_free decides them with the callers' shape 'free').
Conditions pass through torch operations (`derive_from`), calls of the file's functions that hold
no parameters (source/pure_callables.py), attributes `__init__` sets to such callables (while the
project's calls of the class leave the parameter holding one at its default), what the class's
own methods return, and the joins of branches. A hazard on such a value carries its conditions
(`Site.data["free_if"]`). A mixin of `numerics.Extractor`.
"""

from __future__ import annotations

import libcst as cst

from gradlint.facts.free import Cond
from gradlint.source.engine.tensors import UNKNOWN, V, knows_nothing, open_value, replace
from gradlint.source.pure_callables import ANY, PureCallables

# literal defaults, which carry no gradient: a call that leaves one passes a grad-free value
_LITERALS = (cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString, cst.ConcatenatedString)


def literal(node: cst.BaseExpression | None) -> bool:
    """A number, string, None, True or False as written (a negated number too)."""
    if node is None:
        return False
    if type(node) is cst.UnaryOperation and type(node.operator) in (cst.Minus, cst.Plus):
        node = node.expression
    return isinstance(node, _LITERALS) or (type(node) is cst.Name and node.value in ("None", "True", "False"))


class GradFree:
    """`Extractor`'s grad-free conditions (needs its `open_params`, `derived_params`,
    `kept_param`, `returns_of`, `walking`, `subclassed`, `class_ctxs`, `module_values`,
    `global_names`, `imports`, `src`, `q`)."""

    def _init_free(self) -> None:
        # id(value) -> (it, its conditions): values made grad-free by what they were computed from
        self.free_of: dict[int, tuple[V, frozenset[Cond]]] = {}
        # values that joined with something that is not grad-free where they were kept as they are
        # (`merge` keeps the first of two equal values, an open parameter against UNKNOWN): their
        # identity no longer says what the name holds on every path
        self.unfree: dict[int, V] = {}
        self.kept_free: dict[int, V] = {}  # grad-free selections and reshapes (free_through's `kept`)
        # (function, parameter) whose default is a literal: a call leaving it passes a grad-free value
        self.free_defaults: set[tuple[str, str]] = set()
        # (C.__init__, parameter) -> the attributes __init__ stores it under (`self.gamma = gamma`),
        # and those of them another method of the class sets again (then no longer the parameter)
        self.init_attrs: dict[tuple[str, str], set[str]] = {}
        self.unsettled: set[tuple[str, str]] = set()
        # the returns of methods from the unit's previous walk (Extractor._walk_unit)
        self.prev_returns: dict[str, list] = {}
        self._pure: PureCallables | None = None
        self._pure_attrs: dict[tuple[str, str], frozenset[Cond] | None] = {}

    # -- what a value needs --------------------------------------------------------------------
    def free_given(self, v) -> frozenset[Cond] | None:
        """What `v` needs to carry no gradient: nothing (a fresh or cut value), conditions on the
        project's callers, or None when it may carry gradient whatever they pass."""
        if v is UNKNOWN or v.params or v.rg or id(v) in self.unfree:
            return None
        if v.nograd:
            return frozenset()
        got = self.free_of.get(id(v))
        if got is not None and got[0] is v:
            return got[1]
        ref = self.derived_params(v)
        if ref is None and (kept := self.kept_param(v)) is not None:
            ref = (kept[0], ((kept[1], kept[2]),))
        if ref is None and (elem := self.open_elem(v)) is not None:
            ref = (elem[0][0], ((elem[0][1], elem[0][2]),))  # an element unpacked from a parameter
        if ref is not None:
            out = set()
            for name, at in ref[1]:
                cond = self._param_cond(ref[0], name, at)
                if cond is None:
                    return None
                out.add(cond)
            return frozenset(out)
        if v.elems:
            parts = [self.free_given(e) for e in v.elems]
            return None if any(p is None for p in parts) else frozenset().union(*parts)
        return None

    def _param_cond(self, function: str, name: str, at: int) -> Cond | None:
        if (function, name) in self.unsettled:
            return None
        kind = "free-or-default" if (function, name) in self.free_defaults else "free"
        return Cond(kind, function, name, at, tuple(sorted(self.init_attrs.get((function, name), ()))))

    def free_through(self, operands: list, result: V, extra: frozenset[Cond] = frozenset(), kept: bool = False) -> V:
        """`result`, computed from `operands` with nothing else that may carry gradient (a torch
        operation, a call of a function that holds no parameters): grad-free when they all are,
        under their conditions and `extra`. `kept`: a selection or reshape of `operands[0]`, the
        others sizes, indices or a tensor whose shape or type it takes (numerics_names.KEEP)."""
        if result is not UNKNOWN and (result.params or result.rg or result.nograd):
            return result  # (what the walk made fresh or cut stays so: no condition rides on a constant)
        if self.kept_free.get(id(result)) is result:
            return result  # (decided where it was made, from the tensor it selects)
        if kept:
            operands = operands[:1]
        conds = set(extra)
        for op in operands:
            got = self.free_given(op)
            if got is None:
                if result is not UNKNOWN and not any(result is o for o in operands):
                    # (a handler may have noted it computed from some of the operands only, the
                    # sizes or a window aside: with all of them, one may carry gradient)
                    self.unfree[id(result)] = result
                return result
            conds |= got
        if not conds:
            return result  # all fresh, yet the result is not: something else made it (requires_grad)
        if not extra and self.free_given(result) is not None:
            made = result
        else:
            made = self.register_free(result, frozenset(conds), operands)
        if kept:
            self.kept_free[id(made)] = made
        return made

    def register_free(self, v: V, conds: frozenset[Cond], operands: list = ()) -> V:
        """`v` (or a copy of its own, when it is one of `operands` or knows nothing) noted grad-free
        under `conds`."""
        if knows_nothing(v):
            v = open_value()
        elif any(v is op for op in operands) or id(v) in self.free_of:
            v = _copy(v)  # a value of its own: the operand keeps what it needs
        self.free_of[id(v)] = (v, conds)
        return v

    def free_join(self, a: V, b: V, merged: V) -> V:
        """What the join of `a` and `b` (two branches, `x if c else y`) is grad-free under: both
        sides' conditions; a side kept as it is (`merge` keeps the first of equal values) no
        longer grad-free where the other side is not."""
        if a is b:
            return merged
        fa, fb = self.free_given(a), self.free_given(b)
        if merged is a or merged is b:
            other = fb if merged is a else fa
            mine = fa if merged is a else fb
            if mine is not None and (other is None or not other <= mine):
                self.unfree[id(merged)] = merged
            return merged
        if fa is None or fb is None or merged.params:
            return merged
        if merged.nograd and (fa or fb):
            # constant on one path only (`if isinstance(t, float): t = torch.full((n,), t)`), what
            # the callers pass on the other: grad-free only as that is, as the join of two
            # values that need conditions is (not the constant `merge` reads on one path)
            merged = replace(merged, const=False, cut=None, cut_span=None)
        elif merged.nograd:
            return merged
        return self.register_free(merged, fa | fb)

    def free_env(self, first: dict, second: dict, merged: dict) -> None:
        """free_join for each name of two joined environments."""
        for key, v in merged.items():
            a, b = first.get(key, UNKNOWN), second.get(key, UNKNOWN)
            if a is not b:
                merged[key] = self.free_join(a, b, v)

    def changed_by(self, old: V, new: V, by: list | None) -> V:
        """`new`, what a name holding `old` holds after an in-place change (`t.add_(w)`, `t[i] =
        w`) by the values `by` (None: not known): grad-free under both's conditions; a fresh
        tensor changed by one that needs conditions is no longer known to be grad-free (a constant
        holds none), nor is one changed by what may carry gradient."""
        was = self.free_given(old)
        needs = [self.free_given(v) for v in by] if by is not None else [None]
        added = frozenset().union(*needs) if None not in needs else None
        if was is None or added is None or (added and new.nograd):
            self.unfree[id(new)] = new
            return new
        if not added and new is old:
            return new
        if new is old:
            self.free_of[id(new)] = (new, was | added)  # (the same tensor under every name holding it)
            return new
        return self.register_free(new, was | added) if was or added else new

    def free_parts(self, val: V, parts: list | None, count: int) -> list | None:
        """The targets of `a, b = val` with `val` grad-free (a call of a function that holds no
        parameters): each part, of which nothing else is known, under the same conditions."""
        if val is UNKNOWN or val.elems is not None:
            return parts
        conds = self.free_given(val)
        if not conds:
            return parts
        return [self.register_free(p, conds) if p is UNKNOWN else p for p in (parts or [UNKNOWN] * count)]

    def note_init_attrs(self, cls: str, env: dict, methods: list, setup: list) -> None:
        """The `__init__` parameters a class stores as attributes (`self.gamma = gamma`): a value
        read through one needs the class's calls to pass a grad-free one, and no file to set the
        attribute on an object; unless another method of the class sets it again."""
        for key, val in env.items():
            if not key.startswith("self.") or key.count(".") != 1:
                continue
            got = self.open_params.get(id(val))
            if got is None or got[0] is not val or got[1] != f"{cls}.__init__":
                continue
            attr = key[5:]
            self.init_attrs.setdefault((got[1], got[2]), set()).add(attr)
            pure = self.pure()
            if any(attr in made or ANY in made for made in (pure.assignments(m) for m in methods if m not in setup)):
                self.unsettled.add((got[1], got[2]))

    # -- calls -----------------------------------------------------------------------------------
    def pure(self) -> PureCallables:
        if self._pure is None:
            def constant(name: str) -> bool:
                return self.module_values.get(name, UNKNOWN) is not UNKNOWN and name not in self.global_names

            self._pure = PureCallables(self.src.module, self.q, constant, frozenset(self.imports.names))
        return self._pure

    def pure_call(self, node: cst.Call, fname: str, vals: list, result: V) -> V:
        """`f(...)` of a top-level function of this file that holds no parameters and calls none
        it is handed: its result is computed from its arguments alone. Of any other function, the
        result of fresh tensors is no longer taken for a fresh one."""
        got = self.pure().function(fname)
        if got is None or got.needs:
            # it may read a model or a parameter (a module-level one, a callable it is handed):
            # what it makes of fresh tensors is not fresh
            return replace(result, const=False) if result.const else result
        if got.closure:
            return result
        return self.free_through(vals, result)

    def self_call(self, walk, node: cst.Call, attr: str, vals: list, result: V) -> V:
        """`self.attr(...)`: a method of the class, grad-free where what it returns is for what
        this call passes (`method_free`); or an attribute `__init__` sets to a callable that
        holds no parameters (`self.log_snr = noise_schedule`)."""
        cls = walk.cls
        if cls is None or cls.name not in self.class_ctxs or self.class_ctxs[cls.name] is not cls \
                or result.params or cls.name in self.subclassed:
            return result
        if attr in cls.methods:
            return self.method_free(walk, node, f"{cls.name}.{attr}", result)
        held = cls.attrs.get(attr)
        if held is not None and (held.module or held.inst or held.params or held.crit):
            return result  # a submodule, a model, a criterion: not a plain function
        key = (cls.name, attr)
        if key not in self._pure_attrs:
            self._pure_attrs[key] = self._attribute_conds(cls.name, attr)
        conds = self._pure_attrs[key]
        if conds is None:
            return result
        return self.free_through(vals, result, conds)

    def _attribute_conds(self, cls: str, attr: str) -> frozenset[Cond] | None:
        node = next((s for s in self.src.module.body if type(s) is cst.ClassDef and s.name.value == cls), None)
        got = self.pure().attribute(node, attr) if node is not None else None
        if got is None:
            return None
        conds = {Cond("default", f"{cls}.__init__", param, at, (attr,)) for param, at in got}
        return frozenset(conds or {Cond("attr", "", "", 0, (attr,))})

    def method_free(self, walk, node: cst.Call, qual: str, result: V) -> V:
        """`self.m(...)` with `m` a method of this class walked before (in this walk, or the unit's
        previous one): what every return of it gives, grad-free under its conditions with those on
        its own parameters put on what this call passes; a tuple every return makes (`return
        x_noised, log_snr`) part by part."""
        if qual in self.walking:
            return result  # a recursion: its returns are not all known yet
        returns = self.returns_of.get(qual) or self.prev_returns.get(qual)
        if not returns or any(not isinstance(parts, list) and parts is not None for parts, _whole in returns):
            return result
        sizes = {len(parts) if isinstance(parts, list) else None for parts, _whole in returns}
        sig = self.signatures.get(qual)
        if sig is None:
            return result
        if sizes == {1} or None in sizes or len(sizes) != 1:
            conds = self._returned_conds(walk, node, qual, sig, [whole for _parts, whole in returns])
            return self._made_free(result, conds)
        size = sizes.pop()
        elems = []
        for i in range(size):
            cut = self.method_cut(qual, i)
            if cut is not None:
                # (a part every return cuts from parameters, `torch.stack(logits, 1).data`: kept as
                # the cut it is, for GL403's reading of the caller; inversecooking's `sample()`)
                elems.append(cut)
                continue
            conds = self._returned_conds(walk, node, qual, sig, [parts[i] for parts, _whole in returns])
            elems.append(self._made_free(UNKNOWN, conds))
        if all(e is UNKNOWN for e in elems):
            return result
        return replace(result, elems=tuple(elems))

    def _made_free(self, result: V, conds: frozenset[Cond] | None) -> V:
        """`result`, what a method returns: grad-free under `conds`; fresh when they are none (every
        return is made of fresh tensors whatever the call passes: `sample_random_times` returning
        `torch.zeros(n).uniform_(0, 1)`); as it is when None."""
        if conds is None or result.cut is not None or result.param_cuts:
            # (a return cut from parameters, `torch.stack(logits, 1).data`: no gradient either, but
            # the cut is what GL403's reading of the caller needs, so it is kept as the walk made it)
            return result
        if result.params:
            # (what the walk made of the call's arguments, some of which may carry gradient that
            # the method's returns, as `conds` say, do not take)
            result = UNKNOWN
        if not conds:
            return replace(result, const=True, tensor=True) if result is not UNKNOWN else _FRESH
        return self.register_free(result, conds)

    def _returned_conds(self, walk, node: cst.Call, qual: str, sig: tuple, values: list) -> frozenset[Cond] | None:
        """The conditions under which every one of `values` (what the method returns) is grad-free
        at this call: those on the method's own parameters replaced by what the call passes."""
        positional, kwonly, _defaults, _unit = sig
        out: set[Cond] = set()
        for v in values:
            got = self.free_given(v)
            if got is None:
                return None
            for cond in got:
                if cond.function != qual or cond.kind not in ("free", "free-or-default"):
                    out.add(cond)
                    continue
                arg = _passed(node, cond.param, positional)
                if arg is None:
                    if cond.kind == "free-or-default" and not any(a.star for a in node.args):
                        continue  # left at its literal default
                    return None
                passed = self.free_given(walk.ev(arg))
                if passed is None:
                    return None
                out |= passed
        return frozenset(out)


# what a method returns that is made of fresh tensors alone
_FRESH = V(const=True, tensor=True, computed=True)


def _copy(v: V) -> V:
    new = object.__new__(V)
    new.__dict__.update(v.__dict__)
    return new


def _passed(node: cst.Call, param: str, positional: tuple[str, ...]) -> cst.BaseExpression | None:
    """The argument a call of a method hands its parameter `param` (positions after self)."""
    for a in node.args:
        if a.keyword is not None and a.keyword.value == param:
            return a.value
    if param not in positional:
        return None
    at = positional.index(param)
    plain = [a for a in node.args if a.keyword is None]
    if any(a.star for a in plain[:at + 1]) or at >= len(plain):
        return None
    return plain[at].value
