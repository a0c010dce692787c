"""Plain values a file's numerics walk reads beyond its own expressions: module-level names, the
plain value of a zero-parameter function of the file, and constants of other project modules.

A mixin of `numerics.Extractor` (the file's walk): these are one idea apart from the walk's
statements, the rules that make a name's value known where it is read elsewhere than where it is
bound (source/constants.py holds other files to the same rules, read with CPython's ast).
"""

from __future__ import annotations

import re

import libcst as cst

from gradlint.source.engine.tensors import V, UNKNOWN, replace, same_value
from gradlint.source.engine.walk import after_docstring, children


class ModuleValues:
    """`Extractor`'s reading of module constants and plain function values (needs its `project`,
    `imported`, `function_values`, `module_functions`, `def_counts`, `module_values`,
    `global_names`, `local_classes`, `imports`, `references`, `class_refs`, `muted`, `src`,
    `steady_dicts`, `registries`)."""

    def imported_constant(self, names: frozenset[str], call: bool = False) -> V | None:
        """A plain constant of another project module that `names` (what the file's imports make
        of a name or an attribute) stands for, as a constant value; `call`: what calling it with
        no arguments gives (`def eps(): return 0.0` there); None when it is not one
        (source/constants.py: the same rules as `_module_value` and `function_value`, in that
        module)."""
        last = next(iter(names)).rpartition(".")[2] if names else ""
        if self.project is None or not names or _class_like(last) or last.startswith("__"):
            return None
        key = (names, call)
        if key in self.imported:
            return self.imported[key]
        from gradlint.source.constants import NOT_KNOWN
        from gradlint.source.numerics_eval import _plain

        value = self.project.constant(names, call)
        got = self.imported[key] = None if value is NOT_KNOWN else _plain(value)
        return got

    def function_value(self, name: str) -> V | None:
        """What calling top-level function `name` of this file with no arguments gives, when it is
        a plain value: a function without parameters or decorators whose body is one `return`
        (after a docstring), the only binding of its name in the file (no other `def`, assignment,
        import or `global` of it), its value read as the function reads module names; None
        otherwise (source/constants.py holds other files' functions to the same rule)."""
        if name in self.function_values:
            return self.function_values[name]
        self.function_values[name] = None  # a function that calls itself
        fn = self.module_functions.get(name)
        expr = _returned_plain(fn) if fn is not None else None
        if expr is None or self.def_counts.get(name) != 1 or name in self.module_values or name in self.global_names \
                or name in self.local_classes or name in self.imports.names:
            return None
        from gradlint.source.numerics_walk import FunctionWalk  # the walk of the file this mixin belongs to

        walk = FunctionWalk(self, name, None, quiet=True)
        seen = set(self.references), set(self.class_refs)
        self.muted += 1
        try:
            value = walk.ev(expr).value
        finally:
            self.muted -= 1
            # read ahead of its calls: the names it reads are no references of the file's own
            self.references, self.class_refs = seen
        from gradlint.source.numerics_eval import _plain

        got = self.function_values[name] = None if value is UNKNOWN else _plain(value)
        return got

    def _module_value(self, name: str, v: V) -> V:
        """A module-level name as functions read it: its plain value only when every binding of
        the module gives that one value and no function rebinds it (`global`), as
        engine/env.Env joins a scope's bindings (a function may run before a later binding)."""
        if v.keyed is not None and not self.steady_dict(name):
            return UNKNOWN  # a dict a function may change in place before it is read
        if v.value is UNKNOWN:
            return v
        if name in self.global_names or not same_value(self.module_values.get(name, UNKNOWN), v.value):
            return replace(v, value=UNKNOWN)
        return v

    def steady_dict(self, name: str) -> bool:
        """Whether module-level `name` (a dict display) holds what its display did wherever it is
        read: one top-level binding, no `global` of it, and every other mention in the text a
        read (`NAME[k]` not assigned or deleted, `NAME.get(`, `.keys(`, `.values(`, `.items(`,
        `.copy(`, `in NAME`). Any other (`NAME.update(...)`, `NAME[k] = v` in a function, the dict
        passed to a function or aliased) may change it; a mention in a comment counts too."""
        known = self.steady_dicts.get(name)
        if known is None:
            known = self.steady_dicts[name] = name not in self.global_names and (
                _only_read(self.src.text, name) or self.registry(name) is not None)
        return known

    def registry(self, name: str) -> V | None:
        """Module-level dict `name` as the registering decorator of this file fills it, each
        class it decorates under its literal key (numerics_registry.registered_classes): a dict
        display of those classes; None when `name` is no such registry. Its one write, the
        decorator's, runs as each class is defined: wherever it is read then, it holds them."""
        if name in self.registries:
            return self.registries[name]
        got = None
        if name not in self.global_names:
            from gradlint.source.numerics_registry import registered_classes

            found = registered_classes(self.src.module, self.src.text, name, self.one_function)
            if found:
                got = V(keyed=tuple((key, V(local_class=cls)) for key, cls in found))
        self.registries[name] = got
        return got

    def one_function(self, fname: str) -> bool:
        """Whether a function's name means that one top-level function wherever it is read:
        defined once, never a class, an import or a `global` of the file (a registering
        decorator, a builder of models by name)."""
        return self.def_counts.get(fname) == 1 and fname not in self.global_names and \
            fname not in self.local_classes and fname not in self.imports.names


