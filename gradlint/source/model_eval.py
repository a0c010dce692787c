"""Construction-time expressions of a file's classes: names, class constants, attributes,
operators, containers, comprehensions and comparisons, folded to the values of
engine/values.py (`ConstructionEval`, the evaluator `models.FileModel` is built on; its calls
are construct.py's). A value it cannot follow is UNKNOWN or a `Sym` that keeps the text."""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import libcst as cst

from gradlint.source import catalog as C
from gradlint.source import library as L
from gradlint.source.budget import MAX_EXPR_DEPTH, MAX_ITEMS, MAX_TEXT, Exhausted, bounded, checked_range, fold, grown
from gradlint.source.construct import _constant
from gradlint.source.engine.values import (
    Alt, _alt, AnyModule, ClassInfo, ClassRef, Ctor, DictVal, HeldTensor, Instance, ListVal, _module_like, spliced, Sym, TensorRef,
    UNKNOWN,
)
from gradlint.source.engine.values import int_literal as _literal_int
from gradlint.source.engine.values import is_number as _num
from gradlint.source.engine.values import str_literal as _literal_str
from gradlint.source.engine.walk import mentions
from gradlint.source.init_walk import _truth
from gradlint.source.lowering import NO_CHOICE, _maybe_none
from gradlint.source.names import bound_names, dotted


