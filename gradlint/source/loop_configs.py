"""Config objects in the training-loop environment: what `cfg.max_grad_norm` reads where `cfg`
holds the one instance of a plain class the file builds (`cfg = TrainConfig()`, a dataclass or a
plain class of this file or another project file, a `SimpleNamespace(...)`), or a config it holds
(`cfg.optim.max_grad_norm`), and which objects
the file may change after building them (then nothing is read). `loops.extract` installs
`config_fields` as the environment's `Env.field`.
"""

from __future__ import annotations

import re
from typing import Any

import libcst as cst

from gradlint.source.configs import MAX_NESTING
from gradlint.source.engine.fold import constant as _constant
from gradlint.source.engine.env import Ref
from gradlint.source.engine.values import Ctor
from gradlint.source.engine.walk import children, main_block, statements_in
from gradlint.source.names import dotted

# The names config classes go by (`TrainConfig`, `ExperimentCfg`, `RunSettings`, `HParams`).
_CONFIG_NAME = re.compile(r"(?i)(config|cfg|conf|settings|args|arguments|hparams|hyperparameters|params|options|"
                          r"opts|namespace)$")
# Objects whose attributes are the keywords they are built with.
_NAMESPACES = frozenset({"types.SimpleNamespace", "argparse.Namespace"})
# Calls that only read an object passed to them: a config handed to one of them is not changed.
_READERS = frozenset({"print", "len", "str", "repr", "format", "isinstance", "getattr", "hasattr", "asdict",
                      "astuple", "type", "id", "info", "debug", "warning", "dumps", "pprint"})
_READ_METHODS = frozenset({"to_dict", "get", "copy", "keys", "items", "values", "__repr__"})


def config_fields(src, pre, configs, own) -> "ConfigFields":
    """Env.field for one file (ConfigFields)."""
    return ConfigFields(src, pre, configs, own)


