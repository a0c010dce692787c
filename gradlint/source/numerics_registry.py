"""Module-level dicts a registering decorator of the file fills: which class each literal key holds.

The shape model zoos use to build a model by name:

    MODELS = {}
    def register(name):
        def deco(cls):
            MODELS[name] = cls
            return cls
        return deco

    @register("mlp")
    class MLP(nn.Module): ...

    model = MODELS["mlp"]()

Read only where nothing else can change what a key holds: the dict bound once at the top of the
module to an empty display, its one write the decorator's, every other mention of it a read (as
`ModuleValues.steady_dict` reads a dict display); the decorator a top-level function of the file
used only as the one decorator of top-level classes, each with a distinct literal key. Anything
else (a second write, `MODELS.update(...)`, a key that is no literal, a key registered twice, the
decorator applied to a function or called directly) leaves the dict unknown. Pure functions of
the parsed module and its text.
"""

from __future__ import annotations

from collections.abc import Callable

import libcst as cst

from gradlint.source.engine.walk import after_docstring, suite, walk
from gradlint.source.numerics_values import _dict_mentions


def registered_classes(module: cst.Module, text: str, name: str,
                       bindable: Callable[[str], bool]) -> tuple[tuple[str, str], ...] | None:
    """(key, class name) for each class of the file that the registering decorator writing dict
    `name` registers, in file order; None when `name` is not such a registry. `bindable(f)`:
    whether the function name `f` means that one function of the file wherever it is read."""
    if _dict_mentions(text, name) != (1, 1) or not _bound_empty(module, name):
        return None
    registering = [(fn, shape) for fn in module.body if type(fn) is cst.FunctionDef
                   and (shape := _registering(fn)) is not None and shape[0] == name]
    if len(registering) != 1:
        return None
    fn, (_, param, or_default) = registering[0]
    fname = fn.name.value
    if not bindable(fname):
        return None
    found: list[tuple[str, str]] = []
    decorators: list[cst.Call] = []
    for cls in module.body:
        if type(cls) is not cst.ClassDef:
            continue
        calls = [d.decorator for d in cls.decorators if type(d.decorator) is cst.Call
                 and type(d.decorator.func) is cst.Name and d.decorator.func.value == fname]
        if not calls:
            continue
        decorators.extend(calls)
        # (another decorator below it would hand the registry what it makes of the class)
        key = _literal_key(calls[0], param) if len(cls.decorators) == 1 else None
        if key is None or (or_default and not key):
            return None
        found.append((key, cls.name.value))
    keys = [k for k, _ in found]
    if len(set(keys)) != len(keys) or not _only_decorating(module, fn, decorators):
        # one key twice, or a use of the decorator that registers no top-level class here
        return None
    return tuple(found)


def _bound_empty(module: cst.Module, name: str) -> bool:
    """Whether a top-level statement binds `name` to an empty dict (`{}`, `dict()`, annotated or
    not); `_dict_mentions` has counted that it is the only binding."""
    for stmt in module.body:
        if type(stmt) is not cst.SimpleStatementLine or len(stmt.body) != 1:
            continue
        small = stmt.body[0]
        if type(small) is cst.Assign and len(small.targets) == 1:
            target, value = small.targets[0].target, small.value
        elif type(small) is cst.AnnAssign and small.value is not None:
            target, value = small.target, small.value
        else:
            continue
        if type(target) is cst.Name and target.value == name:
            return empty_dict(value)
    return False


def empty_dict(node: cst.BaseExpression | None) -> bool:
    """`{}` or `dict()`."""
    if type(node) is cst.Dict:
        return not node.elements
    return type(node) is cst.Call and type(node.func) is cst.Name and node.func.value == "dict" and not node.args


def _one_param(fn: cst.FunctionDef) -> str | None:
    """The name of a plain function's one positional parameter (a default allowed); None for any
    other signature, a decorated or an async function."""
    ps = fn.params
    if fn.decorators or fn.asynchronous or len(ps.params) != 1 or ps.posonly_params or ps.kwonly_params or \
            type(ps.star_arg) is cst.Param or ps.star_kwarg is not None:
        return None
    return ps.params[0].name.value


def _registering(fn: cst.FunctionDef) -> tuple[str, str, bool] | None:
    """(the dict written, the key parameter, whether the key is `name or <default>`) of
    `def register(name): def deco(cls): DICT[name] = cls; return cls; return deco`, guards that
    only raise allowed before the write (`if name in DICT: raise ...`, `assert ...`); None for
    any other function."""
    param = _one_param(fn)
    body = after_docstring(fn)
    if param is None or len(body) != 2 or type(body[0]) is not cst.FunctionDef:
        return None
    inner = body[0]
    cls = _one_param(inner)
    if cls is None or not _returns_name(body[1], inner.name.value):
        return None
    steps = after_docstring(inner)
    if len(steps) < 2 or not _returns_name(steps[-1], cls):
        return None
    written = None
    for stmt in steps[:-1]:
        if _raise_guard(stmt):
            continue
        if type(stmt) is not cst.SimpleStatementLine or len(stmt.body) != 1:
            return None
        small = stmt.body[0]
        if written is not None or type(small) is not cst.Assign or len(small.targets) != 1:
            return None
        written = _item_write(small, param, cls)
        if written is None:
            return None
    return written


