"""Calls in a module's `__init__` as the init walk judges them: which only look at a module, which
may initialise the modules they are given unseen (so what they reach is unknown), and timm's
`named_apply(fn, module)`, which the walk follows as an `apply`."""

from __future__ import annotations

from typing import Callable, TYPE_CHECKING

import libcst as cst

from gradlint.source import catalog as C
from gradlint.source.engine.walk import children
from gradlint.source.names import dotted

if TYPE_CHECKING:
    from gradlint.source.models import FileModel


# Calls that only look at what they are given (a module, a tensor).
LOOKS = frozenset({"isinstance", "hasattr", "getattr", "type", "print", "len", "str", "repr", "id"})
# Methods of a module that do not initialise it (`len(list(m.parameters()))`, `m.requires_grad_(False)`).
_MODULE_LOOKS = C.MODULE_MOVES | {
    "parameters", "named_parameters", "buffers", "named_buffers", "children", "named_children", "modules",
    "named_modules", "requires_grad_", "eval", "extra_repr", "state_dict", "zero_grad", "get_submodule",
    "get_parameter", "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
}
# ... or name it, or set what it holds (which the walk reads where it is written)
_NAMES = LOOKS | {"setattr", "delattr", "vars", "callable", "dir", "super"}


def may_initialise(func: cst.BaseExpression, env: dict, fm: FileModel) -> bool:
    """Whether a call statement's function may initialise the modules it is given, unseen: a
    function by its name or dotted path (of another file, or bound here), not a function of the
    file (run where it is given a module), not a look (`isinstance`), not a method of a value
    (`self.blocks.insert(0, layer)`, `layers.append(layer)`), not a base's `Base.__init__(self)`."""
    name = dotted(func)
    if name is None or name in _NAMES or name.endswith(".__init__") or _logs(name.rpartition(".")[2]):
        return False
    root = name.split(".", 1)[0]
    if root == "self" or "." in name and root in env:
        return False
    return not (type(func) is cst.Name and func.value in fm.functions)


# A logger's methods, and logging helpers (torchvision's `_log_api_usage_once(self)`): they print.
_LOGGER_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "log"})


def module_method_may_init(method: str) -> bool:
    """Whether a module's own method may initialise it (`reset_parameters`, `init_weights`,
    timm's `zero_init_last`), rather than only look at it, move it or log."""
    return method not in _MODULE_LOOKS and not _logs(method)


def _logs(last: str) -> bool:
    return last in _LOGGER_METHODS or last.lstrip("_").startswith("log_")


def one_positional(call: cst.Call) -> bool:
    return len(call.args) == 1 and not call.args[0].star and call.args[0].keyword is None


def hands_over(body: cst.CSTNode, name: str, fm: FileModel, methods: dict) -> bool:
    """Whether the loop body passes the module `name` to a call that may initialise it and that the
    walk does not follow: a function given it (not `nn.init.*`, not a look such as `isinstance`,
    not a function of the file given it alone or a method of the class, which the walk runs), or
    a method of its own that may (`m.reset_parameters()`, `m.init_weights()`; not `m.parameters()`)."""
    for node in calls(body):
        func = node.func
        if type(func) is cst.Attribute and type(func.value) is cst.Name and func.value.value == name:
            if func.attr.value not in _MODULE_LOOKS:
                return True
        elif any(type(a.value) is cst.Name and a.value.value == name for a in node.args):
            called = dotted(func) or ""
            followed = (called in fm.functions and one_positional(node)) or (
                called.startswith("self.") and called[5:] in methods)
            if called not in LOOKS and not followed and not any(q.startswith("torch.nn.init.") for q in fm.qual(func)):
                return True
    return False


def calls(node: cst.CSTNode):
    """Every call under `node`, by a plain walk (libcst's visitor rebuilt every node it passed:
    1.4 s of a 94 s profile of timm + torchvision for 191 loops)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if type(n) is cst.Call:
            yield n
        stack.extend(children(n))


def named_apply(call: cst.Call, qual: Callable) -> tuple[cst.BaseExpression, cst.BaseExpression] | None:
    """timm's `named_apply(fn, module)` / `named_apply(partial(fn, k=v), module=self.head)`, as
    (fn, module); None for any other call, or one that sets `name`, `depth_first` or
    `include_root` (not read here)."""
    if not any(q == "named_apply" or q.endswith(".named_apply") for q in qual(call.func)):
        return None
    given: dict = {}
    for i, a in enumerate(call.args):
        key = a.keyword.value if a.keyword is not None else ("fn", "module")[i] if i < 2 and not a.star else None
        if key not in ("fn", "module") or key in given:
            return None
        given[key] = a.value
    fn, module = given.get("fn"), given.get("module")
    if fn is None or module is None:
        return None
    return fn, module


def unwrap_partial(fn: cst.BaseExpression, qual: Callable) -> tuple[cst.BaseExpression, list]:
    """`partial(f, k=v)` as (f, its keyword arguments); any other function as (it, []). A partial
    with positional or starred arguments stays as it is (a call: no function the walk can run)."""
    if type(fn) is cst.Call and any(q in ("functools.partial", "partial") for q in qual(fn.func)):
        if fn.args and fn.args[0].keyword is None and not fn.args[0].star and \
                all(a.keyword is not None and not a.star for a in fn.args[1:]):
            return fn.args[0].value, list(fn.args[1:])
    return fn, []
