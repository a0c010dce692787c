"""Config classes of other files: `def __init__(self, config: GPTConfig)` with `GPTConfig` imported
(`from .configuration_gpt import GPTConfig`, `from config import GPTConfig`, `cfgmod.GPTConfig`).

The worker that extracts a file finds the class from the file's own path, with the project
index's resolution (`facts.project.ProjectIndex` over a loader of the folders around the file:
relative imports, a script's siblings, re-exports through `__init__`), evaluates it in its own
file with the models' evaluator (`FileModel.config`: class-level fields, `__init__` or the
dataclass's generated one, `__post_init__`) and keeps its plain values only: numbers, strings,
bools, None and tuples of them. Every file the resolution looked at, found or not, becomes a
dependency of the facts (`FileFacts.depends`), so their cache entry is stale once one changes.

Nothing is imported or run; a file that cannot be read, parsed or found leaves the config's
values as symbols (unknown), and so does anything past the bounds below.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradlint.facts.files import FileFacts
from gradlint.facts.project import ProjectIndex
import libcst as cst

from gradlint.source.engine.values import ClassInfo, Ctor, Instance, ListVal, UNKNOWN
from gradlint.source.engine.walk import children
from gradlint.source.names import dotted

# A config whose base is a config of another file, whose base is... at most this deep.
MAX_CONFIG_DEPTH = 4
# Files one extraction looks for to resolve config classes (found or not: a module is looked for
# as `a/b.py` then `a/b/__init__.py`), at most.
MAX_CONFIG_FILES = 64
# Steps of the resolution of one name (facts.project's `_global`): the parent's index memoises
# them for the whole run, a worker's lives for one file. `from transformers import UdopConfig`
# inside transformers follows `*` imports through hundreds of `__init__` files (minutes, GBs).
MAX_RESOLUTION_STEPS = 256
# Evaluated configs kept by a process, by file, content and class (a worker extracts many files
# of one folder: transformers' modeling files share `configuration_utils.py`).
_MEMO_SIZE = 512
_EVALUATED: dict[tuple, tuple[dict | None, dict | None, tuple[tuple[str, str], ...]]] = {}
_SYMBOLS: dict[tuple[str, str], tuple[FileFacts, frozenset[str], frozenset[str]] | None] = {}
# The text and CPython's tree of the files _summary read last, by path: a config class found in
# one is evaluated soon after (_evaluate), and its parse for libcst starts from the same tree,
# which is then let go (a summary's other readers hold a few of its nodes at most).
_TREES: dict[str, tuple[str, Any]] = {}
_TREES_KEPT = 4

# Annotations that never name a config of the project: builtins, typing, torch.
_NOT_CONFIGS = frozenset({"torch", "typing", "typing_extensions", "numpy", "np", "collections", "builtins"})


def _not_the_projects(head: str) -> bool:
    """An import of torch, typing, numpy or the standard library: never a config of the project."""
    return head in _NOT_CONFIGS or head in sys.stdlib_module_names


_OPTIONAL = frozenset({"Optional", "typing.Optional", "t.Optional", "typing_extensions.Optional"})
_UNION = frozenset({"Union", "typing.Union", "t.Union", "typing_extensions.Union"})
# A string annotation longer than this is not read (it is parsed as an expression).
_MAX_ANNOTATION = 200


def annotated_class(ann: cst.BaseExpression, depth: int = 0) -> str | None:
    """The class an annotation names, as written: `XConfig`, `cfgmod.XConfig`, the string
    `"XConfig"`, `Optional[XConfig]`, `Union[XConfig, None]`, `XConfig | None`; None for
    anything else (a union of two classes names none)."""
    if depth > 4:
        return None
    kind = type(ann)
    if kind is cst.Name or kind is cst.Attribute:
        return dotted(ann)
    if kind is cst.SimpleString:
        if len(ann.value) > _MAX_ANNOTATION + 8:
            return None
        try:
            text = ann.evaluated_value
            if not isinstance(text, str) or not text.strip():
                return None
            return annotated_class(cst.parse_expression(text.strip()), depth + 1)
        except (cst.ParserSyntaxError, RecursionError, ValueError, TypeError, SyntaxError, MemoryError):
            return None
    if kind is cst.Subscript:
        head = dotted(ann.value)
        items = [el.slice.value for el in ann.slice if type(el.slice) is cst.Index]
        if len(items) != len(ann.slice):
            return None
        if head in _UNION:
            items = [i for i in items if not (type(i) is cst.Name and i.value == "None")]
        if (head in _OPTIONAL or head in _UNION) and len(items) == 1:
            return annotated_class(items[0], depth + 1)
        return None
    if kind is cst.BinaryOperation and type(ann.operator) is cst.BitOr:
        sides = [s for s in (ann.left, ann.right) if not (type(s) is cst.Name and s.value == "None")]
        return annotated_class(sides[0], depth + 1) if len(sides) == 1 else None
    return None


def plain(value: Any) -> Any:
    """The value if it is plain data (a number, string, bool, None, a tuple or list of those, as
    a tuple), else a marker that it is not (`_NOT_PLAIN`)."""
    kind = type(value)
    if value is None or kind in (int, float, str, bool):
        return value
    if kind is ListVal:
        items = tuple(plain(v) for v in value.items)
        return _NOT_PLAIN if any(i is _NOT_PLAIN for i in items) else items
    return _NOT_PLAIN


_NOT_PLAIN: Any = object()


# An argument of a config built by a call that is not plain data (ConfigReader.values' `args`).
UNKNOWN_ARG: Any = object()
# Configs held by configs (`optim: OptimConfig = field(default_factory=OptimConfig)`) whose
# fields the loop facts read (`cfg.optim.max_grad_norm`), at most this deep.
MAX_NESTING = 3


@dataclass(frozen=True)
class ConfigArg:
    """An argument of a config built by a call that is itself a config built there
    (`Cfg(optim=OptimCfg(grad_clip=0.0))`): its class's last name and its plain values, as
    `_plain_attrs(nested=True)` gives them (hashable: it is part of the memo keys)."""

    cls: str
    values: tuple[tuple[str, Any], ...]


def engine_value(value: Any) -> Any:
    """A plain value as the models' evaluator holds it (tuples are ListVals, fresh each time: the
    evaluator may change a list in place); UNKNOWN_ARG is unknown; a ConfigArg a config
    instance holding its values."""
    if value is UNKNOWN_ARG:
        return UNKNOWN
    if type(value) is tuple:
        return ListVal([engine_value(v) for v in value])
    if type(value) is ConfigArg:
        node = cst.Name(value.cls)
        ctor = Ctor("config", value.cls, [], {}, node, 0)
        ctor.instance = Instance(ClassInfo(value.cls, node, (), {}), {k: engine_value(v) for k, v in value.values}, [])
        return ctor
    return value


def _plain_attrs(attrs: dict, nested: bool = False, depth: int = 0, inst: Any = None) -> dict:
    """The plain values of an instance's attributes; `nested`: with those of the config objects
    it holds too, under dotted names (`optim.grad_clip`), MAX_NESTING deep, but for one that a
    method of the instance's class (`inst`) does anything with but store it: the evaluator
    does not follow `self.optim.grad_clip = 1.0` in a `__post_init__`."""
    out = {}
    touched: frozenset[str] | None = frozenset()
    for k, v in attrs.items():
        if k.startswith("__"):
            continue
        p = plain(v)
        if p is not _NOT_PLAIN:
            out[k] = p
        elif nested and depth < MAX_NESTING and type(v) is Ctor and v.kind == "config" and v.instance is not None:
            if touched is not None and not touched:
                touched = _held_touched(inst)
            if touched is None or k in touched:
                continue
            inner = _plain_attrs(v.instance.attrs, True, depth + 1, v.instance)
            out.update((f"{k}.{sub}", got) for sub, got in inner.items())
    return out


def _held_touched(inst: Any) -> frozenset[str] | None:
    """The attributes `X` that a method of `inst`'s class, or of a base of its file, names as
    `self.X` other than as the whole target of an assignment (`self.optim = optim`); None when
    one may set any name (`setattr`, `__dict__`) or the class cannot be read. Not empty: the
    caller memoises by emptiness."""
    names: set[str] = {""}
    infos = [getattr(inst, "cls", None)]
    classes = getattr(getattr(inst, "fm", None), "classes", None) or {}
    seen = 0
    while infos:
        info = infos.pop()
        if info is None or type(info.node) is not cst.ClassDef or seen > 8:
            return None
        seen += 1
        infos.extend(classes.get(b) for b in info.bases if b not in ("object", "ABC", "abc.ABC"))
        stack: list = [info.node.body]
        while stack:
            n = stack.pop()
            kind = type(n)
            if kind is cst.Name and n.value in ("setattr", "__dict__"):
                return None
            if kind is cst.Attribute and type(n.value) is cst.Name and n.value.value == "self":
                names.add(n.attr.value)
                continue
            if kind in (cst.Assign, cst.AnnAssign):
                # `self.optim = ...`: stored, not changed (what is stored is the evaluator's)
                targets = [t.target for t in n.targets] if kind is cst.Assign else [n.target]
                stack.extend(t for t in targets if not (type(t) is cst.Attribute and type(t.value) is cst.Name
                                                        and t.value.value == "self"))
                if n.value is not None:
                    stack.append(n.value)
                continue
            stack.extend(children(n))
    return frozenset(names)


class _Index(ProjectIndex):
    """The project index's resolution, cut short (nothing found) past MAX_RESOLUTION_STEPS."""

    def __init__(self, loader: "_Files") -> None:
        super().__init__(loader)
        self.steps = 0  # of the name being resolved (ConfigReader.find)

    def _global_uncached(self, qualified: str, depth: int) -> tuple[str, ...]:
        self.steps += 1
        if self.steps > MAX_RESOLUTION_STEPS:
            return ()
        return super()._global_uncached(qualified, depth)


