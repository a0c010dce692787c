"""nn.Module classes (and nn.Sequential built in functions) -> model IR, by abstract interpretation.

`__init__` is interpreted statement by statement: constructor calls become `Ctor` values, lists and
containers are followed through locals, loops over `range(n)` are unrolled when `n` is known
(literals, default arguments, module constants), and every initialisation (`nn.init.*`, in-place
`weight.data.normal_()`, `self.apply(fn)` and loops over `self.modules()` with isinstance dispatch)
is attached to the layers it reaches, in program order. A condition __init__ cannot decide makes
the modules its branches build a choice (`Alt`). `forward` is then interpreted over paths
(source/forward.py), one per combination of undecided conditions and choices: each value is the
tuple of IR nodes applied to an input since that input, so `x + f(x)` is recognised as a residual
by its common prefix. Whatever cannot be followed becomes `Opaque`, which ends chains: the
front-end never guesses a structure into a finding.

This module holds the entry point (`extract`) and `FileModel`, the file's classes and tables,
whose evaluator of construction-time expressions is `model_eval.py`; `rerun.py` re-runs a block of a file with a caller's arguments (`lower_class`,
`lower_function`). Its calls are `construct.py`, the `__init__` statements `init_walk.py`, the lowering
of a built module to IR `lowering.py`, its forward interpreter `forward.py`; the values they share
are `engine/values.py`.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import libcst as cst

from gradlint.model.blocks import block_count
from gradlint.model.ir import Network, TransformerBlock
from gradlint.source import catalog as C
from gradlint.source import library as L
from gradlint.source.budget import Exhausted, Meter
from gradlint.source.construct import _constant, _neutral, bases_first, ConstructCalls
from gradlint.source.engine.values import Alt, ClassInfo, ClassRef, Ctor, DictVal, Instance, ListVal, Sym, UNKNOWN
from gradlint.source.lowering import NO_CHOICE, _maybe_none, Lowerer, stack_sites
from gradlint.source.config_objects import ConfigObjects
from gradlint.source.model_eval import ConstructionEval
from gradlint.source.names import dotted
from gradlint.text import count_line_starts, search_word_start


class FileModel(ConstructionEval, ConfigObjects, ConstructCalls):
    """Interprets the classes of one file."""

    def __init__(self, src, configs=None) -> None:
        self.src = src
        # config classes of other files (source/configs.py ConfigReader), when the file was read
        # from disk: their values for `config: XConfig` parameters and config bases
        self.configs = configs
        self.imports = src.imports
        self.order = itertools.count()
        self.constants: dict[str, Any] = {}
        self._class_consts: dict[tuple[str, str], Any] = {}  # (class, name): _class_constant
        self.functions: dict[str, cst.FunctionDef] = {}
        self.classes: dict[str, ClassInfo] = {}
        self.depth = 0
        # Set while a library block is built for the user's call: the call its layers stand at.
        self.site: Any = None
        # The function whose body runs now, and the one each call was evaluated in: where its
        # position is looked up (SourceFile.span's `within`), not in its whole top-level statement.
        self.running: cst.FunctionDef | None = None
        self.holder: dict[int, cst.FunctionDef] = {}
        self.spans: dict[int, Any] = {}  # id(node) -> its SourceSpan, for the lowering
        self._lib: FileModel | None = None
        # The catalogue's: the user's file it runs for, whose classes a block is handed
        # (`Mlp(dim, act_layer=StarReLU)`); None for a user's file
        self.user: FileModel | None = None
        self.meter = Meter()
        self.cuts = 0  # instances whose __init__ a budget cut short
        self.spent_forwards: set[str] = set()  # classes whose forward a factory's budget cut short
        # id(if statement) -> its truth (None: undecided) while a factory runs (factories.py)
        self.decisions: dict[int, bool | None] | None = None
        # The tests of the undecided `if`s the init walk is inside: an initialisation made there
        # may not happen (init_walk.record_init)
        self.undecided: list[cst.BaseExpression] = []
        # Set while a factory or the module's own statements run (factories.py): a config object
        # passed to a class of another file goes with its values (ir.ConfigArg), which the class
        # is re-run with in its file. Elsewhere a class of another file gets what it got before.
        self.configs_to_externs = False
        self.building: dict[str, int] = {}  # local classes being instantiated, with their nesting
        # Set while forward is lowered: the option of an Alt this forward run takes (None: merge).
        self.pick: Any = None
        self._collect()

    def library(self) -> "FileModel":
        """The catalogue of torchvision/timm blocks, interpreted like a file of its own."""
        if self._lib is None:
            self._lib = FileModel(L.LibrarySource())
            self._lib.order = self.order
            self._lib._lib = self._lib
            self._lib.user = self
        return self._lib

    # ---- file-level tables -------------------------------------------------------------
    def _collect(self) -> None:
        tables: list[tuple[str, cst.BaseExpression]] = []
        for stmt in self.src.module.body:
            if type(stmt) is cst.SimpleStatementLine:
                for small in stmt.body:
                    if type(small) is cst.AnnAssign and type(small.target) is cst.Name and small.value is not None and (
                            type(small.value) is cst.Dict or (
                                type(small.value) is cst.Call and dotted(small.value.func) == "dict")):
                        tables.append((small.target.value, small.value))  # `cfgs: dict[str, list] = {...}`
                        continue
                    if type(small) is cst.Assign and len(small.targets) == 1 and type(small.targets[0].target) is cst.Name:
                        if type(small.value) is cst.Dict or (
                                type(small.value) is cst.Call and dotted(small.value.func) == "dict"):
                            tables.append((small.targets[0].target.value, small.value))
                            continue
                        self.meter.allow()
                        value = self.eval(small.value, {})
                        if isinstance(value, (int, float, str, bool)) and not isinstance(value, Sym):
                            self.constants[small.targets[0].target.value] = value
                        elif isinstance(value, ClassRef) and self._bound_once(small.targets[0].target.value):
                            # `ReluRNN = functools.partial(nn.RNN, nonlinearity="relu")`, `Cell =
                            # nn.GRU`: a class (with arguments bound), which the file's classes build
                            self.constants[small.targets[0].target.value] = value
                    elif type(small) is cst.Assign and len(small.targets) == 1:
                        self._unpacked_constants(small.targets[0].target, small.value)
            elif type(stmt) is cst.FunctionDef:
                self.functions[stmt.name.value] = stmt
        for node, nested in _walk_classes(self.src.module):
            if nested and node.name.value in self.classes:
                # a class inside another class's body (`Legacy.Block`) is no global of the file:
                # it never replaces the module's own class of that name
                continue
            bases = tuple(dotted(b.value) or "" for b in node.bases)
            methods = {s.name.value: s for s in node.body.body if type(s) is cst.FunctionDef}
            self.classes[node.name.value] = ClassInfo(node.name.value, node, bases, methods)
        # A class deriving from a module class of this file is a module too: each class is judged
        # after the classes of this file it derives from (passes over all of them until none
        # changed took minutes on a chain of thousands of subclasses written base last).
        judged: set[int] = set()
        for top in self.classes.values():
            for info in bases_first(top, self.classes, judged):
                judged.add(id(info))
                for base in info.bases:
                    quals = self.imports.qualify_dotted(base)
                    local = self.classes.get(base)
                    if "torch.nn.Module" in quals or (local is not None and local.is_module) or any(
                        (C.short(q) or "")[:1].isupper() or _module_base(q) for q in quals
                    ) or (local is None and _looks_like_module(info)):
                        info.is_module = True
                        info.sequential = "torch.nn.Sequential" in quals or (local is not None and local.sequential)
                        break
        for name, node in tables:
            self._class_table(name, node)

    def _unpacked_constants(self, target: cst.BaseExpression, value: cst.BaseExpression) -> None:
        """`nz, ngf, nc = 100, 64, 3` (the DCGAN tutorial's module constants): each name gets its
        element, the values evaluated before any is bound (`a, b = b, a`)."""
        names = [el.value for el in target.elements] if type(target) in (cst.Tuple, cst.List) else []
        items = [el.value for el in value.elements] if type(value) in (cst.Tuple, cst.List) else []
        if not names or len(names) != len(items) or not all(type(n) is cst.Name for n in names) or any(
                type(el) is cst.StarredElement for el in (*target.elements, *value.elements)):
            for n in names:
                if type(n) is cst.Name:
                    self.constants.pop(n.value, None)  # bound by code the walk does not read
            return
        self.meter.allow()
        values = [self.eval(item, {}) for item in items]
        for n, v in zip(names, values):
            if isinstance(v, (int, float, str, bool)) and not isinstance(v, Sym):
                self.constants[n.value] = v
            else:
                self.constants.pop(n.value, None)

    def _bound_once(self, name: str) -> bool:
        """The file binds `name` once (an indented binding of it, even a function's local, counts)."""
        return count_line_starts(re.compile(rf"{name}\s*(?::[^=\n]*)?=(?!=)"), self.src.text, 2) == 1

    def _class_table(self, name: str, node: cst.BaseExpression) -> None:
        """A module-level dict looked up by a string: of classes (`ACT2CLS = {"silu": nn.SiLU}`,
        then `ACT2CLS[act_fn]()`) or of plain rows (torchvision's `cfgs = {"A": [64, "M", 128,
        ...]}`, then `make_layers(cfgs[cfg])`): kept as a constant when the file binds the name
        once and never changes the dict or a row of it (no item assignment, `del`, `update`,
        `append`...), with its module classes, plain constants and lists of plain constants; any
        other value in it is unknown (`lookup` hands out copies of the rows: the evaluator
        changes a list in place)."""
        text = self.src.text
        # bound once (an indented binding of the name, even a function's local, counts: rare)
        # (each pattern starts with a literal, which re finds fast: gradlint.text)
        if count_line_starts(re.compile(rf"{name}\s*(?::[^=\n]*)?=(?!=)"), text, 2) != 1 or any(
                search_word_start(re.compile(changed), text) for changed in (
                    rf"{name}\s*(\[[^\]\n]*\]\s*(=(?!=)|[-+*/|&^@%]=|\.(append|extend|insert|pop|remove|clear|sort|"
                    rf"reverse)\b)|\|=|\.(update|setdefault|pop|popitem|clear|"
                    rf"__setitem__|__delitem__)\b)", rf"del\s+{name}\b", rf"global\s+{name}\b")):
            return
        self.meter.allow()
        value = self.eval(node, {})
        if not isinstance(value, DictVal) or not value.items:
            return
        # A row is a list that code reached through it may change in place (`row = cfgs["A"];
        # row.append(...)`, `cfgs["A"][1:] = []`, `for row in cfgs.values()`): rows count only
        # when every use of the table is a row passed straight to a call (`make_layers(cfgs[cfg])`).
        rows = _rows_only_passed(name, text)
        items = {k: v if _constant(v) or isinstance(v, ClassRef) or (rows and _plain_row(v)) or _class_row(v)
                 else UNKNOWN for k, v in value.items.items()}
        if any(isinstance(v, ClassRef) or isinstance(v, ListVal) for v in items.values()):
            self.constants[name] = DictVal(items, table=True)

    def items_of(self, v: Any) -> list | None:
        """The items of a list or container, with the runs that undecided branches appended
        resolved by the forward run being lowered; None when they cannot be (in __init__, where
        their number is not known)."""
        items = v.items if isinstance(v, (ListVal, Ctor)) else None
        if items is None or not any(isinstance(i, Alt) and i.splice for i in items):
            return items
        out: list = []
        for i in items:
            if not (isinstance(i, Alt) and i.splice):
                out.append(i)
                continue
            chosen = self.pick(i) if self.pick is not None else NO_CHOICE
            inner = self.items_of(chosen) if chosen is not NO_CHOICE else None
            if inner is None:
                return None
            out.extend(inner)
        return out


# Library base classes that are nn.Modules (LightningModule, Hugging Face PreTrainedModel...).
_MODULE_BASES = ("LightningModule", "PreTrainedModel", "HyperparametersMixin")
_MODULE_PACKAGES = ("lightning", "pytorch_lightning", "transformers", "timm", "torchvision")


def _rows_only_passed(name: str, text: str) -> bool:
    r"""Whether every use of module-level table `name` in `text`, but its one binding, is a row read
    and passed straight to a call (`f(cfgs[cfg], ...)`, `f(x, cfgs["D"])`).

    The counts of `re.findall(rf"(?<![\w.]){name}\b", text)` (uses) and of
    `re.findall(rf"[(,]\s*(?<![\w.]){name}\s*\[[^\[\]\n]*\]\s*[,)]", text)` (rows passed), found
    from each occurrence of the name: a pattern that starts with a lookbehind or a class hides
    its literal from CPython's `re`, which then tries every position of the text (10 ms on a
    timm model file). A row's match, as findall's, cannot start inside the previous one (the
    `,` that ends `(cfgs[a],cfgs[b])`'s first row is not the second's)."""
    uses = passed = 0
    after = 0  # where the last row's match ended
    for found in re.finditer(rf"{name}\b", text):
        start = found.start()
        if start and _IDENT_OR_DOT.match(text, start - 1):
            continue
        uses += 1
        opening = start - 1
        while opening >= 0 and text[opening].isspace():
            opening -= 1
        if opening < after or opening < 0 or text[opening] not in "(,":
            continue
        row = _ROW_TAIL.match(text, found.end())
        if row is not None:
            passed += 1
            after = row.end()
    return uses - 1 == passed


_IDENT_OR_DOT = re.compile(r"[\w.]")
_ROW_TAIL = re.compile(r"\s*\[[^\[\]\n]*\]\s*[,)]")


def _plain_row(v: Any) -> bool:
    """A list of plain constants (a row of a config table: `[64, "M", 128]`), small."""
    return type(v) is ListVal and len(v.items) <= 256 and all(_constant(i) for i in v.items)


def _class_row(v: Any) -> bool:
    """A tuple of module classes and plain constants (timm's `_NORM_MAP = {'layernorm':
    (LayerNorm2d, LayerNorm)}`): no code can change a tuple in place, so it is a row however the
    table is used."""
    return type(v) is ListVal and v.is_tuple and len(v.items) <= 16 and all(
        _constant(i) or isinstance(i, ClassRef) for i in v.items) and any(isinstance(i, ClassRef) for i in v.items)


def _module_base(qualname: str) -> bool:
    head, _, last = qualname.rpartition(".")
    return last in _MODULE_BASES and head.split(".", 1)[0] in _MODULE_PACKAGES


def _looks_like_module(info: "ClassInfo") -> bool:
    """A class whose base comes from another file of the project (`class Net(BaseNet)`): a module
    when it has both __init__ and forward, the shape of every nn.Module."""
    return "forward" in info.methods and "__init__" in info.methods


def _walk_classes(module: cst.Module):
    """(class, nested inside another class) of the module, its top-level ones (also under an
    `if`/`try`) before the nested ones."""
    stack: list = [(n, False) for n in module.body]
    while stack:
        node, nested = stack.pop(0)
        if type(node) is cst.ClassDef:
            yield node, nested
            stack.extend((s, True) for s in node.body.body if type(s) is cst.ClassDef)
        elif type(node) in (cst.If, cst.Try):
            stack.extend((s, nested) for s in node.body.body)


# ---- from interpreted instances to IR ---------------------------------------------------


# ---- entry point ---------------------------------------------------------------------------

def extract(src, configs=None, keep: list | None = None):
    """(networks, class summaries) of one parsed file; `configs` reads config classes of other
    files (source/configs.py). With `keep` (a list), the file's evaluator is not released: a
    configs.FileConfigs over it is appended, which the caller releases when done."""
    from gradlint.facts.files import ClassSummary

    fm = FileModel(src, configs)
    networks: list[Network] = []
    summaries: list = []
    containers: list = []  # (class, its instance, its Lowerer): modules without a forward
    for info in fm.classes.values():
        if not info.is_module:
            summaries.append(ClassSummary(name=info.name, path=src.path, bases=info.bases))
            continue
        cuts = fm.cuts
        fm.meter.allow()
        try:
            inst = fm.instantiate(info, None, {})
            low = Lowerer(fm)
            low.assign_paths(inst.attrs, "", inst.type_inits)
            paths, known, note = low.forward_paths(inst, "")
            if fm.cuts != cuts or fm.meter.exhausted:
                # __init__ was cut short: a half-built model could hold wrong layers or inits
                raise Exhausted()
        except (Exhausted, RecursionError):
            summaries.append(ClassSummary(name=info.name, path=src.path, bases=info.bases, is_module=True))
            continue
        recurrent = bool(low.recurrents)
        # One definition of a transformer block for every rule (gradlint.model.blocks); a forward
        # that could not be followed falls back to counting the blocks the class holds.
        blocks = block_count(paths) if known and paths else _count_blocks(inst, ())
        summaries.append(ClassSummary(name=info.name, path=src.path, bases=info.bases, recurrent=recurrent,
                                      transformer_blocks=blocks, is_module=True))
        networks.append(Network(name=info.name, path=src.path, nodes=tuple(paths[0]) if known and paths else (),
                                origin=src.span(info.node.name), params=tuple(low.params),
                                recurrents=tuple(low.recurrents), forward_known=known,
                                variants=tuple(tuple(p) for p in paths[1:]) if known else (), note=note,
                                signature=_signature(fm, info), containers=tuple(stack_sites(fm, inst))))
        for label, head in (low.heads or () if known else ()):
            # another output of a tuple forward returns (a detector's box head, a critic's value
            # head): a network of its own, so that its layers are read too. Layers it shares
            # with the first output get one finding (architecture.common.flagged_chains); the
            # inventory of parameters stays with the class's network.
            networks.append(Network(name=f"{info.name} ({label})", path=src.path, nodes=tuple(head),
                                    origin=src.span(info.node.name)))
        if not known and fm._find_method(info, "forward") is None and not info.sequential:
            containers.append((info, inst, low))
    from gradlint.source.factories import container_parts, factory_networks

    try:
        networks.extend(container_parts(fm, containers, {n.name: n for n in networks}))
    except (Exhausted, RecursionError):
        pass
    try:
        networks.extend(factory_networks(fm, {n.name: n for n in networks}))
    except (Exhausted, RecursionError):  # too deep for libcst's own code generator, or over budget
        pass
    if keep is not None:
        from gradlint.source.configs import FileConfigs

        keep.append(FileConfigs(fm, release))
    else:
        release(fm)
    return tuple(networks), tuple(summaries)


def release(fm: FileModel) -> None:
    """Free a file's evaluator. Constructors and instances hold each other (Ctor.instance) and
    their FileModel (Instance.fm), and the FileModel holds the file: left as they are, those
    cycles keep the whole syntax tree alive until the cyclic collector runs, which then walks
    every node of it again (4% of the extraction). Emptied (but for the step meter, which tells
    what the file cost), the tree goes when the file's last reference does."""
    for done in (fm._lib, fm):
        if done is not None:
            meter = done.meter
            done.__dict__.clear()
            done.meter = meter


def _signature(fm: FileModel, info: ClassInfo) -> tuple | None:
    """__init__'s parameters as the class's IR was built with them (ir.Network.signature); None
    when a call could pass more than we can compare (`*args`, `**kwargs`, an __init__ not of this
    file)."""
    init = fm._find_method(info, "__init__")
    if init is None:
        own = all("torch.nn.Module" in fm.imports.qualify_dotted(b) for b in info.bases)
        return () if own else None
    ps = init.params
    if type(ps.star_arg) is cst.Param or ps.star_kwarg is not None or ps.posonly_params:
        return None
    out: list = []
    positional = list(ps.params)[1:]
    for i, p in enumerate(positional + list(ps.kwonly_params)):
        if p.default is None:
            # bound to its own name (Sym) unless annotated with a config class of the file
            how, value = ("symbol", None) if fm.config_default(p) is None else ("fixed", None)
        else:
            fm.meter.allow()
            v = fm.eval(p.default, {})
            known = _neutral(v) if _constant(v) or isinstance(v, ClassRef) else ()
            how, value = ("default", known[0]) if known else ("fixed", None)
        out.append((p.name.value, i >= len(positional), how, value))
    return tuple(out)


def _count_blocks(inst: Instance, nodes: tuple) -> int:
    """Transformer blocks a model holds: library layers, plus instances of this file's classes
    that do attention, found in its containers."""
    count = sum(1 for n in nodes if isinstance(n, TransformerBlock))

    def visit(value: Any, seen: set) -> int:
        if not isinstance(value, Ctor) or id(value) in seen:
            return 0
        seen.add(id(value))
        total = 0
        if value.kind == "torch" and value.cls in C.TRANSFORMER_LAYERS and not nodes:
            total += 1
        if value.items is not None:
            for item in value.items:
                if isinstance(item, Ctor) and item.instance is not None and _has_attention(item.instance):
                    total += 1
                else:
                    total += visit(item, seen)
        if value.instance is not None:
            for v in value.instance.attrs.values():
                total += visit(v, seen)
        return total

    seen: set = set()
    return count + sum(visit(v, seen) for v in inst.attrs.values())


def _has_attention(inst: Instance) -> bool:
    for v in inst.attrs.values():
        if isinstance(v, Ctor) and v.kind == "torch" and v.cls in C.ATTENTION_MODULES:
            return True
        if isinstance(v, Ctor) and v.instance is not None and _has_attention(v.instance):
            return True
        if isinstance(v, Ctor) and not _maybe_none(v) and (v.kind in ("local", "unknown") and "attn" in v.cls.lower()
                                                           or "attention" in v.cls.lower()):
            return True
    return False