class ConfigFields:
    """`cfg.field` where `cfg` (a name, or an attribute such as `self.cfg`) holds the one instance
    of a plain class the file builds (`cfg = TrainConfig()`, `TrainConfig(max_grad_norm=0)`): the
    field's value as the class sets it (`own`: this file's classes, configs.FileConfigs;
    `configs`: another project file's); `cfg.optim.grad_clip` where `cfg.optim` is a config that
    one holds (its default, `field(default_factory=OptimCfg)`, or `Cfg(optim=OptimCfg(...))`),
    read as `optim.grad_clip` of it, unless the file may change `cfg.optim` too. Nothing when the object may be changed after it is
    built: the file assigns or deletes one of its attributes, calls a method of it, or passes it
    to a function that is not a constructor (`update_from_args(cfg, args)`, `setattr`, `vars`).
    Called as Env.field; `built` gives the fields of a config a call passes, and `param_field`
    tells an attribute of a parameter the function does not change (`cfg.grad_clip` in
    `def train(model, cfg)`), which what the callers pass decides (facts.training)."""

    def __init__(self, src, pre, configs, own) -> None:
        self.src, self.pre, self.configs, self.own = src, pre, configs, own
        self.changed: dict[str, set] | None = None
        self.passes: dict[str, list] = {}
        self.rebound: dict[str, list] = {}
        self.memo: dict[tuple[int, str], Any] = {}
        self.exported: list[frozenset[str]] = []
        self.depth = 0  # of the config argument `_values` reads (`Cfg(optim=OptimCfg(...))`)

    def _scan(self) -> dict[str, set]:
        if self.changed is None:
            self.changed, self.rebound, self.passes = _changed_objects(self.src.module)
        return self.changed

    def _importable(self) -> frozenset[str]:
        if not self.exported:
            self.exported.append(_module_globals(self.src.module))
        return self.exported[0]

    def _may_change(self, text: str, scope, but: cst.Call | None = None) -> bool:
        """Whether the file may change the object `text` holds where `scope` reads it (an
        attribute, `self.cfg`, is one object file-wide; a name, the one its scope binds); a pass
        of it to the call `but` does not count."""
        binder = self.pre.env.binder
        where = set(self._scan().get(text, ()))
        where.update(s for s, call in self.passes.get(text, ()) if call is not but)
        return bool(where) and ("." in text or binder(scope, text) in {binder(s, text) for s in where})

    def _held_may_change(self, text: str, scope) -> bool:
        """Whether the file may change the config `text` (`cfg.optim`) that another config holds,
        where `scope` reads it: one of `self`, anywhere; one of a name, where its scope binds it
        (`cfg.optim.grad_clip = 1.0` in another function changes another `cfg`)."""
        root = text.split(".", 1)[0]
        if root == "self":
            return self._may_change(text, scope)
        binder = self.pre.env.binder
        where = set(self._scan().get(text, ()))
        where.update(s for s, _call in self.passes.get(text, ()))
        return binder(scope, root) in {binder(s, root) for s in where}

    def __call__(self, node: cst.Attribute, scope) -> tuple[Any, str, str] | None:
        obj = node.value
        text = dotted(obj) if type(obj) in (cst.Name, cst.Attribute) else None
        if not text:
            return None
        name = node.attr.value
        got = self._instance(text, scope)
        while got is None and "." in text and name.count(".") < MAX_NESTING:
            # `cfg.optim.grad_clip`: a field of the config `cfg.optim` that `cfg` holds (its
            # values name it `optim.grad_clip`), when nothing changes that config either
            if self._held_may_change(text, scope):
                return None
            text, _, held = text.rpartition(".")
            name = f"{held}.{name}"
            got = self._instance(text, scope)
        if got is None:
            return None
        values, cls = got
        if name not in values:
            return None
        # a global of the module (`cfg = TrainConfig()` at the top): another module may import it
        # and change it (`train.cfg.max_grad_norm = 1.0`), which no scan of this file sees; not
        # one bound only under `if __name__ == "__main__":`, which no import runs
        shared = text if "." not in text and self.pre.env.binder(scope, text) is None and \
            text in self._importable() else ""
        return values[name], f"{cls}.{name}", shared

    def _instance(self, text: str, scope, but: cst.Call | None = None) -> tuple[dict, str] | None:
        """The fields of the config object `text` holds where `scope` reads it, and its class's
        last name; None when unknown or when the file may change it."""
        ctor = self.pre.value_of(text, scope)
        if type(ctor) is not Ctor or type(ctor.node) is not cst.Call:
            return None
        if self._may_change(text, scope, but):
            return None
        binder = self.pre.env.binder
        # bound twice (`cfg = TrainConfig(); cfg = TrainConfig(max_grad_norm=1.0)`, on a branch,
        # rebuilt from itself): the environment's join keeps one constructor call of the class
        binds = self.rebound.get(text, [])
        if len(binds) > 1 if "." in text else len([s for s in binds if binder(s, text) == binder(scope, text)]) > 1:
            return None
        values = self._values(ctor.node, ctor.cls)
        return None if values is None else (values, ctor.cls.rsplit(".", 1)[-1])

    def _values(self, call: cst.Call, cls: str) -> dict | None:
        """The fields of `cls` built by `call`, as the class sets them (memoised by the call)."""
        from gradlint.source.configs import UNKNOWN_ARG, ConfigArg

        key = (id(call), cls)
        if key not in self.memo:
            if any(a.star for a in call.args):
                self.memo[key] = None
            else:
                def plain(v: cst.BaseExpression) -> Any:
                    c = _constant(v)
                    if c is None and type(v) is cst.Call and self.depth < MAX_NESTING:
                        return self._nested(v)
                    return UNKNOWN_ARG if c is None else c

                args = (tuple(plain(a.value) for a in call.args if a.keyword is None),
                        tuple((a.keyword.value, plain(a.value)) for a in call.args if a.keyword is not None))
                values = None
                qualified = self.src.imports.qualify_dotted(cls)
                if qualified & _NAMESPACES and not args[0]:
                    # `SimpleNamespace(lr=1e-3, max_grad_norm=0.0)`: its fields are its keywords
                    # (a config among them, `optim=SimpleNamespace(...)`, gives its own as `optim.x`)
                    values = {}
                    for k, v in args[1]:
                        if type(v) is ConfigArg:
                            values.update((f"{k}.{sub}", got) for sub, got in v.values)
                        elif v is not UNKNOWN_ARG:
                            values[k] = v
                if values is None and self.own is not None and "." not in cls:
                    values = self.own.values(cls, args)
                if values is None and self.configs is not None and self.pre.classes.get(cls) is None:
                    values = self.configs.values(cls, qualified, args=args, nested=True)
                self.memo[key] = values
        return self.memo[key]

    def _nested(self, call: cst.Call) -> Any:
        """An argument that is a config built in place (`Cfg(optim=OptimCfg(grad_clip=0.0))`):
        its values as a ConfigArg; UNKNOWN_ARG for any other call (`make_optim()`)."""
        from gradlint.source.configs import UNKNOWN_ARG, ConfigArg

        cls = dotted(call.func)
        if not cls or not cls.rsplit(".", 1)[-1][:1].isupper() or not self._config_like(cls):
            return UNKNOWN_ARG
        self.depth += 1
        try:
            values = self._values(call, cls)
        finally:
            self.depth -= 1
        return UNKNOWN_ARG if values is None else ConfigArg(cls.rsplit(".", 1)[-1], tuple(sorted(values.items())))

    def built(self, node: cst.BaseExpression, scope, call: cst.Call) -> tuple[tuple[tuple[str, float], ...], str] | None:
        """The numeric fields of the config object an argument of `call` is (`train(cfg)` with
        `cfg = Cfg()`, or `train(Cfg())`), and its class's last name; None when it is none, or
        the file may change it (a pass to `call` itself aside)."""
        if type(node) is cst.Call:
            cls = dotted(node.func)
            if not cls or not cls.rsplit(".", 1)[-1][:1].isupper() or not self._config_like(cls):
                return None
            values = self._values(node, cls)
            cls = cls.rsplit(".", 1)[-1]
        elif type(node) in (cst.Name, cst.Attribute) and (text := dotted(node)):
            ctor = self.pre.value_of(text, scope)
            if type(ctor) is not Ctor or not self._config_like(ctor.cls):
                return None
            got = self._instance(text, scope, but=call)
            if got is None:
                return None
            values, cls = got
        else:
            return None
        if not values:
            return None
        numbers = tuple(sorted((k, float(v)) for k, v in values.items()
                               if type(v) in (int, float) and not isinstance(v, bool)))
        return (numbers, cls) if numbers else None

    def _config_like(self, cls: str) -> bool:
        """A class whose instances `built` reads when a call is given one: one of this file, or
        an imported one named as configs are (`TrainConfig`, `RunSettings`, `HParams`, `Args`).
        Reading another file's class parses it and makes this file's facts depend on it: not
        for every `Trainer(...)` or `DataLoader(...)` a call is given."""
        return ("." not in cls and self.pre.classes.get(cls) is not None) or bool(_CONFIG_NAME.search(cls))

    def written_dict(self, node: cst.BaseExpression, scope, call: cst.Call) -> dict[str, cst.BaseExpression] | None:
        """The items of the dict `node` is, where the file writes all of them: a literal
        (`{"gradient_clipping": 1.0}`, `dict(gradient_clipping=1.0)`) in place, or a name the
        module binds once to one and never changes (an item assigned, `update`, a pass to a call
        other than `call`); None else (read from a file, built by a function, `**base` in it)."""
        if type(node) is cst.Name:
            name = node.value
            self._scan()
            if len(self.rebound.get(name, ())) != 1 or self._may_change(name, scope, call):
                return None
            bound = [n.value for n in statements_in(self.src.module, into_defs=True) if type(n) is cst.Assign
                     and len(n.targets) == 1 and type(n.targets[0].target) is cst.Name
                     and n.targets[0].target.value == name]
            if len(bound) != 1:
                return None
            node = bound[0]
        if type(node) is cst.Dict:
            out = {}
            for el in node.elements:
                if type(el) is not cst.DictElement or type(el.key) is not cst.SimpleString:
                    return None
                out[el.key.evaluated_value] = el.value
            return out
        if type(node) is cst.Call and dotted(node.func) == "dict" and self.pre.classes.get("dict") is None:
            if any(a.star or a.keyword is None for a in node.args):
                return None
            return {a.keyword.value: a.value for a in node.args}
        return None

    def param_field(self, node: cst.BaseExpression, scope) -> str:
        """`cfg.grad_clip` where `cfg` is a parameter of the function `scope` that it does not
        change; `self.cfg.grad_clip` where the file never changes `self.cfg` (which `__init__`
        may set from its parameter: facts.training); either read through a local name the
        function binds once to it (`max_norm = cfg.grad_clip`); '' else."""
        if scope is None:
            return ""
        if type(node) is cst.Name:
            # `max_norm = cfg.grad_clip`, bound once in this function (a number: what it is passed
            # to cannot change it)
            held = self.pre.env.lookup(scope, node.value)
            binds = [s for s in self._rebound(node.value) if s is scope]
            if type(held) is not Ref or held.item or len(binds) != 1:
                return ""
            try:
                node = cst.parse_expression(held.text)
            except cst.ParserSyntaxError:
                return ""
        if type(node) is not cst.Attribute:
            return ""
        # `cfg.optim.grad_clip`: a field of a config the parameter holds (the callers' configs
        # name it `optim.grad_clip`), when nothing changes that config either
        path = node.attr.value
        while type(node.value) is cst.Attribute and not (
                type(node.value.value) is cst.Name and node.value.value.value == "self"):
            if self._held_may_change(dotted(node.value) or "", scope):
                return ""
            path = f"{node.value.attr.value}.{path}"
            node = node.value
            if path.count(".") > MAX_NESTING:
                return ""
        if type(node.value) is cst.Attribute and type(node.value.value) is cst.Name and \
                node.value.value.value == "self":
            held_by = f"self.{node.value.attr.value}"
            if self._may_change(held_by, scope):
                return ""
            # what __init__ stores there (`self.cfg = cfg`) must not be changed there first
            # (`if not cfg.grad_clip: cfg.grad_clip = 1.0`)
            stored = self.pre.objects.held(held_by)
            if type(stored) is Ref and type(stored.scope) is cst.FunctionDef and "." not in stored.text and \
                    _changed_in(stored.scope, stored.text):
                return ""
            return f"{held_by}.{path}"
        if type(node.value) is not cst.Name:
            return ""
        name = node.value.value
        if not self.pre.env.is_param(scope, name) or self._may_change(name, scope):
            return ""
        return f"{name}.{path}"

    def _rebound(self, text: str) -> list:
        self._scan()
        return self.rebound.get(text, [])