class _Files:
    """facts.project.ModuleLoader over the folders around one file (its package's top and that
    folder's `src/`), noting every file it looks for, found or not."""

    def __init__(self, roots: tuple[str, ...], reader: "ConfigReader") -> None:
        self.roots = roots
        self.reader = reader
        self.paths: dict[str, str] = {}
        self.modules_like: dict[str, frozenset[str]] = {}  # module -> its classes that are modules
        self.configs_like: dict[str, frozenset[str]] = {}  # module -> its classes shaped as configs
        self.bindings: dict[str, dict[str, tuple]] = {}  # module -> its top-level bindings (constants.py)

    def load(self, module: str) -> tuple[FileFacts, bool] | None:
        if not module or any(not p.isidentifier() for p in module.split(".")) or self.reader.full():
            return None
        rel = os.path.join(*module.split("."))
        for root in self.roots:
            for cand in (os.path.join(root, rel + ".py"), os.path.join(root, rel, "__init__.py")):
                self.reader.looked_at(cand)
                try:
                    data, fingerprint = _read(cand)
                except OSError:
                    continue
                key = (cand, fingerprint)
                if key not in _SYMBOLS:
                    if len(_SYMBOLS) >= _MEMO_SIZE:
                        _SYMBOLS.clear()
                    _SYMBOLS[key] = _summary(cand, data)
                got = _SYMBOLS[key]
                if got is None:
                    return None
                self.paths[module] = cand
                self.modules_like[module] = got[1]
                self.configs_like[module] = got[2]
                self.bindings[module] = got[3]
                return got[0], cand.endswith("__init__.py")
        return None

    def modules_mentioning(self, word: str, whole: bool = False) -> list[str]:
        return []