class ConstructionEval:
    """The expression evaluator of models.FileModel (a mixin: the file's `constants`, `classes`,
    `imports`, `meter`, `pick` and `_class_consts` are FileModel's, `_call` and `items_of` its
    calls)."""

    def lookup(self, name: str, env: dict) -> Any:
        if name in env:
            return env[name]
        if name in self.constants:
            value = self.constants[name]
            if type(value) is DictVal and value.table and any(type(v) is ListVal for v in value.items.values()):
                # rows of a table are lists the evaluator may change in place: each reader its own
                return DictVal({k: ListVal(list(v.items), v.is_tuple) if type(v) is ListVal else v
                                for k, v in value.items.items()},
                               table=True)
            return value
        ref = self.class_ref(name)
        return ref if ref is not None else Sym(name)

    def _class_attribute(self, owner: str, attr: str, env: dict) -> Any:
        """`self.expansion` / `block.expansion`: a plain constant bound in the body of the class
        of the instance being built (or of a class of this file held as a value), or of one of its
        bases of this file, as Python finds it on the class (the instance's own attributes were
        looked up first); _NO_ATTR when there is none."""
        if owner == "self":
            inst = env.get("__instance__")
            info = inst.cls if isinstance(inst, Instance) else None
            if info is not None and attr in inst.attrs:
                return _NO_ATTR  # set on the instance (by a helper __init__ called): its own value
        else:
            ref = env.get(owner) if owner in env else self.constants.get(owner) or self.class_ref(owner)
            info = self.classes.get(ref.cls) if isinstance(ref, ClassRef) and ref.kind == "local" and not ref.library else None
        if info is None or info.name not in self.classes or self.classes[info.name] is not info:
            return _NO_ATTR
        found = self._class_constant(info, attr, 0)
        # bound to something else (a property, a call, under an `if`): read as before, by its text
        if found is UNKNOWN or found is _NO_ATTR:
            return _NO_ATTR
        patched = self._class_consts.get(("", attr))
        if patched is None:
            # `Net.depth = 2`, `setattr(...)`: the class may be changed from outside its body
            patched = self._class_consts[("", attr)] = self._may_set_any() or bool(
                _attribute_set(attr).search(self.src.text))
        return _NO_ATTR if patched else found

    def _may_set_any(self) -> bool:
        """Whether the text may set any attribute of a class by code: `setattr(`, `__dict__`,
        `vars(` (once per file)."""
        found = self._class_consts.get(("", ""))
        if found is None:
            found = self._class_consts[("", "")] = bool(_SET_ANY.search(self.src.text))
        return found

    def _class_constant(self, info: ClassInfo, attr: str, depth: int) -> Any:
        key = (info.name, attr)
        if key in self._class_consts:
            return self._class_consts[key]
        self._class_consts[key] = _NO_ATTR  # a base that names the class itself
        found: Any = _NO_ATTR
        body: dict = {}  # the class body's own names, bound before (Python reads them first)
        for stmt in info.node.body.body:
            if type(stmt) is not cst.SimpleStatementLine:
                if type(stmt) in (cst.FunctionDef, cst.ClassDef) and stmt.name.value == attr:
                    found = UNKNOWN  # a method or a nested class of that name
                elif type(stmt) not in (cst.FunctionDef, cst.ClassDef) and mentions(stmt, attr):
                    found = UNKNOWN  # bound (maybe) under an `if`, a loop, a `try`
                continue
            for small in stmt.body:
                target = small.targets[0].target if type(small) is cst.Assign and len(small.targets) == 1 else \
                    small.target if type(small) is cst.AnnAssign and small.value is not None else None
                if type(target) is cst.Name:
                    self.meter.allow()
                    value = self.eval(small.value, body)
                    # (a class held as a class attribute: `block_cls = PostLNBlock`, built by a
                    # base's `self.block_cls(d)`)
                    value = value if _constant(value) and not isinstance(value, Sym) or isinstance(value, ClassRef) \
                        else UNKNOWN
                    body[target.value] = value
                    if target.value == attr:
                        found = value
                    continue
                for t in _bound_targets(small):
                    for n in bound_names(t):
                        body[n] = UNKNOWN
                    if mentions(t, attr):
                        found = UNKNOWN  # `a = expansion = 4`, `expansion += 1`, `del expansion`...
        if found is _NO_ATTR and depth < 8:
            module_bases = [b for b in info.bases if b not in ("object",)]
            if len(module_bases) > 1:
                found = UNKNOWN  # several bases: Python's C3 order is not followed here
            elif module_bases:
                local = self.classes.get(module_bases[0])
                # a base of another file or of torch: not known (it may bind the name)
                found = self._class_constant(local, attr, depth + 1) if local is not None else UNKNOWN
        self._class_consts[key] = found
        return found

    def class_ref(self, text: str | None) -> ClassRef | None:
        """A module class named by `text` (a name or dotted path), as a value."""
        if not text:
            return None
        quals = self.imports.qualify_dotted(text)
        for q in quals:
            s = C.short(q)
            if s is not None and s[:1].isupper():
                return ClassRef("torch", s)
        if not quals:
            local = self.classes.get(text)
            if local is not None and local.is_module:
                return ClassRef("local", text, library=isinstance(self.src, L.LibrarySource))
            return None
        name = L.library_name(quals, self.src.path)
        if name is not None and name[:1].isupper():
            return ClassRef("local", name, library=True)
        last = text.rsplit(".", 1)[-1]
        if last[:1].isupper() and any(c.islower() for c in last) and not isinstance(self.src, L.LibrarySource):
            # an imported class of another file (`norm_layer=LayerNorm`, `mlp_layer=Mlp`): calling
            # it builds a placeholder the project index may resolve (ir.Extern)
            return ClassRef("extern", text)
        return None

    def qual(self, expr: cst.BaseExpression) -> frozenset[str]:
        return self.imports.qualify(expr)

    def torch_class(self, expr: cst.BaseExpression) -> str | None:
        for q in self.qual(expr):
            s = C.short(q)
            if s is not None:
                return s
        return None

    def eval(self, expr: cst.BaseExpression, env: dict) -> Any:
        try:
            return self._eval(expr, env)
        except (ZeroDivisionError, OverflowError, ValueError, TypeError, SyntaxError, Exhausted):
            return UNKNOWN

    def _eval(self, e: cst.BaseExpression, env: dict) -> Any:
        meter = self.meter
        # Meter.enter and Meter.leave, inlined: two calls per expression were 4% of the lowering.
        meter.depth += 1
        meter.steps += 1
        try:
            if meter.depth > MAX_EXPR_DEPTH or meter.steps > meter.limit:
                # too deep, or the file's steps spent: Exhausted, the value is Unknown
                raise Exhausted("depth" if meter.depth > MAX_EXPR_DEPTH else "steps")
            value = self._eval_node(e, env)
        finally:
            meter.depth -= 1
        if self.pick is not None:
            # In forward, a choice of __init__ is the one this run takes: `if self.se is not None`
            # agrees with the module `self.se(x)` calls.
            while isinstance(value, Alt) and not value.splice:
                chosen = self.pick(value)
                if chosen is NO_CHOICE:
                    break
                value = chosen
        return value

    def _eval_node(self, e: cst.BaseExpression, env: dict) -> Any:
        kind = type(e)  # libcst's node classes are ABCs: isinstance costs a cache lookup per miss
        # names first: half of the expressions evaluated
        if kind is cst.Name:
            if e.value in ("True", "False"):
                return e.value == "True"
            if e.value == "None":
                return None
            return self.lookup(e.value, env)
        if kind is cst.Integer:
            try:
                v = bounded(_literal_int(e))
            except ValueError:  # more digits than Python converts (int_max_str_digits)
                v = None
            return UNKNOWN if v is None else v
        if kind is cst.Float:
            v = bounded(float(e.value.replace("_", "")))
            return UNKNOWN if v is None else v
        if kind is cst.SimpleString:
            return _literal_str(e)
        if kind is cst.FormattedString:
            # f"layer{i}": module names built in loops (add_module) need the real text.
            parts = []
            size = 0
            for part in e.parts:
                if type(part) is cst.FormattedStringText:
                    parts.append(part.value)
                elif type(part) is cst.FormattedStringExpression and part.format_spec is None and part.conversion is None:
                    v = self._eval(part.expression, env)
                    if not isinstance(v, (int, str)) or isinstance(v, bool):
                        return UNKNOWN
                    parts.append(str(v))
                else:
                    return UNKNOWN
                size += len(parts[-1])
                if size > MAX_TEXT:
                    return UNKNOWN  # (`s = f"{s}{s}"` in a loop doubles it each time)
            return "".join(parts)
        if kind is cst.Attribute:
            text = dotted(e)
            if text is not None and text in env:
                return env[text]
            if type(e.value) is cst.Name and e.value.value == "math" and e.attr.value in ("pi", "e"):
                return getattr(math, e.attr.value)
            if text == "self.training":
                # Gradients are computed in training mode: forward is read as it runs there.
                return True
            if type(e.value) is cst.Name:
                known = self._class_attribute(e.value.value, e.attr.value, env)
                if known is not _NO_ATTR:
                    return known
            ref = self.class_ref(text)
            if ref is not None:
                return ref
            base = self._eval(e.value, env)
            if isinstance(base, Ctor) and base.kind == "config" and base.instance is not None:
                return base.instance.attrs.get(e.attr.value, Sym(text) if text else UNKNOWN)
            if type(base) is Instance:
                # `module.head` in an init function given the instance under construction
                # (init_walk._InitInterpreter._run_given): its attribute, as `self.head`
                return base.attrs.get(e.attr.value, Sym(text) if text else UNKNOWN)
            if isinstance(base, (Ctor, AnyModule)):
                if isinstance(base, Ctor) and base.instance is not None and e.attr.value in base.instance.attrs:
                    return base.instance.attrs[e.attr.value]
                if isinstance(base, Ctor) and base.instance is None and base.keys is not None \
                        and e.attr.value in base.keys and len(base.keys) == len(base.items or ()):
                    return base.items[base.keys.index(e.attr.value)]  # a ModuleDict's module by its key
                if isinstance(base, Ctor) and base.extern is not None and self.pick is None:
                    base.reached = True  # in __init__ (forward runs with a pick)
                return TensorRef(base, e.attr.value)
            if isinstance(base, TensorRef) and e.attr.value == "data":
                return base
            if type(base) is HeldTensor and e.attr.value == "data":
                return TensorRef(base, "*")  # `self.W.data.normal_(0, 0.02)`: the tensor itself
            return Sym(text) if text else UNKNOWN
        if kind is cst.UnaryOperation:
            v = self._eval(e.expression, env)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if type(e.operator) is cst.Minus:
                    return -v
                if type(e.operator) is cst.Plus:
                    return v
            if type(e.operator) is cst.Not and _truth(v) is not None:
                return not _truth(v)
            return Sym(self.src.code(e)) if isinstance(v, Sym) else UNKNOWN
        if kind is cst.BinaryOperation:
            a, b = self._eval(e.left, env), self._eval(e.right, env)
            op_text = _FOLDED.get(type(e.operator))
            if _num(a) and _num(b) and op_text is not None:
                folded = fold(op_text, a, b)  # None: too large, infinite, or a division by zero
                return UNKNOWN if folded is None else folded
            if isinstance(a, ListVal) and isinstance(b, ListVal) and type(e.operator) is cst.Add:
                if len(a.items) + len(b.items) > MAX_ITEMS:
                    raise Exhausted("items")  # (before it is made: `l = l + l` doubles it)
                return ListVal(a.items + b.items)
            if isinstance(a, ListVal) and isinstance(b, int) and type(e.operator) is cst.Multiply:
                # [nn.Linear(...)] * n repeats one module object n times.
                if len(a.items) * b > MAX_ITEMS:
                    raise Exhausted()
                return ListVal(a.items * b)
            if isinstance(a, (Sym, int, float)) and isinstance(b, (Sym, int, float)):
                return Sym(self.src.code(e))
            if type(a) is HeldTensor:
                return a.times(b, type(e.operator).__name__)
            if type(b) is HeldTensor:
                return b.times(a, type(e.operator).__name__, left=False)
            return UNKNOWN
        if kind in (cst.List, cst.Tuple):
            items: list = []
            for el in e.elements:
                if type(el) is cst.StarredElement:
                    v = self._eval(el.value, env)
                    items.extend(spliced(v))
                else:
                    items.append(self._eval(el.value, env))
            return ListVal(grown(items), kind is cst.Tuple)
        if kind in (cst.ListComp, cst.GeneratorExp):
            return self._comprehension(e, env)
        if kind is cst.BooleanOperation:
            return self._boolop(e, env)
        if kind is cst.Dict:
            return self._dict(e, env)
        if kind is cst.Subscript and len(e.slice) == 1 and type(e.slice[0].slice) is cst.Slice:
            return self._slice(self._eval(e.value, env), e.slice[0].slice, env)
        if kind is cst.Subscript:
            base = self._eval(e.value, env)
            if len(e.slice) == 1 and type(e.slice[0].slice) is cst.Index:
                idx = self._eval(e.slice[0].slice.value, env)
                items = self.items_of(base)
                if items is not None and isinstance(idx, int) and -len(items) <= idx < len(items):
                    return items[idx]
                if isinstance(base, Ctor) and base.keys is not None and isinstance(idx, str) and idx in base.keys:
                    return base.items[base.keys.index(idx)]  # type: ignore[index]
                if isinstance(base, DictVal) and base.table:
                    if isinstance(idx, str):
                        return base.items.get(idx, UNKNOWN)  # a missing key raises: nothing is built
                    values = list(base.items.values())
                    if (idx is UNKNOWN or isinstance(idx, Sym)) and all(v == values[0] for v in values):
                        return values[0]  # whichever key: every one gives the same class

            return UNKNOWN
        if kind is cst.Call:
            return self._call(e, env)
        if kind is cst.IfExp:
            test = _truth(self._eval(e.test, env))
            if test is not None:
                return self._eval(e.body if test else e.orelse, env)
            # `DropPath(p) if p > 0 else nn.Identity()`: when both choices leave the gradient's
            # scale alone (a dropout does at initialisation in eval mode; in train mode it scales
            # by 1 / (1 - p), and a p the condition could not decide is not known either, which
            # ends the chain), the first is built: paths are not doubled for it.
            a, b = self._eval(e.body, env), self._eval(e.orelse, env)
            if _neutral_module(a) and _neutral_module(b):
                return a
            # Two modules (or module classes, or None): each is a forward path of its own.
            return _alt(e, (a, b)) if _module_like(a) and _module_like(b) else UNKNOWN
        if kind is cst.Comparison and len(e.comparisons) == 1:
            left = self._eval(e.left, env)
            right = self._eval(e.comparisons[0].comparator, env)
            op = e.comparisons[0].operator
            if type(op) in (cst.Is, cst.IsNot) and right is None and isinstance(left, Alt) and not left.splice:
                found = {o is None for o in left.options if o is not UNKNOWN and not isinstance(o, Sym) and not _may_be_none(o)}
                if len(found) != 1 or len(left.options) != sum(1 for o in left.options if o is not UNKNOWN and not isinstance(o, Sym)
                                                               and not _may_be_none(o)):
                    return UNKNOWN
                result = found.pop()
                return result if type(op) is cst.Is else not result
            if type(op) in (cst.Is, cst.IsNot) and right is None and left is not UNKNOWN and not isinstance(left, Sym) \
                    and not _may_be_none(left):
                result = left is None
                return result if type(op) is cst.Is else not result
            if _num(left) and _num(right):
                ops = {cst.Equal: lambda x, y: x == y, cst.NotEqual: lambda x, y: x != y,
                       cst.LessThan: lambda x, y: x < y, cst.GreaterThan: lambda x, y: x > y,
                       cst.LessThanEqual: lambda x, y: x <= y, cst.GreaterThanEqual: lambda x, y: x >= y}
                for kind, fn in ops.items():
                    if isinstance(op, kind):
                        return fn(left, right)
            if type(op) in (cst.Equal, cst.NotEqual) and any(
                    isinstance(a, str) and (isinstance(b, (ClassRef, Ctor, ListVal, bool)) and not _maybe_none(b)
                                            or b is None or _num(b))
                    for a, b in ((left, right), (right, left))):
                return type(op) is cst.NotEqual  # a string never equals a class, a module, a number
            if isinstance(left, str) and isinstance(right, str) and type(op) in (cst.Equal, cst.NotEqual):
                return (left == right) == (type(op) is cst.Equal)
            if type(op) in (cst.In, cst.NotIn) and (isinstance(left, str) or _num(left) or left is None):
                items = right.items if isinstance(right, ListVal) else list(right.items) if isinstance(right, DictVal) else None
                if isinstance(right, str) and isinstance(left, str):
                    return (left in right) == (type(op) is cst.In)
                if items is not None and all(isinstance(i, (str, int, float)) or i is None for i in items):
                    return (left in items) == (type(op) is cst.In)
            return UNKNOWN
        return UNKNOWN

    def _boolop(self, e: cst.BooleanOperation, env: dict) -> Any:
        """`a or b`, `a and b` with Python's short-circuit; undecided operands give UNKNOWN
        unless the other side settles the truth value."""
        left = self._eval(e.left, env)
        t = _truth(left)
        is_and = type(e.operator) is cst.And
        if t is not None:
            if t != is_and:  # `False and ...`, `True or ...`
                return left
            return self._eval(e.right, env)
        right = _truth(self._eval(e.right, env))
        if is_and and right is False:
            return False
        if not is_and and right is True:
            return True
        return UNKNOWN

    def _dict(self, e: cst.Dict, env: dict) -> Any:
        items: dict = {}
        for el in e.elements:
            if type(el) is cst.DictElement:
                k = self._eval(el.key, env)
                if not isinstance(k, str):
                    return UNKNOWN
                items[k] = self._eval(el.value, env)
            else:
                v = self._eval(el.value, env)
                if not isinstance(v, DictVal):
                    return UNKNOWN
                items.update(v.items)
        return DictVal(items)

    def _slice(self, base: Any, sl: cst.Slice, env: dict) -> Any:
        # a slice of a list, or of a module container (`self.convs[:-1]`, `self.blocks[:depth]`):
        # its modules in order, which a loop runs or initialises
        items = self.items_of(base) if isinstance(base, ListVal) or (isinstance(base, Ctor) and base.kind == "torch") else None
        if items is None:
            return UNKNOWN
        bounds = []
        for part in (sl.lower, sl.upper, sl.step):
            v = None if part is None else self._eval(part, env)
            if v is not None and not (isinstance(v, int) and not isinstance(v, bool)):
                return UNKNOWN
            bounds.append(v)
        if bounds[2] == 0:
            return UNKNOWN
        return ListVal(items[slice(*bounds)])

    def _comprehension(self, e: cst.ListComp | cst.GeneratorExp, env: dict) -> Any:
        out: list = []

        def run(clause: cst.CompFor | None, scope: dict) -> None:
            if clause is None:
                out.append(self._eval(e.elt, scope))
                if len(out) > MAX_ITEMS:
                    raise Exhausted()
                return
            seq = self._iterable(clause.iter, scope)
            if seq is None:
                out.append(UNKNOWN)
                return
            for item in seq:
                inner = dict(scope)
                if not self._bind(clause.target, item, inner):
                    out.append(UNKNOWN)
                    return
                if any(not self._eval(cond.test, inner) is True for cond in clause.ifs):
                    if any(self._eval(cond.test, inner) is not False for cond in clause.ifs):
                        out.append(UNKNOWN)
                        return
                    continue
                run(clause.inner_for_in, inner)

        run(e.for_in, dict(env))
        return ListVal(out)

    def _iterable(self, expr: cst.BaseExpression, env: dict) -> list | None:
        """The items a `for` iterates over, when they are known."""
        if type(expr) is cst.Call:
            name = dotted(expr.func)
            if name == "range":
                args = [self._eval(a.value, env) for a in expr.args]
                if args and all(isinstance(a, int) and not isinstance(a, bool) for a in args):
                    return list(checked_range(args))  # Exhausted past MAX_UNROLL
                return None
            if name == "enumerate" and expr.args:
                inner = self._iterable(expr.args[0].value, env)
                return None if inner is None else [ListVal([i, v], True) for i, v in enumerate(inner)]
            if name == "zip":
                seqs = [self._iterable(a.value, env) for a in expr.args]
                if any(s is None for s in seqs):
                    return None
                return [ListVal(list(t), True) for t in zip(*seqs)]  # type: ignore[arg-type]
            if name in ("reversed",) and expr.args:
                inner = self._iterable(expr.args[0].value, env)
                return None if inner is None else list(reversed(inner))
        v = self._eval(expr, env)
        items = self.items_of(v)
        return None if items is None else list(items)

    def _bind(self, target: cst.BaseExpression, value: Any, env: dict) -> bool:
        if type(target) is cst.Name:
            env[target.value] = value
            return True
        if type(target) in (cst.Tuple, cst.List):
            elements = [el.value for el in target.elements]
            if isinstance(value, ListVal) and len(value.items) == len(elements):
                return all(self._bind(t, v, env) for t, v in zip(elements, value.items))
            for t in elements:
                self._bind(t, UNKNOWN, env)
            return True
        return False