def deepspeed_clipping(items: dict[str, cst.BaseExpression] | None) -> bool | None:
    """Whether a DeepSpeed config (the items of a dict the file writes, `written_dict`) makes the
    engine's step clip gradients: `gradient_clipping` set to a number other than 0 (its default,
    0, clips nothing); None when the config is not known."""
    if items is None:
        return None
    value = items.get("gradient_clipping")
    if value is None:
        return False
    number = _constant(value)
    return None if type(number) not in (int, float) else number != 0


def _changed_in(fn: cst.FunctionDef, name: str) -> bool:
    """Whether `fn` may change the object its name `name` holds (_changed_objects): an attribute
    or item of it assigned or deleted, a method of it called, it passed to a function; storing
    it (`self.cfg = cfg`) is no change here."""
    changed, _binds, passes = _changed_objects(fn, aliases=False)
    return name in changed or any(p == name or p.startswith(name + ".") for p in passes)


def _module_globals(module: cst.Module) -> frozenset[str]:
    """The names the module's top-level code binds where an import runs it: at the top level and
    under its `if`/`try`/`with`/`for` blocks, but not under `if __name__ == "__main__":`."""
    names: set[str] = set()
    stack: list = list(module.body)
    while stack:
        node = stack.pop()
        if main_block(node):
            if node.orelse is not None:
                stack.append(node.orelse)
            continue
        if type(node) in (cst.If, cst.Else, cst.Try, cst.Finally, cst.ExceptHandler, cst.With, cst.For, cst.While):
            stack.extend(children(node))
            continue
        if type(node) is cst.IndentedBlock:
            stack.extend(node.body)
            continue
        if type(node) is cst.SimpleStatementLine:
            for small in node.body:
                if type(small) in (cst.Assign, cst.AnnAssign, cst.AugAssign):
                    names.update(el.value for el in _bound(small) if type(el) is cst.Name)
    return frozenset(names)