def _summary(path: str, data: bytes) -> tuple[FileFacts, frozenset[str], frozenset[str], dict[str, tuple]] | None:
    """A module's top-level names (CPython's `ast`, which runs nothing), the classes of it that
    are modules, not configs: one that defines `forward` or derives from a `...Module`, a
    `Sequential` or such a class of the file (the config's file is parsed by libcst only for a
    class that may be a config: `config: PreTrainedModel` would parse all of modeling_utils.py),
    those shaped as configs (`_config_shaped`), and the bindings of each top-level name
    (`constants.bindings`: its plain constants, for other files' numerics)."""
    import ast

    from gradlint.source.index import module_symbols
    from gradlint.source.names import canonical
    from gradlint.source.skeleton import nodes_under

    try:
        text = data.decode("utf-8")
        tree = ast.parse(text)
    except (SyntaxError, ValueError, UnicodeDecodeError, RecursionError, MemoryError):
        return None
    _TREES.pop(path, None)
    if len(_TREES) >= _TREES_KEPT:
        del _TREES[next(iter(_TREES))]
    _TREES[path] = (text, tree)
    symbols = module_symbols(tree)
    if symbols is None:
        return None
    modules: set[str] = set()
    shaped: set[str] = set()
    # (the walk of every class below only where the text can hold what it looks for)
    may_set = b"setattr" in data or b"__dict__" in data
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        bases = [ast.unparse(b) if not isinstance(b, ast.Name) else b.id for b in node.bases]
        if any(isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name == "forward" for f in node.body) or any(
                canonical(b).endswith(("Module", "Sequential", "ModuleList", "ModuleDict")) or b in modules for b in bases):
            modules.add(node.name)
        elif may_set and any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "setattr"
                 or isinstance(n, ast.Attribute) and n.attr == "__dict__" for n in nodes_under(node)):
            # its methods may set any name on self: as a base it gives nothing (class_layer), and
            # its file is not parsed for that (transformers' PreTrainedConfig and its mixins)
            modules.add("." + node.name)
        if node.name not in modules and _config_shaped(node, bases, shaped):
            shaped.add(node.name)
    from gradlint.source.constants import bindings

    return (FileFacts(path=path, kind="python", symbols=symbols), frozenset(modules), frozenset(shaped),
            bindings(tree, data))


