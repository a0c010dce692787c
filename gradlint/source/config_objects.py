"""Plain config objects at construction time: a dataclass or PretrainedConfig-style class of the
file built with its arguments (class-level defaults, its bases' layers, `__init__` or the
generated one, `__post_init__`, `attribute_map`), a config class of another project file read
there (source/configs.py), and a `cfg: XConfig` parameter given no value (`ConfigObjects`, a
part of the models' evaluator, models.FileModel)."""

from __future__ import annotations

from typing import Any

import libcst as cst

from gradlint.source.budget import MAX_DEPTH, Exhausted
from gradlint.source.configs import UNKNOWN_ARG, annotated_class, engine_value
from gradlint.source.construct import _constant
from gradlint.source.engine.values import ClassInfo, Ctor, DictVal, Instance, Sym, UNKNOWN
from gradlint.source.engine.walk import children
from gradlint.source.init_walk import _InitInterpreter
from gradlint.source.names import dotted


class ConfigObjects:
    """Config instances for models.FileModel (a mixin: `classes`, `configs`, `imports`, `depth`,
    `order`, `eval`, `instantiate` and `_methods` are the evaluator's)."""

    def config_default(self, param: cst.Param) -> Any:
        """A parameter annotated with a config class (`cfg: GPTConfig`) and given no value: the
        config as its defaults make it, which is the model as its class describes it. A class of
        this file is evaluated here; one imported from another file of the project is read there
        (`self.configs`, source/configs.py: its plain values only), when the file was read from
        disk."""
        text = annotated_class(param.annotation.annotation) if param.annotation is not None else None
        if not text or self.depth >= MAX_DEPTH:
            return None
        info = self.classes.get(text)
        if info is not None:
            return None if info.is_module else self.config(info, ([], {}, False, False))
        values = self.configs.values(text, self.imports.qualify_dotted(text)) if self.configs is not None else None
        if values is None:
            return None
        return self._config_value(text, values, param)

    def _config_value(self, text: str, values: dict, node: cst.CSTNode) -> Ctor:
        """A config of another file as this file holds it: an instance with its plain values."""
        ctor = Ctor("config", text.rsplit(".", 1)[-1], [], {}, node, next(self.order))
        ctor.instance = Instance(ClassInfo(ctor.cls, node, (), {}), {k: engine_value(v) for k, v in values.items()}, [],
                                 fm=self)
        return ctor

    def config_of_call(self, value: Any) -> Any:
        """`value` read as a config when it is a class of another project file called here
        (`GPT(GPTConfig(n_layer=48))`, `config = config or XConfig()`) and that class is a config
        (source/configs.py): the config its arguments make (its plain ones; the others unknown,
        and so is what its class computes from them). Anything else is returned as it is.
        Asked only where a value is bound to a parameter of this file's classes and functions:
        looking every class call of a file up would read the files of all its blocks."""
        if (type(value) is not Ctor or value.kind != "unknown" or value.extern is None or len(value.extern) != 2
                or value.extern[1] is None or type(value.node) is not cst.Call or self.configs is None
                or self.depth >= MAX_DEPTH):
            return value
        text = value.extern[0]
        pos: list = []
        kw: list = []
        for key, arg in value.extern[1]:
            plain_arg = arg[0] if arg and _constant(arg[0]) else UNKNOWN_ARG
            if isinstance(key, int):
                pos.append(plain_arg)
            else:
                kw.append((key, plain_arg))
        values = self.configs.values(text, self.imports.qualify_dotted(text), args=(tuple(pos), tuple(kw)))
        return value if values is None else self._config_value(text, values, value.node)

    def config(self, info: ClassInfo, bound: tuple) -> Ctor:
        """An instance of a plain class of this file (a dataclass or a PretrainedConfig-style
        class whose __init__ sets self.x = x): its attributes, from what its bases hold
        (`class_layer`), its class-level defaults, then __init__ run with the arguments (or the
        dataclass's generated one, then its `__post_init__`)."""
        ctor = Ctor("config", info.name, [], {}, info.node, next(self.order))
        self.depth += 1
        try:
            inst = Instance(info, {}, [], fm=self)
            pos, kw, open_pos, open_kw = bound
            inst.attrs.update(self._bases_layer(info))
            fields = self._class_values(info, inst.attrs)
            if "__init__" in info.methods:
                inst.attrs.update(self.instantiate(info, None, {}, bound=bound).attrs)
            else:
                # A dataclass's generated __init__: fields in order, then keywords.
                for name, value in zip(fields, pos):
                    inst.attrs[name] = value
                for name, value in kw.items():
                    inst.attrs[name] = value
                if open_pos or open_kw:
                    inst.attrs = {k: Sym(k) for k in inst.attrs}
                elif "__post_init__" in info.methods:
                    self._post_init(info, inst)
            _attribute_map(inst.attrs, self._attribute_map(info))
            ctor.instance = inst
        finally:
            self.depth -= 1
        return ctor

    def _class_values(self, info: ClassInfo, attrs: dict) -> list[str]:
        """Set the class-level values of `info`'s body in `attrs` (`n: int = 12`, `n = 12`,
        `n: int = field(default=12)`); its dataclass fields, in order."""
        fields: list[str] = []
        for stmt in info.node.body.body:
            if type(stmt) is cst.SimpleStatementLine:
                for small in stmt.body:
                    if type(small) is cst.AnnAssign and type(small.target) is cst.Name:
                        fields.append(small.target.value)
                        if small.value is not None:
                            attrs[small.target.value] = self._field_default(small.value)
                    elif type(small) is cst.Assign and len(small.targets) == 1 and type(small.targets[0].target) is cst.Name:
                        attrs[small.targets[0].target.value] = self.eval(small.value, {})
        return fields

    def _field_default(self, value: cst.BaseExpression) -> Any:
        """A dataclass field's default: `field(default=x)` is x; `field(default_factory=XConfig)` a
        config class's instance as its defaults make it (a nested config: `optim: OptimConfig`);
        any other call of `field` unknown."""
        if type(value) is cst.Call and "dataclasses.field" in self.imports.qualify(value.func):
            for a in value.args:
                if a.keyword is not None and a.keyword.value == "default":
                    return self.eval(a.value, {})
                if a.keyword is not None and a.keyword.value == "default_factory":
                    return self._config_factory(a.value)
            return UNKNOWN
        return self.eval(value, {})

    def _config_factory(self, factory: cst.BaseExpression) -> Any:
        """What `default_factory=XConfig` makes: a plain config class of this file, or one of
        another project file (its plain values), built with its defaults; unknown for anything
        else (`list`, a lambda, a function: what it returns is not read)."""
        text = dotted(factory) if type(factory) in (cst.Name, cst.Attribute) else None
        if not text or not text.rsplit(".", 1)[-1][:1].isupper() or self.depth >= MAX_DEPTH:
            return UNKNOWN
        info = self.classes.get(text)
        if info is not None:
            return UNKNOWN if info.is_module else self.config(info, ([], {}, False, False))
        if self.configs is None:
            return UNKNOWN
        values = self.configs.values(text, self.imports.qualify_dotted(text), args=((), ()))
        return UNKNOWN if values is None else self._config_value(text, values, factory)

    def class_layer(self, info: ClassInfo) -> dict:
        """What a subclass of `info` gets from it before its own code runs: its bases' layers, then
        its class-level values, less every name a method of `info` sets on `self` (its __init__ or
        __post_init__ may compute it from values the subclass changes)."""
        self.depth += 1
        try:
            attrs = self._bases_layer(info)
            self._class_values(info, attrs)
        finally:
            self.depth -= 1
        setters = _self_setters(info)
        if setters is None:
            return {}
        return {k: v for k, v in attrs.items() if k not in setters}

    def _bases_layer(self, info: ClassInfo) -> dict:
        """The layers of `info`'s bases (their class-level values: `class_layer`), the first base
        last (it wins, as in Python's lookup): a base of this file read here, one of another file
        through `self.configs`, anything else (a library's PretrainedConfig) holds nothing known.
        Names `info`'s `super().__init__(name=...)` passes are left out (the base sets them from
        the subclass's values); all of them when it passes any positionally."""
        attrs: dict = {}
        if self.depth >= MAX_DEPTH:
            return attrs
        for base in reversed(info.bases):
            local = self.classes.get(base)
            if local is not None and local is not info:
                if not local.is_module:
                    attrs.update(self.class_layer(local))
            elif self.configs is not None:
                values = self.configs.values(base, self.imports.qualify_dotted(base), layer=True)
                attrs.update({k: engine_value(v) for k, v in (values or {}).items()})
        passed = _passed_to_super(info)
        if passed is None:
            return {}
        return {k: v for k, v in attrs.items() if k not in passed}

    def _post_init(self, info: ClassInfo, inst: Instance) -> None:
        """A dataclass's `__post_init__`, run on the instance its fields made. Cut short by the
        budget, or refusing the defaults (`raise`): nothing of the instance is known."""
        post = info.methods["__post_init__"]
        scope: dict = {"__methods__": self._methods(info), "__instance__": inst}
        scope.update({"self." + k: v for k, v in inst.attrs.items()})
        interp = _InitInterpreter(self, scope, inst)
        running, self.running = self.running, post
        try:
            interp.block(post.body)
        except Exhausted:
            interp.raised = True
            self.cuts += 1
        finally:
            self.running = running
        if interp.raised:
            inst.attrs = {k: Sym(k) for k in inst.attrs}

    def _attribute_map(self, info: ClassInfo) -> dict:
        """PretrainedConfig's `attribute_map = {"n_layer": "num_hidden_layers"}` (of the class or a
        base of this file): reading the key reads the value's attribute."""
        for owner in (info, *(self.classes.get(b) for b in info.bases)):
            if owner is None:
                continue
            for stmt in owner.node.body.body:
                if type(stmt) is cst.SimpleStatementLine:
                    for small in stmt.body:
                        target = (small.targets[0].target if type(small) is cst.Assign and len(small.targets) == 1
                                  else small.target if type(small) is cst.AnnAssign and small.value is not None
                                  else None)
                        if type(target) is cst.Name and target.value == "attribute_map":
                            value = self.eval(small.value, {})
                            return value.items if isinstance(value, DictVal) else {"*": None}
        return {}