_NO_ATTR: Any = object()  # no class-level binding of the name




def _bound_targets(small: cst.BaseSmallStatement) -> list:
    """What a small statement binds or deletes (its targets)."""
    if type(small) is cst.Assign:
        return [t.target for t in small.targets]
    if type(small) in (cst.AnnAssign, cst.AugAssign, cst.Del):
        return [small.target]
    if type(small) in (cst.Global, cst.Nonlocal, cst.Import, cst.ImportFrom):
        return [small]
    return []


def _may_be_none(v: Any) -> bool:
    """A value `is None` cannot decide: what a function of another file returns, or a method
    called on something not followed (`VGG11_Weights.verify(weights)`: a dotted call whose last
    name is not a class's, which may return None)."""
    return _maybe_none(v) or type(v) is Ctor and v.kind == "unknown" and v.cls.rsplit(".", 1)[-1][:1].islower()


# What may set a class's attributes from outside its body (_class_attribute): any of them by
# code, or `X.attr = ` / `X.attr += `, not `self.attr`. Each alternative and the attribute's
# pattern start with a literal, their `\b` and `(?<!self)` written as lookbehinds after it
# (`(?<!\wsetattr)`, `(?<!self\.)`), the same matches: CPython's re then skips to the literal's
# occurrences instead of trying every position of the file's text.
_SET_ANY = re.compile(r"setattr(?<!\wsetattr)\s*\(|__dict__(?<!\w__dict__)\b|vars(?<!\wvars)\s*\(")


@functools.lru_cache(maxsize=256)
def _attribute_set(attr: str) -> re.Pattern:
    return re.compile(rf"\.(?<!self\.)\s*{attr}\s*(=(?!=)|[-+*/|&^@%]=)")


def _neutral_module(v: Any) -> bool:
    """A module that passes its input on at the same scale (identity, dropout, stochastic depth)."""
    if isinstance(v, Alt) and not v.splice:
        return all(_neutral_module(o) for o in v.options)
    if not isinstance(v, Ctor):
        return False
    return v.kind == "pass" or (v.kind == "torch" and (v.cls == "Identity" or v.cls.startswith("Dropout")))


_FOLDED = {cst.Add: "+", cst.Subtract: "-", cst.Multiply: "*", cst.Divide: "/", cst.FloorDivide: "//",
           cst.Power: "**", cst.Modulo: "%"}