def _config_shaped(node: Any, bases: list[str], shaped: set[str]) -> bool:
    """A class a call may build as a config (ConfigObjects.config_of_call): a dataclass, or one
    whose bases are all configs by their shape or name (`...Config`: transformers'
    PretrainedConfig) or that has none. A class of another file called where a module is passed
    (`Block(dim, norm=MyNorm(dim))`, `MyNorm` deriving from a block of a third file without a
    forward of its own) is not one: read as a config, the module would be lost."""
    import ast

    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        name = target.attr if isinstance(target, ast.Attribute) else target.id if isinstance(target, ast.Name) else ""
        if name == "dataclass":
            return True
    return all(b in ("object", "ABC") or b in shaped or b.rsplit(".", 1)[-1].endswith(("Config", "Configuration"))
               for b in bases)


def _fingerprint(path: str) -> str:
    from gradlint.inputs import fingerprint_dependency

    folder, name = os.path.split(path)
    return fingerprint_dependency(folder, name)


def _regular_fingerprint(path: str) -> str:
    """A source file's fingerprint, as the cache fingerprints a dependency; OSError when it is no
    regular file (a link, a folder, missing: the fingerprint says which)."""
    fingerprint = _fingerprint(path)
    if not fingerprint.startswith(("sha256:", "stat:")):
        raise OSError(fingerprint)
    return fingerprint


def _read(path: str) -> tuple[bytes, str]:
    """A source file's bytes and fingerprint; OSError when it is no regular file of a sane size."""
    from gradlint.inputs import Refused, read_bounded
    from gradlint.source import MAX_SOURCE_BYTES

    fingerprint = _regular_fingerprint(path)
    try:
        return read_bounded(Path(path), MAX_SOURCE_BYTES), fingerprint
    except Refused as exc:
        raise OSError(str(exc)) from None


def _package_top(folder: str, seen: dict[str, None] | None = None) -> str:
    """The folder absolute imports of a file in `folder` start from: above its regular packages.
    `seen` gets each `__init__.py` looked for, found or not: where a config class is looked for
    follows from them, and a cached answer must go stale when one appears or goes."""
    top = folder
    while True:
        marker = os.path.join(top, "__init__.py")
        if seen is not None:
            seen.setdefault(marker)
        if not os.path.isfile(marker) or os.path.dirname(top) == top:
            return top
        top = os.path.dirname(top)