def _bound(stmt: cst.Assign | cst.AugAssign | cst.AnnAssign | cst.Del) -> list[cst.BaseExpression]:
    """What an assignment (plain, augmented, annotated) binds or a `del` deletes, tuples and lists
    unpacked one level."""
    out: list[cst.BaseExpression] = []
    for t in ([t.target for t in stmt.targets] if type(stmt) is cst.Assign else [stmt.target]):
        for el in (t.elements if type(t) in (cst.Tuple, cst.List) else [t]):
            out.append(el.value if type(el) in (cst.Element, cst.StarredElement) else el)
    return out


def _changed_objects(module: cst.CSTNode, aliases: bool = True,
                     ) -> tuple[dict[str, set], dict[str, list], dict[str, list]]:
    """The objects (as written: `cfg`, `self.cfg`) the file may change after building them, with
    the scopes (FunctionDefs; None: the module) that may: an attribute of theirs assigned,
    augmented or deleted, a method of theirs or of an attribute of theirs called (but for
    `_READ_METHODS`: `cfg.__dict__.update(...)` changes `cfg`), bound to another name (an alias),
    or passed to a call of a lower-case
    name (a function, not a constructor) that is not one of `_READERS`; and the scope of every
    assignment of each name or attribute (one bound twice is not one object); the passes to calls
    apart, as (scope, call), so that the call a config is passed to can be told from the others.
    Without `aliases`, a binding to another name is no change."""
    out: dict[str, set] = {}
    binds: dict[str, list] = {}
    passes: dict[str, list] = {}

    def owners(text: str):
        parts = text.split(".")
        return (".".join(parts[:i]) for i in range(1, len(parts) + 1))

    stack: list[tuple[cst.CSTNode, cst.FunctionDef | None]] = [(module, None)]
    while stack:
        n, scope = stack.pop()
        if type(n) is cst.FunctionDef:
            # (its decorators and defaults are evaluated in the scope around it: close enough)
            stack.extend((c, n) for c in children(n))
            continue
        if type(n) in (cst.Assign, cst.AugAssign, cst.AnnAssign, cst.Del):
            value = getattr(n, "value", None)
            aliased = dotted(value) if type(value) in (cst.Name, cst.Attribute) else None
            if aliases and aliased and type(n) in (cst.Assign, cst.AnnAssign):
                out.setdefault(aliased, set()).add(scope)  # `c = cfg`: changed through `c`, maybe
            for el in _bound(n):
                whole = dotted(el) if type(el) in (cst.Name, cst.Attribute) else None
                if whole and type(n) is not cst.Del:
                    binds.setdefault(whole, []).append(scope)
                if type(el) in (cst.Attribute, cst.Subscript):
                    owner = dotted(el.value) if type(el.value) in (cst.Name, cst.Attribute) else None
                    for o in owners(owner) if owner else ():
                        out.setdefault(o, set()).add(scope)
        elif type(n) is cst.Call:
            func = n.func
            if type(func) is cst.Attribute and func.attr.value not in _READ_METHODS:
                owner = dotted(func.value) if type(func.value) in (cst.Name, cst.Attribute) else None
                for o in owners(owner) if owner else ():
                    out.setdefault(o, set()).add(scope)
            last = func.attr.value if type(func) is cst.Attribute else func.value if type(func) is cst.Name else ""
            if not last[:1].isupper() and last not in _READERS:
                for a in n.args:
                    passed = dotted(a.value) if type(a.value) in (cst.Name, cst.Attribute) else None
                    if passed:
                        passes.setdefault(passed, []).append((scope, n))
        stack.extend((c, scope) for c in children(n))
    return out, binds, passes