_BINDING = re.compile(r"\s*(?::[^=\n]*)?=(?!=)")  # `NAME = ...`, `NAME: dict = ...`
_AFTER_ITEM_CHANGE = re.compile(r"\s*(?:=(?!=)|(?:\*\*|//|>>|<<|[-+*/%&^|@])=)")
_ITEM_SET = re.compile(r"\s*=(?!=)")  # `NAME[k] = v` (not `+=`)
# The methods that read a dict (`d.get(k)`): for the module's text test and a function's tree.
_DICT_READ_METHODS = frozenset({"get", "keys", "values", "items", "copy"})
_DICT_READS = re.compile(r"\s*\.\s*(?:" + "|".join(sorted(_DICT_READ_METHODS)) + r")\s*\(")
_ITEM = re.compile(r"\s*\[")
_AFTER_IN = re.compile(r"\bin\s+$")
_AFTER_DEL = re.compile(r"\bdel\s+$")


def _only_read(text: str, name: str) -> bool:
    """`steady_dict`'s reading of the text: exactly one binding of `name` at the start of a line,
    every other mention a read."""
    return _dict_mentions(text, name) == (1, 0)


def _dict_mentions(text: str, name: str) -> tuple[int, int] | None:
    """(bindings of `name` at the start of a line, item writes `NAME[k] = v`) when every other
    mention in the text is a read; None when one is anything else."""
    bindings = writes = 0
    for m in re.finditer(rf"(?<![\w.]){re.escape(name)}(?!\w)", text):
        start, end = m.start(), m.end()
        line_start = text.rfind("\n", 0, start) + 1
        before = text[line_start:start]
        if not before and _BINDING.match(text, end):
            bindings += 1
            continue
        if _DICT_READS.match(text, end) or _AFTER_IN.search(before):
            continue
        item = _ITEM.match(text, end)
        if item is not None and not _AFTER_DEL.search(before):
            close = _closing_bracket(text, item.end() - 1)
            if close is not None and not _AFTER_ITEM_CHANGE.match(text, close + 1):
                continue
            if close is not None and _ITEM_SET.match(text, close + 1):
                writes += 1
                continue
        return None
    return bindings, writes