class ConfigReader:
    """The config classes a file's annotations name, read from their files (models.FileModel asks
    through `ConfigObjects.config_default` and `ConfigObjects.config`).

    `path`: the file being extracted; `symbols`: its top-level names (ModuleSymbols).
    """

    def __init__(self, path: str | os.PathLike, symbols: Any, depth: int = 0):
        self.path = os.path.abspath(path)
        self.folder = os.path.dirname(self.path)
        self.symbols = symbols
        self.depth = depth
        # the files looked for, found or not, by absolute path (those of nested configs included)
        self.seen: dict[str, None] = {}
        # the `__init__.py` files whose presence decided where imports start (_resolver): not
        # files read (no share of MAX_CONFIG_FILES), but the answers depend on them too
        self.markers: dict[str, None] = {}
        self._index: ProjectIndex | None = None
        self._files: _Files | None = None
        self._module = ""
        self._found_module = ""  # the module of the class `find` found last
        self._constants: Any = None  # constants.Lookup, made by the first `constant`

    def full(self) -> bool:
        return len(self.seen) >= MAX_CONFIG_FILES

    def looked_at(self, path: str) -> None:
        self.seen.setdefault(path)

    def depends(self) -> tuple[str, ...]:
        """The files looked at, relative to the file's folder (FileFacts.depends)."""
        return tuple(os.path.relpath(p, self.folder).replace(os.sep, "/") for p in {**self.seen, **self.markers})

    def _resolver(self) -> tuple[ProjectIndex, _Files]:
        if self._index is None:
            from gradlint.source.index import import_roots

            top = _package_top(self.folder, self.markers)
            self.markers.setdefault(os.path.join(top, "src", "__init__.py"))  # (import_roots reads it)
            roots = tuple(str(r) for r in import_roots(Path(top)))
            self._files = _Files(roots, self)
            self._index = _Index(self._files)
            rel = os.path.relpath(self.path, top)
            parts = rel[:-3].split(os.sep) if rel.endswith(".py") else [Path(rel).stem]
            package = parts[-1] == "__init__"
            self._module = ".".join(parts[:-1] if package else parts)
            self._index.add(self._module, FileFacts(path=self.path, kind="python", symbols=self.symbols), package)
        assert self._files is not None
        return self._index, self._files

    def find(self, text: str, qualified: frozenset[str], called: bool = False) -> tuple[str, str] | None:
        """(file, class) of the class `text` names in this file (`qualified`: what the file's
        imports make of it), or None when it is not one class of another project file (`called`:
        one shaped as a config, `_config_shaped`)."""
        found = self._project_class(text, qualified)
        if found is None:
            return None
        module, cls, files = found
        if cls in files.modules_like.get(module, ()):
            return None
        if called and cls not in files.configs_like.get(module, ()):
            return None
        self._found_module = module
        where = files.paths.get(module)
        if where is None or os.path.abspath(where) == self.path:
            return None
        return where, cls

    def is_module_class(self, text: str, qualified: frozenset[str]) -> bool:
        """Whether `text` names one module class of another project file (one that defines
        `forward` or derives from a module class: `_summary`), read from its file."""
        found = self._project_class(text, qualified)
        return found is not None and found[1] in found[2].modules_like.get(found[0], ())

    def _project_class(self, text: str, qualified: frozenset[str]) -> tuple[str, str, "_Files"] | None:
        """(module, class, the files read) of the one class of a project file `text` names here,
        its module read; None for anything else (a library's, several, none)."""
        if self.depth >= MAX_CONFIG_DEPTH or not text or not qualified or self.symbols is None:
            return None
        if not text.rsplit(".", 1)[-1][:1].isupper() or any(_not_the_projects(q.split(".", 1)[0]) for q in qualified):
            return None
        index, files = self._resolver()
        index.steps = 0
        found = index.resolve(self._module, text)
        if len(found) != 1:
            return None
        module, _, cls = found[0].rpartition(".")
        return (module, cls, files) if index.module(module) is not None else None

    def constant(self, names: frozenset[str], call: bool = False) -> Any:
        """The plain value of a name this file imports from another project module (`names`: what
        the file's imports make of it, relative targets kept: '.consts.EPS'), held to the rule of
        a module constant in its own file (source/constants.py); `call`: what calling it with no
        arguments gives (`def eps(): return 0.0`); `constants.NOT_KNOWN` when it is not one value
        of the project. The files looked at become the facts' `depends`."""
        from gradlint.source.constants import NOT_KNOWN, Lookup
        from gradlint.source.engine.tensors import same_value

        if self.symbols is None or not names or any(
                not q.startswith(".") and _not_the_projects(q.split(".", 1)[0]) for q in names):
            return NOT_KNOWN
        index, _files = self._resolver()
        if self._constants is None:
            self._constants = Lookup(self._constant_module, self._module)
        here = index.module(self._module)
        found: list[Any] = []
        for q in sorted(names):
            target = self._absolute(here, q) if here is not None else ""
            self._constants.steps = index.steps = 0
            found.append(self._constants.qualified(target, 0, call) if target else NOT_KNOWN)
        first = found[0]
        return first if all(v is not NOT_KNOWN and same_value(first, v) for v in found) else NOT_KNOWN

    def _constant_module(self, name: str) -> tuple | None:
        """constants.Lookup's view of project module `name`: its bindings, its `*` imports and how
        its import targets read as absolute names; None when it is no project file read here."""
        assert self._index is not None and self._files is not None
        mod = self._index.module(name)
        table = self._files.bindings.get(name) if mod is not None else None
        if mod is None or table is None:
            return None
        return table, mod.star, lambda target: self._absolute(mod, target)

    def _absolute(self, mod: Any, target: str) -> str:
        """An import target of module `mod` as an absolute name: relative ones from its package, a
        script's sibling (`from consts import EPS`) when no top-level module has that name; ''
        for torch, typing, numpy and the standard library (never looked up)."""
        from gradlint.facts.project import absolute

        if target.startswith("."):
            return absolute(mod, target)
        head = target.split(".", 1)[0]
        if _not_the_projects(head):
            return ""
        if mod.package and self._index is not None and self._index.module(head) is None:
            return f"{mod.package}.{target}"
        return target

    def values(self, text: str, qualified: frozenset[str], layer: bool = False, args: tuple | None = None,
               nested: bool = False) -> dict | None:
        """The plain values of an instance of the config class `text` names, built with no
        arguments (its defaults) or with `args` (positional values, then (keyword, value) pairs:
        plain values, or UNKNOWN_ARG for one not known: what is computed from it stays unknown);
        `layer`: only what it holds as a base class (its class-level values that no method of it
        sets again); `nested`: with the values of the configs it holds (`_plain_attrs`). None
        when not known."""
        found = self.find(text, qualified, called=args is not None)
        if found is None:
            return None
        path, cls = found
        if layer and "." + cls in self._files.modules_like.get(self._found_module, ()):
            return {}
        try:
            # only the key: _evaluate parses the file itself, with its own size bound
            fingerprint = _regular_fingerprint(path)
        except OSError:
            return None
        key = (path, fingerprint, cls, self.depth, None if layer else args, nested and not layer)
        got = _EVALUATED.get(key)
        if got is None or any(_fingerprint(p) != f for p, f in got[2]):
            # (a process that checks again after a base's file changed: tests, an editor's server)
            got = _evaluate(path, cls, self.depth, None if layer else args, nested and not layer)
            if len(_EVALUATED) >= _MEMO_SIZE:
                _EVALUATED.clear()
            _EVALUATED[key] = got
        whole, base, read = got
        for p, _f in read:
            self.looked_at(p)
        return base if layer else whole


