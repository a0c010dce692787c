"""What a forward returns under its constructor's defaults: `if self.method == 'multiclass':
out = F.softmax(out, dim=1)` with `method='multiclass'` the default of `__init__`.

The numerics walk decides no condition (a hazard is a fact of every path), so such a forward
returns "a softmax or not" and a `cross_entropy` of its output says nothing. Here the forward is
walked once more, muted (no site), with the tests that read only `self.<attr>` set from an
`__init__` parameter with a literal default decided by that default. When every return then
agrees on a probability, the class's record says so with the parameters it assumed
(NumClass.returns_assuming); facts.numerics.forward_returns believes it only while no call of the
class in the project passes another value for them.
"""

from __future__ import annotations

import ast
from typing import Any

import libcst as cst

from gradlint.source.engine.tensors import UNKNOWN
from gradlint.source.engine.walk import statements_in, suite, walk
from gradlint.source.names import self_attribute

# (attribute) -> (parameter, position after self or -1 for keyword-only, default's code, its value)
Defaults = dict[str, tuple[str, int, str, Any]]
_NO = object()


def _if_tests(forward: cst.FunctionDef) -> list[cst.BaseExpression]:
    """The tests of `forward`'s `if` statements, and of the conditional expressions it returns
    (`return out if self.logits else out.softmax(-1)`), in every block of it but the functions
    defined there (statements only: a walk of every expression of every forward cost more than
    the rest of this module)."""
    tests: list = []
    for stmt in statements_in(forward):
        if type(stmt) is cst.If:
            tests.append(stmt.test)
        elif type(stmt) is cst.Return and stmt.value is not None:
            tests.extend(n.test for n in walk(stmt.value) if type(n) is cst.IfExp)
    return tests


def tested_settings(forward: cst.FunctionDef) -> set[str]:
    """The `self.<attr>` names the tests of `forward`'s `if` statements read."""
    found: set[str] = set()
    for test in _if_tests(forward):
        for node in walk(test):
            attr = self_attribute(node) if type(node) is cst.Attribute else None
            if attr is not None:
                found.add(attr)
    return found


def init_defaults(init: cst.FunctionDef, methods: list[cst.FunctionDef], wanted: set[str]) -> Defaults:
    """Of the attributes `wanted`, those `__init__` sets, at its top level, from a parameter with
    a literal default (`self.method = method`), and that nothing else in the class assigns."""
    if not wanted:
        return {}
    from_param: dict[str, str] = {}  # attribute -> the parameter it is set from
    for stmt in suite(init.body):
        small = stmt.body[0] if type(stmt) is cst.SimpleStatementLine and len(stmt.body) == 1 else None
        if type(small) is cst.Assign and len(small.targets) == 1 and type(small.value) is cst.Name:
            attr = self_attribute(small.targets[0].target)
            if attr in wanted:
                from_param[attr] = small.value.value
    # a parameter __init__ binds again (`output = output or 'logits'`) is no longer its default
    rebound = {t.value for small in statements_in(init, into_defs=True) for t in _targets(small)
               if type(t) is cst.Name}
    ps = init.params
    positional = [p.name.value for p in (*ps.posonly_params, *ps.params)][1:]
    literal: dict[str, tuple[int, str, Any]] = {}
    for p in (*ps.posonly_params, *ps.params, *ps.kwonly_params):
        name = p.name.value
        if p.default is None or name not in from_param.values() or name in rebound:
            continue
        code = cst.Module([]).code_for_node(p.default)
        value = _literal(code)
        if value is not _NO:
            literal[name] = (positional.index(name) if name in positional else -1, code, value)
    found: Defaults = {attr: (param, *literal[param]) for attr, param in from_param.items() if param in literal}
    if not found:
        return {}
    # an attribute assigned anywhere else in the class (a setter, a second assignment) is no setting
    counts: dict[str, int] = {}
    for m in methods:
        for small in statements_in(m, into_defs=True):
            for t in _targets(small):
                attr = self_attribute(t)
                if attr in found:
                    counts[attr] = counts.get(attr, 0) + 1
    return {a: v for a, v in found.items() if counts.get(a, 0) == 1}