def _attribute_map(attrs: dict, mapping: dict) -> None:
    """Apply PretrainedConfig's attribute_map: `config.key` reads `config.<value>`. A key also
    set under its own name, or a map not read (`"*"`), leaves what it names unknown."""
    if "*" in mapping:
        for k in list(attrs):
            attrs[k] = Sym(k)
        return
    for key, target in mapping.items():
        if not isinstance(key, str):
            continue
        if type(target) is str and target in attrs and key not in attrs:
            attrs[key] = attrs[target]
        else:
            attrs[key] = Sym(key)
            if isinstance(target, str) and target in attrs:
                attrs[target] = Sym(target)


def _self_setters(info: ClassInfo) -> frozenset[str] | None:
    """The names the methods of `info` set on `self` (`self.x = ...`, `self.x += ...`); None when
    one may set any (`setattr(self, ...)`, `self.__dict__`)."""
    names: set[str] = set()
    for method in info.methods.values():
        stack: list = [method.body]
        while stack:
            node = stack.pop()
            if type(node) is cst.Call and dotted(node.func) == "setattr":
                return None
            if type(node) is cst.Attribute and type(node.value) is cst.Name and node.value.value == "self":
                if node.attr.value == "__dict__":
                    return None
            targets: list = []
            if type(node) is cst.Assign:
                targets = [t.target for t in node.targets]
            elif type(node) in (cst.AnnAssign, cst.AugAssign):
                targets = [node.target]
            for t in targets:
                for sub in (t.elements if type(t) in (cst.Tuple, cst.List) else [t]):
                    sub = getattr(sub, "value", sub)
                    if type(sub) is cst.Attribute and type(sub.value) is cst.Name and sub.value.value == "self":
                        names.add(sub.attr.value)
            stack.extend(children(node))
    return frozenset(names)


def _passed_to_super(info: ClassInfo) -> frozenset[str] | None:
    """The keywords `info`'s __init__ passes to `super().__init__(...)`; None when it passes
    anything positionally (`*args` included): then no name of the bases is known to be theirs."""
    init = info.methods.get("__init__")
    names: set[str] = set()
    if init is None:
        return frozenset()
    stack: list = [init.body]
    while stack:
        node = stack.pop()
        if (type(node) is cst.Call and type(node.func) is cst.Attribute and node.func.attr.value == "__init__"
                and type(node.func.value) is cst.Call and dotted(node.func.value.func) == "super"):
            for a in node.args:
                if a.keyword is not None:
                    names.add(a.keyword.value)
                elif a.star != "**":
                    return None
        stack.extend(children(node))
    return frozenset(names)