def _evaluate(path: str, cls: str, depth: int, args: tuple | None = None, nested: bool = False
              ) -> tuple[dict | None, dict | None, tuple[tuple[str, str], ...]]:
    """(its values, its values as a base class, the files its own config bases read, with their
    fingerprints) of class `cls` of file `path`, evaluated in that file (built with `args`, see
    ConfigReader.values; its defaults when None)."""
    import gc

    from gradlint.source import parsed
    from gradlint.source.budget import Exhausted
    from gradlint.source.models import FileModel

    collecting = gc.isenabled()
    gc.disable()  # as extract_python_text: the tree is freed as a whole below
    try:
        src = parsed(Path(path), path, _TREES.pop(path, None))
        if src is None:
            return None, None, ()
        tree = getattr(src.positions, "tree", None)
        from gradlint.source.index import module_symbols

        reader = ConfigReader(path, module_symbols(tree if tree is not None else src.text), depth + 1)
        fm = FileModel(src, configs=reader)
        info = fm.classes.get(cls)
        whole = base = None
        if info is not None and not info.is_module:
            fm.meter.allow()
            try:
                pos, kw = args if args is not None else ((), ())
                ctor = fm.config(info, ([engine_value(v) for v in pos], {k: engine_value(v) for k, v in kw}, False, False))
                if ctor.instance is not None and not fm.meter.exhausted:
                    whole = _plain_attrs(ctor.instance.attrs, nested, inst=ctor.instance)
                fm.meter.allow()
                base = _plain_attrs(fm.class_layer(info))
            except (Exhausted, RecursionError):
                whole = base = None
        return whole, base, tuple((p, _fingerprint(p)) for p in reader.seen)
    finally:
        if collecting:
            gc.enable()