def _item_write(small: cst.Assign, param: str, cls: str) -> tuple[str, str, bool] | None:
    """(dict, param, or-default) of `DICT[param] = cls` or `DICT[param or cls.__name__] = cls`."""
    target = small.targets[0].target
    if type(target) is not cst.Subscript or type(target.value) is not cst.Name or len(target.slice) != 1 or \
            type(target.slice[0].slice) is not cst.Index or type(small.value) is not cst.Name or small.value.value != cls:
        return None
    key = target.slice[0].slice.value
    if type(key) is cst.Name and key.value == param:
        return target.value.value, param, False
    if type(key) is cst.BooleanOperation and type(key.operator) is cst.Or and type(key.left) is cst.Name \
            and key.left.value == param:
        return target.value.value, param, True  # (a key that is a non-empty literal is that key)
    return None


def _returns_name(stmt: cst.BaseStatement, name: str) -> bool:
    return type(stmt) is cst.SimpleStatementLine and len(stmt.body) == 1 and type(stmt.body[0]) is cst.Return \
        and type(stmt.body[0].value) is cst.Name and stmt.body[0].value.value == name


def _literal_key(call: cst.Call, param: str) -> str | None:
    """The key of `@register("mlp")` / `@register(name="mlp")`: one string literal; else None."""
    if len(call.args) != 1 or call.args[0].star:
        return None
    arg = call.args[0]
    if arg.keyword is not None and arg.keyword.value != param:
        return None
    if type(arg.value) is not cst.SimpleString:
        return None
    value = arg.value.evaluated_value
    return value if type(value) is str else None


def _only_decorating(module: cst.Module, fn: cst.FunctionDef, decorators: list[cst.Call]) -> bool:
    """Whether the code names `fn` only where it is defined and as the function of `decorators`:
    never called, passed or aliased elsewhere (a docstring or comment that shows its use is no
    use). Walks the whole module: asked only of a file that has a registry's shape."""
    fname = fn.name.value
    allowed = {id(fn.name), *(id(call.func) for call in decorators)}
    attrs: set[int] = set()
    for n in walk(module, stop=()):
        kind = type(n)
        if kind is cst.Attribute:
            attrs.add(id(n.attr))  # (`x.register` is another object's attribute)
        elif kind is cst.Name and n.value == fname and id(n) not in allowed and id(n) not in attrs:
            return False
    return True


def builder_shape(fn: cst.FunctionDef) -> tuple[str, str, int] | None:
    """(the dict, the key parameter, its position) of a function that builds a model by name,
    `def build_model(name, **kwargs): return MODELS[name](**kwargs)`, guards that only raise
    allowed before the return (`if name not in MODELS: raise KeyError(name)`); None for any other
    function, a decorated or an async one, or one whose key parameter is keyword-only."""
    ps = fn.params
    if fn.decorators or fn.asynchronous:
        return None
    steps = after_docstring(fn)
    if not steps or not all(_raise_guard(s) for s in steps[:-1]):
        return None
    last = steps[-1]
    if type(last) is not cst.SimpleStatementLine or len(last.body) != 1 or type(last.body[0]) is not cst.Return:
        return None
    made = last.body[0].value
    if type(made) is not cst.Call or type(made.func) is not cst.Subscript:
        return None
    holder = made.func
    if type(holder.value) is not cst.Name or len(holder.slice) != 1 or type(holder.slice[0].slice) is not cst.Index \
            or type(holder.slice[0].slice.value) is not cst.Name:
        return None
    key = holder.slice[0].slice.value.value
    positional = [p.name.value for p in (*ps.posonly_params, *ps.params)]
    named = {*positional, *(p.name.value for p in ps.kwonly_params)}
    for p in (ps.star_arg, ps.star_kwarg):
        if type(p) is cst.Param:
            named.add(p.name.value)
    if key not in positional or holder.value.value in named:
        return None
    return holder.value.value, key, positional.index(key)


def _raise_guard(stmt: cst.BaseStatement) -> bool:
    """`if <test>: raise ...` (no else) or `assert ...`: a statement that changes nothing."""
    if type(stmt) is cst.If:
        return stmt.orelse is None and all(
            type(s) is cst.SimpleStatementLine and all(type(x) is cst.Raise for x in s.body) for s in suite(stmt.body))
    return type(stmt) is cst.SimpleStatementLine and len(stmt.body) == 1 and type(stmt.body[0]) is cst.Assert