def _closing_bracket(text: str, open_at: int) -> int | None:
    """The index of the `]` that closes the `[` at `open_at` (on the same logical line or the
    next few hundred characters); None when it is not found there."""
    depth = 0
    for i in range(open_at, min(len(text), open_at + 400)):
        c = text[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i if c == "]" else None
    return None


def _class_like(name: str) -> bool:
    """A name in CapWords (`Identity`, `PreTrainedModel`): a class by convention, never looked for
    as a constant of another file (reading its file would only make it a dependency)."""
    return name[:1].isupper() and any(c.islower() for c in name)


def _returned_plain(fn: cst.FunctionDef) -> cst.BaseExpression | None:
    """The expression of `def f(): return <expr>` (a docstring allowed before it): no parameters,
    no decorators, nothing else; None for any other function."""
    ps = fn.params
    if fn.decorators or fn.asynchronous or ps.params or ps.posonly_params or ps.kwonly_params or \
            type(ps.star_arg) is cst.Param or ps.star_kwarg is not None:
        return None
    body = after_docstring(fn)
    if len(body) != 1 or not isinstance(body[0], cst.SimpleStatementLine | cst.SimpleStatementSuite) or \
            len(body[0].body) != 1 or type(body[0].body[0]) is not cst.Return:
        return None
    value = body[0].body[0].value
    return value if value is not None and _plain_looking(value) else None


_PLAIN_NODES = (cst.Name, cst.Attribute, cst.Integer, cst.Float, cst.SimpleString, cst.UnaryOperation,
                cst.BinaryOperation, cst.Tuple, cst.Element, cst.Call, cst.Arg)


def _plain_looking(node: cst.BaseExpression) -> bool:
    """Only names, attributes, literals, arithmetic, tuples and `float(x)`-style calls (what can
    fold to a plain value, and whose evaluation records no call of the project), small."""
    stack: list[cst.CSTNode] = [node]
    count = 0
    while stack:
        n = stack.pop()
        count += 1
        if count > 64 or not isinstance(n, _PLAIN_NODES):
            return False
        if type(n) is cst.Call:
            if not (type(n.func) is cst.Name and n.func.value in ("float", "int", "bool") and len(n.args) == 1
                    and n.args[0].keyword is None and not n.args[0].star):
                return False
            stack.append(n.args[0].value)
        elif type(n) is cst.Attribute:
            stack.append(n.value)
        elif type(n) is cst.UnaryOperation:
            stack.append(n.expression)
        elif type(n) is cst.BinaryOperation:
            stack.extend((n.left, n.right))
        elif type(n) is cst.Tuple:
            stack.extend(e.value for e in n.elements)
    return True


# Calls that only read what they are given (`len(criteria)`, `print(criteria)`).
_READING_CALLS = frozenset({"len", "print", "sorted", "list", "tuple", "set", "frozenset", "str", "repr", "iter",
                            "isinstance", "type", "id", "hash", "bool", "any", "all", "enumerate", "zip", "format"})
_DICT_CHANGE_METHODS = frozenset({"update", "pop", "popitem", "setdefault", "clear"})
_NESTED = (cst.FunctionDef, cst.Lambda, cst.ClassDef)


def function_dict_mentions(fn: cst.FunctionDef, name: str) -> tuple[int, int] | None:
    """For a dict a function binds to `name`: (its bindings, its changes in place: `NAME[k] = v`,
    `del NAME[k]`, `NAME.update(...)`, which the walk follows) when every other mention of it in
    the function's code is a read (`NAME[k]`, `NAME.get(k)`, `len(NAME)`, `k in NAME`, `for k
    in NAME`, an f-string); None when one is anything else: an alias, an argument of another
    call, a return, or a change inside a nested function or class, which the walk does not run.
    Read in the syntax tree: a comment, a string or a keyword of the same name is no mention."""
    counts = [0, 0]
    # (without recursion: a function may hold an expression thousands of nodes deep)
    stack: list = [(fn, None, None, False)]
    while stack:
        node, parent, grand, nested = stack.pop()
        if type(node) is cst.Name and node.value == name:
            if not _mention(node, parent, grand, nested, counts):
                return None
            continue
        inner = nested or (isinstance(node, _NESTED) and node is not fn)
        stack.extend((child, node, parent, inner) for child in children(node))
    return counts[0], counts[1]


def _mention(node: cst.Name, parent, grand, nested: bool, counts: list[int]) -> bool:
    """One mention of the dict's name: counted (a binding, a change) or passed as a read (True),
    or anything else (False)."""
    kind = type(parent)
    if kind is cst.Arg and parent.keyword is node or kind is cst.Attribute and parent.attr is node:
        return True  # `f(criteria=1)`, `self.criteria`: another name
    if kind is cst.AssignTarget or kind is cst.AnnAssign and parent.target is node:
        counts[0] += 1
        return not nested
    if kind is cst.Subscript and parent.value is node:
        if type(grand) in (cst.AssignTarget, cst.Del) or type(grand) is cst.AugAssign and grand.target is parent:
            counts[1] += 1
            return not nested
        return True  # `criteria["cls"]`, `criteria["cls"].to(device)`
    if kind is cst.Attribute and parent.value is node:
        method = parent.attr.value
        if method in _DICT_READ_METHODS and type(grand) is cst.Call:
            return True
        if method in _DICT_CHANGE_METHODS and type(grand) is cst.Call:
            counts[1] += 1
            return not nested
        return False
    if kind is cst.Arg and parent.value is node:
        return type(grand) is cst.Call and type(grand.func) is cst.Name and grand.func.value in _READING_CALLS
    if kind is cst.ComparisonTarget and type(parent.operator) in (cst.In, cst.NotIn):
        return True
    if kind in (cst.For, cst.CompFor) and parent.iter is node:
        return True
    return kind is cst.FormattedStringExpression