class FileConfigs:
    """The plain classes of the file being extracted, evaluated on demand by its models'
    evaluator (the loop facts read `cfg.max_grad_norm` of `cfg = TrainConfig()`), until
    `release`. Only the values of an instance built once, with its defaults and the plain
    arguments of the call: a class whose methods (other than `__init__`/`__post_init__`) set
    an attribute of `self`, or that sets names through `setattr`/`__dict__`, gives nothing."""

    def __init__(self, fm: Any, release: Any) -> None:
        self._fm = fm
        self._release = release
        self._memo: dict[tuple, dict | None] = {}

    def values(self, cls: str, args: tuple) -> dict | None:
        """The plain values of `cls(...)` (a class of this file; `args` as ConfigReader.values'),
        those of the configs it holds among them (`optim.grad_clip`), or None when not known."""
        key = (cls, args)
        if key not in self._memo:
            self._memo[key] = self._evaluate(cls, args)
        return self._memo[key]

    def _evaluate(self, cls: str, args: tuple) -> dict | None:
        from gradlint.source.budget import Exhausted

        fm = self._fm
        info = fm.classes.get(cls) if fm is not None else None
        if info is None or info.is_module or _sets_self_later(info.node) or not _plain_config(info.node, fm.classes):
            return None
        fm.meter.allow()
        pos, kw = args
        try:
            ctor = fm.config(info, ([engine_value(v) for v in pos], {k: engine_value(v) for k, v in kw}, False, False))
        except (Exhausted, RecursionError):
            return None
        if ctor.instance is None or fm.meter.exhausted:
            return None
        return _plain_attrs(ctor.instance.attrs, nested=True, inst=ctor.instance)

    def release(self) -> None:
        if self._fm is not None:
            self._release(self._fm)
            self._fm = None


def _plain_config(node: cst.ClassDef, classes: dict, depth: int = 0) -> bool:
    """A class whose instance is what its body and constructor make of it: a dataclass, or one
    whose bases are all such classes of the file, `object`, or none (as `_config_shaped` reads
    another file's). A base of a library (pydantic's `BaseSettings` reads the environment, a
    `Namespace` subclass the command line) may set anything."""
    for deco in node.decorators:
        target = deco.decorator.func if type(deco.decorator) is cst.Call else deco.decorator
        if (dotted(target) or "").rsplit(".", 1)[-1] == "dataclass":
            return True
    for base in node.bases:
        name = dotted(base.value) if base.keyword is None else None
        if name in ("object", "ABC", "abc.ABC"):
            continue
        info = classes.get(name) if name else None
        if info is None or depth > 8 or not _plain_config(info.node, classes, depth + 1):
            return False
    return True


def _sets_self_later(node: cst.ClassDef) -> bool:
    """Whether a method of the class other than `__init__`/`__post_init__` assigns an attribute
    of `self` (`def load(self): self.clip = ...`), or the class sets names by `setattr` or
    `__dict__`: what its constructor leaves is then not what a later read sees."""
    stack: list[cst.CSTNode] = [node.body]
    while stack:
        n = stack.pop()
        if type(n) is cst.FunctionDef and n.name.value in ("__init__", "__post_init__"):
            continue
        if type(n) is cst.Name and n.value in ("setattr", "__dict__"):
            return True
        if type(n) in (cst.Assign, cst.AugAssign, cst.AnnAssign):
            targets = [t.target for t in n.targets] if type(n) is cst.Assign else [n.target]
            if any(type(t) is cst.Attribute and type(t.value) is cst.Name and t.value.value == "self"
                   for t in targets):
                return True
        stack.extend(children(n))
    return False
