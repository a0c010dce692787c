"""Which item a list ends with where a call reads it, from the function's statements alone: the
`*layers` of `nn.Sequential(*layers)` built by `layers.append(nn.Sigmoid())` (the numerics walk
asks what such a module's call returns)."""

from __future__ import annotations

import libcst as cst

from gradlint.source.engine.walk import children, mentions, suite


def list_end(fn: cst.FunctionDef, call: cst.Call, listed: cst.BaseExpression) -> cst.BaseExpression | None:
    """The last item the nearest earlier statement of `fn`'s top level that names the list
    `listed` (a local name) puts at its end (`layers.append(x)`, `layers.extend([..., x])`,
    `layers += [..., x]`, `layers = [..., x]`, `layers = layers + [..., x]`), with `call` itself in
    a plain statement of that top level. None for anything else: a loop or branch that touches the
    list last, another method, an item assignment, a use as an argument (it may change the list),
    a starred last item."""
    if type(listed) is not cst.Name:
        return None
    name = listed.value
    body = suite(fn.body)
    at = next((i for i, st in enumerate(body) if _holds(st, call)), None)
    if at is None or type(body[at]) is not cst.SimpleStatementLine or len(body[at].body) != 1:
        return None
    for st in reversed(body[:at]):
        if not mentions(st, name):
            continue
        if type(st) is not cst.SimpleStatementLine or len(st.body) != 1:
            return None
        item = _appended(st.body[0], name)
        return None if item is None or mentions(item, name) else item
    return None


def _holds(node: cst.CSTNode, target: cst.CSTNode) -> bool:
    stack = [node]
    while stack:
        n = stack.pop()
        if n is target:
            return True
        stack.extend(children(n))
    return False


def _last_item(node: cst.BaseExpression) -> cst.BaseExpression | None:
    if type(node) in (cst.List, cst.Tuple) and node.elements and type(node.elements[-1]) is cst.Element:
        return node.elements[-1].value
    return None


def _appended(small: cst.BaseSmallStatement, name: str) -> cst.BaseExpression | None:
    """The item a statement puts at the end of the list `name`; None for any other statement."""
    if type(small) is cst.Expr and type(small.value) is cst.Call:
        call = small.value
        f = call.func
        if type(f) is cst.Attribute and type(f.value) is cst.Name and f.value.value == name and len(call.args) == 1 \
                and not call.args[0].star and call.args[0].keyword is None:
            if f.attr.value == "append":
                return call.args[0].value
            if f.attr.value == "extend":
                return _last_item(call.args[0].value)
        return None
    if type(small) is cst.AugAssign and type(small.target) is cst.Name and small.target.value == name \
            and type(small.operator) is cst.AddAssign:
        return _last_item(small.value)
    if type(small) is cst.Assign and len(small.targets) == 1 and type(small.targets[0].target) is cst.Name \
            and small.targets[0].target.value == name:
        value = small.value
        if type(value) is cst.BinaryOperation and type(value.operator) is cst.Add and type(value.left) is cst.Name \
                and value.left.value == name:
            return _last_item(value.right)
        return _last_item(value) if type(value) is cst.List else None
    return None
