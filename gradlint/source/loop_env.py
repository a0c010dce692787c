"""The training-loop recorder's environment: what a file binds, built before the walk.

`_PrePass` reads a file's statements once (never its expressions) for the names of its functions,
methods and classes, what its calls pass (a parameter decided by every call of the file), and
every binding of every scope into the engine's environment (`engine/env.py`: numbers with their
provenance, instances held by their text, command-line option defaults). The recorder
(`loops.py`) runs after it, so a function sees every binding of its module wherever it stands.
`_fact` turns the environment's answer for an expression into the neutral `facts.training.Value`.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import libcst as cst

from gradlint.facts.training import Value, in_bases
from gradlint.source.engine.calls import arg as _arg
from gradlint.source.engine.env import CONFIG, LITERAL, Env, Expr, Known, Ref, Returns, same
from gradlint.source.engine.fold import constant as _constant
from gradlint.source.engine.values import UNKNOWN, Ctor, DictVal, ListVal, Sym, is_number, items_of, str_literal
from gradlint.source.catalog import MODULE_MOVES
from gradlint.source.loop_calls import OPTIMIZER_CLASSES
from gradlint.source.engine.walk import evaluated_children as _children
from gradlint.source.engine.walk import suite as _suite
from gradlint.source.engine.walk import text as _text
from gradlint.source.names import dotted, wraps_module

GRAD_SCALERS = frozenset({
    "torch.cuda.amp.GradScaler", "torch.amp.GradScaler", "torch.cpu.amp.GradScaler", "torch.GradScaler",
    "torch.cuda.amp.grad_scaler.GradScaler", "torch.amp.grad_scaler.GradScaler",
})
# Methods that change a container in place: what a display built is then not all it holds.
_MUTATORS = frozenset({"append", "extend", "insert", "update", "setdefault", "add", "__setitem__", "pop", "popitem",
                       "remove", "discard", "clear", "reverse", "sort"})
# (the same module object for the loop's facts, whatever its parameters hold afterwards)
_MOVE_METHODS = MODULE_MOVES | {"eval", "requires_grad_", "to_empty", "share_memory"}


def _target_texts(target: cst.BaseExpression) -> list[str]:
    if type(target) in (cst.Tuple, cst.List):
        out: list[str] = []
        for el in target.elements:
            out.extend(_target_texts(el.value))
        return out
    if type(target) is cst.StarredElement:
        return _target_texts(target.value)
    d = dotted(target) if type(target) in (cst.Name, cst.Attribute) else None
    return [d] if d else []


# ---------------------------------------------------------------------------------------------
# Pre-pass: which names are functions of this file; what the file binds (the environment)

_STATEMENTISH = frozenset({
    "SimpleStatementLine", "SimpleStatementSuite", "IndentedBlock", "Assign", "AnnAssign", "AugAssign", "Expr", "Return",
    "If", "Else", "For", "While", "With", "Try", "TryStar", "ExceptHandler", "ExceptStarHandler", "Finally",
    "Match", "MatchCase", "FunctionDef", "ClassDef", "Del",
})


# instance_class without a scope: the file-wide binding of a text
_ANY_SCOPE = object()


class _PrePass:
    """Declarations before the walk: the file's functions, methods and classes, what its calls
    pass, and every binding of every scope into the engine's environment (`env`: names, by the
    FunctionDef that binds them or None for the module, and command-line option defaults)."""

    def __init__(self) -> None:
        self.functions: set[str] = set()
        self.methods: set[str] = set()
        self.env = Env()
        # class -> (bases as written, methods); `x = Cls(...)` / `self.x = Cls(...)`: env.hold
        self.classes: dict[str, tuple[tuple[str, ...], set[str]]] = {}
        # what the calls of a statement pass, by callee: `f` for `f(...)`, `.m` for `self.m(...)`
        # (positional texts, keyword texts, a `*`/`**` seen, the scope of the call)
        self.calls: dict[str, list[tuple[tuple[str, ...], dict[str, str], bool, object]]] = {}
        # what attributes (`self.opt`, as written, file-wide) are bound to: instances, containers,
        # other names (names are bound in `env`'s scopes); texts of containers changed in place
        self.objects = Env()
        self.mutated: set[str] = set()
        self._class_kinds: dict[str, str] = {}
        # module-level functions by name (every def of the name), and each function's `return`
        # values (by its FunctionDef; None for a bare `return`), for `Returns`
        self._top: dict[str, list[cst.FunctionDef]] = {}
        self._returns: dict[cst.FunctionDef, list[cst.BaseExpression | None]] = {}
        self._resolving: set[str] = set()
        self._order = itertools.count()  # the constructor calls' `Ctor.order`

    def run(self, module: cst.Module) -> None:
        self._walk(module, None, False)

    def _walk(self, node: cst.CSTNode, scope: cst.CSTNode | None, in_class: bool) -> None:
        # statements only: constants, argparse options and defs are all statements; expressions
        # are never entered (most of a file's nodes, and none of what this pass looks for)
        stack = [(c, in_class) for c in reversed(_children(node)) if type(c).__name__ in _STATEMENTISH]
        while stack:
            n, cls = stack.pop()
            if type(n) is cst.FunctionDef:
                (self.methods if cls else self.functions).add(n.name.value)
                if scope is None and not cls:
                    self._top.setdefault(n.name.value, []).append(n)
                p = n.params
                self.env.open_scope(n, scope, {x.name.value for x in (*p.posonly_params, *p.params, *p.kwonly_params)}
                                    | {x.name.value for x in (p.star_arg, p.star_kwarg) if type(x) is cst.Param})
                for d in n.decorators:
                    self._walk(d, scope, False)
                self._walk(n.body, n, False)
                continue
            if type(n) is cst.ClassDef:
                bases = tuple(d for d in (dotted(b.value) for b in n.bases if b.keyword is None) if d)
                methods = {m.name.value for m in _suite(n.body) if type(m) is cst.FunctionDef}
                self.classes.setdefault(n.name.value, (bases, methods))
                self._walk(n.body, scope, True)
                continue
            if type(n) in (cst.IndentedBlock, cst.SimpleStatementLine, cst.SimpleStatementSuite):
                stack.extend((c, cls) for c in reversed(_children(n)) if type(c).__name__ in _STATEMENTISH)
                continue
            # below: statements and expressions of this scope; nested blocks keep the class flag off
            env = self.env
            if type(n) is cst.Assign:
                value = _known(n.value)
                if value is UNKNOWN:
                    value = self._object(n.value, scope)
                self._instance(n.targets[-1].target, value)
                for t in n.targets:
                    single = len(n.targets) == 1
                    for name in _target_texts(t.target):
                        if "." not in name:
                            env.bind(scope, name, value if single and type(t.target) is cst.Name else UNKNOWN)
                        else:
                            self.objects.hold(name, value if single and type(t.target) is cst.Attribute else UNKNOWN)
                    if type(t.target) is cst.Subscript:
                        self._mutate(t.target.value)
            elif type(n) is cst.AnnAssign and type(n.target) in (cst.Name, cst.Attribute):
                value = _known(n.value) if n.value is not None else UNKNOWN
                if value is UNKNOWN and n.value is not None:
                    value = self._object(n.value, scope)
                if type(n.target) is cst.Name:
                    env.bind(scope, n.target.value, value)
                elif n.value is not None:
                    self._bind_attribute(n.target, value)
            elif type(n) is cst.AugAssign:
                if type(n.target) is cst.Name:
                    env.bind(scope, n.target.value, UNKNOWN)
                self._mutate(n.target)
            elif type(n) is cst.For:
                each = self._each(n, scope)
                for name in _target_texts(n.target):
                    if "." not in name:
                        env.bind(scope, name, each.get(name, UNKNOWN))
            elif type(n) is cst.Del:
                for t in (e.value for e in n.target.elements) if type(n.target) is cst.Tuple else (n.target,):
                    if type(t) is cst.Subscript:
                        self._mutate(t.value)  # `del callbacks[1]`
            elif type(n) is cst.Expr and type(n.value) is cst.Call:
                self._add_argument(n.value)
                func = n.value.func
                if type(func) is cst.Attribute and func.attr.value in _MUTATORS:
                    self._mutate(func.value)
            elif type(n) is cst.Return and type(scope) is cst.FunctionDef:
                self._returns.setdefault(scope, []).append(n.value)
            if type(n) in (cst.Expr, cst.Assign, cst.Return) and type(n.value) is cst.Call:
                self._call(n.value, scope)
            stack.extend((c, False) for c in reversed(_children(n)) if type(c).__name__ in _STATEMENTISH)

    def _call(self, call: cst.Call, scope) -> None:
        func = call.func
        if type(func) is cst.Name:
            key = func.value
        elif type(func) is cst.Attribute and type(func.value) is cst.Name and func.value.value == "self":
            key = "." + func.attr.value
        else:
            return
        pos = tuple(_text(a.value) for a in call.args if a.keyword is None and not a.star)
        kw = {a.keyword.value: _text(a.value) for a in call.args if a.keyword is not None}
        self.calls.setdefault(key, []).append((pos, kw, any(a.star for a in call.args), scope))

    def passed(self, fdef: cst.FunctionDef, method: bool, param: str) -> list[tuple[str, object]] | None:
        """What every call of this file passes for `param` of `fdef` (a module-level function,
        or a method called on `self`), with the scope of the call; None when a call passes nothing
        we can read, or none calls."""
        calls = self.calls.get(("." if method else "") + fdef.name.value)
        if not calls:
            return None
        p = fdef.params
        positional = [x.name.value for x in (*p.posonly_params, *p.params)][1 if method else 0:]
        index = positional.index(param) if param in positional else -1
        out = []
        for pos, kw, star, scope in calls:
            if param in kw:
                out.append((kw[param], scope))
            elif 0 <= index < len(pos) and not (star and index >= len(pos)):
                out.append((pos[index], scope))
            else:
                return None
        return out

    def _instance(self, target: cst.BaseExpression, value) -> None:
        """`x = Cls(...)` (also `Cls(...).to(device)`): x holds that instance of Cls, file-wide."""
        name = dotted(target) if type(value) is Ctor and type(target) in (cst.Name, cst.Attribute) else None
        if name:
            self.env.hold(name, value)

    def _each(self, loop: cst.For, scope) -> dict:
        """The variable of `for o in X` (`X.values()`, `for k, o in X.items()`) holds an item of
        what X holds (`Ref` with `item`), as `kind` reads it."""
        target, it, item = loop.target, loop.iter, "each"
        if type(it) is cst.Call and not it.args and type(it.func) is cst.Attribute \
                and it.func.attr.value in ("items", "values"):
            if it.func.attr.value == "items":
                if not (type(target) is cst.Tuple and len(target.elements) == 2):
                    return {}
                target = target.elements[1].value
            it, item = it.func.value, "values"
        text = dotted(it) if type(it) in (cst.Name, cst.Attribute) else None
        if type(target) is not cst.Name or not text:
            return {}
        return {target.value: Ref(text, scope if "." not in text else None, item)}

    def _bind_attribute(self, target: cst.Attribute, value) -> None:
        name = dotted(target)
        if name:
            self.objects.hold(name, value)

    def _mutate(self, target: cst.BaseExpression) -> None:
        name = dotted(target) if type(target) in (cst.Name, cst.Attribute) else None
        if name:
            self.mutated.add(name)

    def _object(self, node: cst.BaseExpression, scope, depth: int = 0):
        """The engine value of an expression as a training step reads objects: an instance of
        the class a constructor call names (`Cls(...)`, `Cls(...).to(device)`), a container
        display with the values of its items, another name (`Ref`, resolved when asked);
        arithmetic (`Expr`, folded when a number is asked for); what a function of this file
        called by its name returns (`Returns`, resolved when asked); UNKNOWN for anything else
        (a call of a method or of another file's function, a starred item)."""
        while (type(node) is cst.Call and type(node.func) is cst.Attribute
               and node.func.attr.value in _MOVE_METHODS and type(node.func.value) is cst.Call):
            node = node.func.value
        if type(node) is cst.Call:
            cls = dotted(node.func)
            if wraps_module(node) and depth < 8:
                # `nn.DataParallel(LM())`, `torch.compile(model)`: calling it runs the module's forward
                return self._object(node.args[0].value, scope, depth + 1)
            if cls and cls.rsplit(".", 1)[-1][:1].isupper():
                return Ctor("unknown", cls, [], {}, node, next(self._order))
            return Returns(node.func.value) if type(node.func) is cst.Name else UNKNOWN
        if type(node) in (cst.Name, cst.Attribute):
            text = dotted(node)
            if not text or text in ("None", "True", "False"):
                return UNKNOWN
            return Ref(text, scope if "." not in text else None)
        if type(node) in (cst.BinaryOperation, cst.UnaryOperation):
            return Expr(node, scope)  # arithmetic: a number `env.number` folds when asked
        if depth > 4:
            return UNKNOWN
        if type(node) in (cst.List, cst.Tuple):
            if any(type(e) is not cst.Element for e in node.elements):
                return UNKNOWN  # `[*opts, extra]`
            return ListVal([self._item(e.value, scope, depth) for e in node.elements], type(node) is cst.Tuple)
        if type(node) is cst.Dict:
            if any(type(e) is not cst.DictElement for e in node.elements):
                return UNKNOWN  # `{**base}`
            return DictVal({_key(e.key): self._item(e.value, scope, depth) for e in node.elements})
        return UNKNOWN

    def _item(self, node: cst.BaseExpression, scope, depth: int):
        value = _known(node)
        return self._object(node, scope, depth + 1) if value is UNKNOWN else value

    # -- what a value is to a training step ---------------------------------------------------
    def value_of(self, text: str, scope, items: bool = False):
        """What `text` holds where `scope` reads it, other names followed (bounded): a name from
        the scopes of `env`, an attribute from what the file binds it to (`objects`). With
        `items`, a container the file changes in place is UNKNOWN (its display is not all it
        holds); without, it is still a container."""
        changed = False
        for _ in range(8):
            value = self.env.lookup(scope, text) if "." not in text else self.objects.held(text)
            changed = changed or text in self.mutated
            if type(value) is Returns:
                value = self.returned(value)
            if type(value) is not Ref or value.item:
                container = type(value) in (ListVal, DictVal)
                return UNKNOWN if items and changed and container else value
            text, scope = value.text, value.scope
        return UNKNOWN

    def kind(self, value, qualify) -> str:
        """What a value is to a training step, judged from the value only: 'optimizer', 'scaler',
        'model' (a module: torch.nn's, or a class of this file that derives from one), 'other'
        (a number, a container, a learning-rate scheduler: known to be none of them), or '' when
        nothing is known (an instance of a class of another file may be any of them). `qualify`
        gives the qualified names of a class as written (the file's imports)."""
        for _ in range(8):
            if type(value) is Returns:
                value = self.returned(value)
            if type(value) is not Ref:
                break
            if value.item:
                return self._item_kind(value, qualify)
            value = self.value_of(value.text, value.scope)
        if is_number(value) or type(value) in (ListVal, DictVal):
            return "other"
        if type(value) is not Ctor:
            return ""
        return self.class_kind(value.cls, qualify)

    def returned(self, call: Returns):
        """What a call of the module-level function `call.name` gives: the value every `return`
        of it gives, when they agree (a local name followed in the function's scope); UNKNOWN
        when the name is not exactly one function of this file (defined twice, rebound at module
        level, imported), for a generator, a function with no `return` of a value, returns that
        differ, or a call of itself (bounded)."""
        name = call.name
        defs = self._top.get(name, ())
        if len(defs) != 1 or self.env.binds(None, name) or name in self._resolving or len(self._resolving) > 8:
            return UNKNOWN
        fdef = defs[0]
        returns = self._returns.get(fdef)
        if not returns or any(r is None for r in returns) or fdef.asynchronous is not None or _yields(fdef):
            return UNKNOWN
        self._resolving.add(name)
        try:
            found = None
            for node in returns:
                value = _known(node)
                if value is UNKNOWN:
                    value = self._object(node, fdef)
                    if type(value) is Ref and not value.item:
                        value = self.value_of(value.text, value.scope)
                    elif type(value) is Returns:
                        value = self.returned(value)
                if value is UNKNOWN or type(value) in (Ref, Expr) or found is not None and not same(found, value):
                    return UNKNOWN
                found = value
            return found
        finally:
            self._resolving.discard(name)

    def _item_kind(self, each: Ref, qualify) -> str:
        """`kind` of the variable of a loop over a container: the kind all its items share (a
        dict iterated for its keys: strings, 'other'); '' when the container or an item is not
        known (the loops of loops are not followed: `kind` of an item that is itself an item)."""
        container = self.value_of(each.text, each.scope, items=True)
        if type(container) not in (ListVal, DictVal) or not container.items:
            return ""
        if type(container) is DictVal and each.item == "each":
            return "other"
        kinds = {"" if type(v) is Ref and v.item else self.kind(v, qualify) for v in items_of(container)}
        return kinds.pop() if len(kinds) == 1 else ""

    def class_kind(self, cls: str, qualify, depth: int = 0) -> str:
        """`kind` of an instance of `cls` (as written), memoised per class."""
        found = self._class_kinds.get(cls)
        if found is not None:
            return found
        self._class_kinds[cls] = ""  # a cycle of bases knows nothing
        try:
            q = qualify(cst.parse_expression(cls))
        except (cst.ParserSyntaxError, RecursionError):
            q = frozenset()
        last = cls.rsplit(".", 1)[-1]
        kind = ""
        if not q.isdisjoint(GRAD_SCALERS) or last == "GradScaler":
            kind = "scaler"
        elif any(x.startswith(("torch.optim.lr_scheduler", "torch.optim.swa_utils")) for x in q):
            kind = "other"
        elif any(x.startswith("torch.optim.") for x in q) or last in OPTIMIZER_CLASSES or last.endswith("Optimizer"):
            kind = "optimizer"
        elif any(x.startswith("torch.nn.") for x in q):
            kind = "model"  # torch.nn's modules (and its Parameter): no optimizer, no scaler
        elif cls in self.classes and depth < 16:
            # a class of this file: what its bases are (a subclass of nn.Module, of an optimizer)
            bases = [self.class_kind(b, qualify, depth + 1) for b in self.classes[cls][0]]
            kind = next((b for b in bases if b in ("optimizer", "scaler")), "model" if "model" in bases else "")
        self._class_kinds[cls] = kind
        return kind

    def method_of(self, cls: str, method: str) -> bool:
        """Whether class `cls` of this file (as written) defines `method`, itself or through a
        base class of this file (bounded, cycle-safe)."""
        bases = {name: b for name, (b, _) in self.classes.items()}
        return in_bases(cls, bases, lambda c: True if method in self.classes.get(c, ((), ()))[1] else None) is True

    def instance_class(self, text: str, scope: Any = _ANY_SCOPE) -> str:
        """The one class `text` is assigned an instance of in this file, as written; '' else
        (other assignments to it do not count: a constructor call names what it holds). With
        `scope` (a function's node, None for the module), a plain name is first looked up where
        that function reads it: three functions' `agent = Agent()`, `agent = LoggingAgent()`... each
        hold their own."""
        if scope is not _ANY_SCOPE and "." not in text:
            local = self.env.lookup(scope, text)
            if type(local) is Ctor:
                return local.cls
        found = self.env.held(text)
        return found.cls if type(found) is Ctor else ""

    def _add_argument(self, node: cst.Call) -> None:
        if not (type(node.func) is cst.Attribute and node.func.attr.value == "add_argument"):
            return
        options = [a.value.evaluated_value for a in node.args if a.keyword is None
                   and type(a.value) is cst.SimpleString and isinstance(a.value.evaluated_value, str)]
        dest_node = _arg(node, -1, "dest")
        dest = None
        if type(dest_node) is cst.SimpleString:
            dest = dest_node.evaluated_value
        else:
            longs = [o for o in options if o.startswith("--")]
            pick = longs[0] if longs else (options[0] if options else None)
            if pick:
                dest = pick.lstrip("-").replace("-", "_")
        if not dest:
            return
        self.env.option(dest, _known(_arg(node, -1, "default")))


def _yields(fdef: cst.FunctionDef) -> bool:
    """Whether a `yield` stands in the function's own body (not in a nested function, lambda or
    class): its calls return a generator, not what its `return` gives."""
    stack: list[cst.CSTNode] = [fdef.body]
    while stack:
        node = stack.pop()
        if isinstance(node, (cst.Yield,)):
            return True
        if type(node) in (cst.FunctionDef, cst.Lambda, cst.ClassDef):
            continue
        stack.extend(_children(node))
    return False


def _key(node: cst.BaseExpression):
    """A key of a dict display as the environment holds it: a string or a number, else the key's
    text (`Sym`: one text is one key, as Python evaluates it twice to the same value)."""
    if type(node) is cst.SimpleString:
        return str_literal(node)
    value = _constant(node)
    return Sym(_text(node)) if value is None else value


def _known(node: cst.BaseExpression | None):
    """What the pre-pass binds a name to: the number a literal expression stands for, else UNKNOWN
    (the loop facts compare numbers only)."""
    value = _constant(node) if node is not None else None
    return UNKNOWN if value is None else value


def _fact(node: cst.BaseExpression, known: Known, tests: tuple[str, ...]) -> Value:
    """facts.training.Value of an expression from the engine's value of it. guarded: a test of
    an enclosing `if` mentions it (`if clip > 0:`), or one of the names it is computed from
    (`2 * CLIP` under `if CLIP:`), or its option's name for `args.clip`; no test makes a
    literal 0 safe."""
    text = _text(node)
    if known.source == LITERAL:
        return Value(text=text, number=known.number, source=LITERAL)
    # the names a number was folded from guard it too; a value with no number is read by its text
    parts = _parts(node) if known.number is not None else (node,)
    guarded = any(_mentions(part, t) for part in parts for t in tests)
    if known.source == CONFIG and not guarded:
        # a field of a config under a test of another field of it (`if cfg.use_clip:`): the
        # config decides whether the clip runs at all
        # (of a config holding it too: `if cfg.use_clip:` for `cfg.optim.grad_clip`)
        owners = {o for p in parts if type(p) is cst.Attribute for o in _prefixes(_text(p.value))}
        guarded = any(re.search(r"(?<![\w.])" + re.escape(o) + r"\.", t) for o in owners for t in tests)
    return Value(text=text, number=known.number, source=known.source, origin=known.origin, guarded=guarded,
                 shared=known.shared)


def _prefixes(text: str) -> list[str]:
    """`cfg.optim` and `cfg` of `cfg.optim`; `self.cfg` but not `self` of `self.cfg` (a test of
    `self.training` says nothing of its config)."""
    parts = text.split(".")
    return [".".join(parts[:i]) for i in range(2 if parts[0] == "self" and len(parts) > 1 else 1, len(parts) + 1)]


def _parts(node: cst.BaseExpression) -> list[cst.BaseExpression]:
    """The expression and, for arithmetic, the names and attributes it is computed from."""
    out = [node]
    if type(node) in (cst.BinaryOperation, cst.UnaryOperation, cst.Call):
        stack = [node]
        while stack:
            n = stack.pop()
            if type(n) in (cst.Name, cst.Attribute):
                out.append(n)
            elif type(n) is cst.BinaryOperation:
                stack.extend((n.left, n.right))
            elif type(n) is cst.UnaryOperation:
                stack.append(n.expression)
            elif type(n) is cst.Call:
                stack.extend(a.value for a in n.args)
    return out


def _mentions(node: cst.BaseExpression, test: str) -> bool:
    text = _text(node)
    if re.search(r"(?<![\w.])" + re.escape(text) + r"(?!\w)", test):
        return True
    return type(node) is cst.Attribute and bool(re.search(r"\b" + re.escape(node.attr.value) + r"\b", test))