def _targets(small: cst.CSTNode) -> list[cst.BaseExpression]:
    """What an assignment statement assigns (`x = ...`, `self.x += ...`, `a, self.x = ...`),
    tuples and lists taken apart; nothing for any other statement."""
    if type(small) is cst.Assign:
        targets = [t.target for t in small.targets]
    elif type(small) in (cst.AugAssign, cst.AnnAssign):
        targets = [small.target]
    else:
        return []
    return [el for t in targets for el in ([e.value for e in t.elements] if type(t) in (cst.Tuple, cst.List) else [t])]


def _literal(code: str) -> Any:
    """A plain literal's value (a string, number, bool or None, or a tuple of them), else _NO."""
    try:
        value = ast.literal_eval(code)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return _NO
    plain = (str, int, float, bool, type(None))
    if isinstance(value, plain) or (isinstance(value, tuple) and all(isinstance(v, plain) for v in value)):
        return value
    return _NO


def decided(test: cst.BaseExpression, defaults: Defaults) -> tuple[bool, frozenset[str]] | None:
    """The truth of an `if` test that reads only `self.<attr>` settings (at their defaults) and
    literals (`self.method == 'multiclass'`, `not self.use_sigmoid`, `self.act is None`), with the
    attributes it read; None for any other test."""
    if type(test) is cst.UnaryOperation and type(test.operator) is cst.Not:
        inner = decided(test.expression, defaults)
        return (not inner[0], inner[1]) if inner is not None else None
    if type(test) is cst.BooleanOperation:
        left, right = decided(test.left, defaults), decided(test.right, defaults)
        if left is None or right is None:
            return None
        value = (left[0] and right[0]) if type(test.operator) is cst.And else (left[0] or right[0])
        return value, left[1] | right[1]
    attr = self_attribute(test)
    if attr is not None:
        return (bool(defaults[attr][3]), frozenset({attr})) if attr in defaults else None
    if type(test) is cst.Comparison and len(test.comparisons) == 1:
        attr = self_attribute(test.left)
        if attr is None or attr not in defaults:
            return None
        other = _literal(cst.Module([]).code_for_node(test.comparisons[0].comparator))
        if other is _NO:
            return None
        value, op = defaults[attr][3], test.comparisons[0].operator
        compare = {cst.Equal: lambda a, b: a == b, cst.NotEqual: lambda a, b: a != b,
                   cst.Is: lambda a, b: a is b if b is None or isinstance(b, bool) else None,
                   cst.IsNot: lambda a, b: a is not b if b is None or isinstance(b, bool) else None,
                   cst.In: lambda a, b: a in b if isinstance(b, (tuple, str)) else None,
                   cst.NotIn: lambda a, b: a not in b if isinstance(b, (tuple, str)) else None}.get(type(op))
        try:
            got = compare(value, other) if compare is not None else None
        except TypeError:  # `1 in "abc"`
            return None
        return (got, frozenset({attr})) if isinstance(got, bool) else None
    return None


def forward_under_defaults(walk_type, x, ctx, forward: cst.FunctionDef,
                           defaults: Defaults) -> tuple[str | None, tuple[tuple[str, int, str, str], ...]]:
    """(the probability kind every return of `forward` is when the tests on the class's settings
    take their defaults, the `__init__` parameters (name, position, default's code) that took
    part, with the attribute each sets), or (None, ()). `walk_type`: FunctionWalk; `x`: the file's
    Extractor."""
    if not any(decided(test, defaults) is not None for test in _if_tests(forward)):
        return None, ()
    walker = walk_type(x, "forward", ctx, quiet=True)
    walker.qual = ".".join([*x.path, "forward"])
    walker.settings = defaults
    walker.settings_read = set()
    ps = forward.params
    for p in (*ps.posonly_params, *ps.params, *ps.kwonly_params, ps.star_arg, ps.star_kwarg):
        if type(p) is cst.Param:
            walker.env[p.name.value] = UNKNOWN
    x.muted += 1
    try:
        walker.walk(suite(forward.body))
    except RecursionError:
        return None, ()
    finally:
        x.muted -= 1
    returns = walker.returns
    if not walker.settings_read or not returns or any(r is None for r in returns):
        return None, ()
    kinds = {r.prob for r in returns}
    kind = kinds.pop() if len(kinds) == 1 else None
    if kind not in ("softmax", "sigmoid", "log_softmax", "logsigmoid"):
        return None, ()
    used = tuple(sorted((defaults[a][0], defaults[a][1], defaults[a][2], a) for a in walker.settings_read))
    return kind, used
