"""Numerics and gradient-path facts: def-use of values within functions, call sites, class summaries.

Every function (and the module body) is walked once, statement by statement, with an environment
from local names (and `self.x` attributes set in `__init__`) to an abstract value: "a softmax
output", "a sum of squares", "the output of an instance of class Net", "cut from the graph by
.item()"... Each pattern seen becomes a `Site` named by what it is (a log of a probability, a sqrt
near zero...), with the source pieces a fix would rewrite; the rules decide which to report, word
them and build the fixes. Where the answer depends on another file (what a model's forward
returns), the site names the classes and the run index settles it. Branches merge so that a
hazard must hold on every path (precision first).

This module holds the file's walk (`Extractor`: classes, module scope, callers' values); the
statements of a function walk are `numerics_walk.py`, its expressions `numerics_eval.py`, its
calls `numerics_calls.py`, the hazard sites it records `numerics_sites.py`, its readings of
`x.requires_grad = ...` `requires_grad.py`, and its values (`V`, tensors with properties)
`engine/tensors.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import libcst as cst

from gradlint.facts.numerics import CallText, Expr, Function, NumClass, NumericsFacts, Site
from gradlint.findings import SourceSpan
from gradlint.source.backward_sites import Backwards
from gradlint.source.backwards import (autograd_computed, blocks, communicates, handed_in, not_a_derivative, passes_through,
                                        refuses, straight_through_base, surrogate)
from gradlint.source.gradchecks import class_aliases
from gradlint.source.engine.calls import split as _args
from gradlint.source.engine.tensors import Where, V, UNKNOWN, _TRAINABLE, replace, merge, _passed, passed_tensor, open_value, \
    same
from gradlint.source.engine.walk import children, mentions_any, suite
from gradlint.source.engine.walk import bound_once_at_top
from gradlint.source.engine.walk import walk as walk_nodes
from gradlint.source.module_uses import ModuleUses
from gradlint.source.names import bound_otherwise, dotted, top_level_imports
from gradlint.text import search_word_start
from gradlint.source.numerics_callbacks import CallbackFacts
from gradlint.source.numerics_free import GradFree
from gradlint.source.numerics_defaults import forward_under_defaults, init_defaults, tested_settings
from gradlint.source.numerics_quiet import _data_pipeline, _quiet_class, quiet_function
from gradlint.source.numerics_returns import ReturnedLosses
from gradlint.source.numerics_sequential import sequential_returns
from gradlint.source.numerics_values import ModuleValues
from gradlint.source.numerics_walk import FunctionWalk

AUTOGRAD_FUNCTION = frozenset({"torch.autograd.Function", "torch.autograd.function.Function",
                               "torch.autograd.function.InplaceFunction", "torch.autograd.InplaceFunction"})
_SELF_RG = re.compile(r"self\s*\.\s*requires_grad\b")  # from a word's start: search_word_start
_PROB_NAMES = frozenset(("softmax", "sigmoid"))  # what a function returning probabilities names
_PROB_MODULE_WORDS = re.compile(r"\b(?:Softmax|Sigmoid)\b")  # what a file building such modules names


# torch layers whose __init__ registers `weight` and `bias` as parameters (a subclass reads them
# in its forward without setting them)
_WEIGHTED_LAYERS = frozenset("torch.nn." + n for n in (
    "Linear", "Bilinear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "Embedding", "LayerNorm", "GroupNorm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d"))

# Rounds of walking again the units whose callers' arguments, or the members of the classes they
# read, changed (a chain of calls through this file: one round per link walked before its caller).
MAX_REWALKS = 6


@dataclass
class ClassCtx:
    name: str
    bases: tuple[str, ...]
    module_like: bool
    attrs: dict[str, V] = field(default_factory=dict)
    params: set[str] = field(default_factory=set)  # attributes that are nn.Parameter
    methods: set[str] = field(default_factory=set)
    method_nodes: dict[str, cst.FunctionDef] = field(default_factory=dict)
    returned: dict[str, V | None] = field(default_factory=dict)  # what calling a short method returns
    quiet: bool = False
    # `self.requires_grad` is read back somewhere in the class: a setting of the class's own,
    # not an attempt to freeze the module
    reads_requires_grad: bool = False
    # an nn.Sequential subclass: what its `super().__init__(...)` made, whether its __init__
    # hands its `*modules` on as they are, whether a method changes its modules (numerics_sequential)
    sequential: V | None = None
    hands_modules: bool = False
    changes_modules: bool = False


class Extractor(ModuleValues, Backwards, ReturnedLosses, GradFree):
    """Walks one parsed file and collects Sites, class summaries and gradcheck names."""

    def __init__(self, src, project=None) -> None:
        self.src = src
        # Module constants of other project files (configs.ConfigReader.constant), by what the
        # file's imports make of a name: None for a text with no file (stdin, a notebook).
        self.project = project
        self.imported: dict[tuple[frozenset[str], bool], V | None] = {}
        # expressions whose value nothing reads (an `if`/`while` test, an expression statement:
        # `if is_available():`, `xm.mark_step()`): no other file is read for them
        self.discarded: set[int] = set()
        self.imports = src.imports
        self.sites: list[Site] = []
        self.classes: list[NumClass] = []
        self.gradchecked: set[str] = set()
        self.aliases: list[tuple[str, str]] = []
        self.autograd_classes: set[str] = set()
        # the names each loop of the file binds or changes, by id (FunctionWalk.loop_changed)
        self.loop_names: dict[int, set[str]] = {}
        self.local_classes: set[str] = set()
        # the classes of this file that define `forward` (calling an instance runs it): known
        # before any is walked, for the calls the module body makes (`crit(model, batch)`)
        self.forward_classes: set[str] = set()
        self._seen: set[tuple[str, SourceSpan, str]] = set()
        self.globals: dict[str, V] = {}
        # The plain value of each name the module body binds, joined over its bindings, and the
        # names a function declares `global` (it may rebind them): `_module_value`.
        self.module_values: dict[str, object] = {}
        self.global_names: set[str] = set()
        self.scan_globals = "global" in src.text
        self.steady_dicts: dict[str, bool] = {}  # ModuleValues.steady_dict, by name
        self.registries: dict[str, V | None] = {}  # ModuleValues.registry, by name
        self.callbacks = CallbackFacts()  # forward hooks and applying helpers (numerics_callbacks)
        self.defines_optimizer = False
        self.file_quiet = False
        # Whether the text names `self.requires_grad` at all: the class walk that counts reads
        # and stores of it is skipped for the (many) files that never do.
        # (the substring test first: the expression alone scans the text six times slower)
        self.self_requires_grad = "requires_grad" in src.text and search_word_start(_SELF_RG, src.text) is not None
        self._where: dict[int, Where] = {}  # id(node) -> its Where (which keeps the node alive)
        self.depth = 0  # expression nesting of the evaluation under way (budget.MAX_EXPR_DEPTH)
        # the call graph: functions with their calls, names read as values, the qualified-name
        # prefix of the class or function being walked, the functions being walked
        self.functions: list[Function] = []
        self.references: set[str] = set()
        # classes of this file read as values (`TRAINERS = {"a": Trainer}`, `Trainer.from_config`):
        # their calls are not all known to the callers' join of other files; recorded among the
        # references of the facts, not of this file's own binding (which never counted them)
        self.class_refs: set[str] = set()
        # Names of this file's functions read as values: those read as an argument of a call whose
        # arguments are recorded (`fit(model, data, deviance)`, `fn:deviance` in Call.args: the
        # ids of those Name nodes) and those read any other way (`LOSSES = {"d": deviance}`). A
        # function only ever passed so is called where the callee calls its parameter
        # (NumericsFacts.passed_functions).
        self.fn_args: set[int] = set()
        self.arg_refs: set[str] = set()
        self.free_refs: set[str] = set()
        # (id(function node), parameter) -> whether every read of the parameter in the function is
        # a call of it (numerics_callers._through)
        self.only_called: dict[tuple[int, str], bool] = {}
        self.def_names: set[str] = set()
        self.def_counts: dict[str, int] = {}  # functions of each name, at any level
        # top-level functions whose call is a plain value (`def eps(): return 0.0`), by name:
        # `function_value`; filled once the module body is walked
        self.module_functions: dict[str, cst.FunctionDef] = {}
        self.function_values: dict[str, V | None] = {}
        # short top-level functions that return a probability, by name: `function_returns`
        self.function_probs: dict[str, V | None] = {}
        self.ref_names: frozenset[str] = frozenset()
        self.callees: set[int] = set()
        self.path: list[str] = []
        self.walking: list[str] = []
        # What callers pass (issue 9, calls): a function or method of this file whose parameter is a
        # model or a criterion is walked with what its callers in this file pass, joined over them
        # (unknown when they disagree or when there is none; a constructor default when none
        # passes it). Walked units (top-level functions and classes) are walked again until the
        # arguments they were walked with settle.
        self.passed: dict[str, dict[int, list[tuple[list[V], dict[str, V], bool]]]] = {}
        # While a unit is walked again: its new records of what it passes, kept aside until the walk
        # ends, so that its own functions are walked with what its previous walk passed them (a
        # method called by a later method of its class: with its records dropped first, the
        # callee was walked unbound every time, and the unit was walked MAX_REWALKS times for
        # nothing).
        self.fresh: dict[str, list[tuple[list[V], dict[str, V], bool]]] | None = None
        self.signatures: dict[str, tuple[tuple[str, ...], tuple[str, ...], dict[str, V], int]] = {}
        self.walked_with: dict[str, dict[str, V]] = {}
        self.class_attrs: dict[str, dict[str, V]] = {}  # top-level class -> what its __init__ sets
        self.class_ctxs: dict[str, ClassCtx] = {}  # top-level class -> its context, once walked
        self.unit = 0  # id of the top-level def being walked (0: the module body)
        # the returns of each top-level function in its last walk ((tuple parts or None, value)),
        # and the backward calls of values they gave ((name, element), span, text): _cut_returns
        self.returns_of: dict[str, list[tuple[list | dict | None, V]]] = {}
        self.backpropagated: list[tuple[tuple[str, int], Any, str]] = []
        # per unit: the outputs of class instances it backpropagates (NumericsFacts.backpropagated_outputs)
        self.backprop_outputs: dict[int, set[tuple[str, int]]] = {}
        self.attrs_set: set[str] = set()  # assigned on objects other than self (NumericsFacts.attrs_set)
        self.units: dict[int, tuple[cst.CSTNode, list, list, list]] = {}
        self.stale: set[int] = set()  # units that read a class's members before it was walked
        self.member_misses = 0  # how many times (function_returns: a value read too early is not kept)
        # top-level class -> the units that read members of its instances (walked again when the
        # class's members change)
        self.member_readers: dict[str, set[int]] = {}
        # top-level defs a later one of the same name replaces: no caller's arguments reach them
        self.shadowed: set[int] = set()
        self.subclassed: set[str] = set()  # classes of this file another class of it derives from
        self.calling: dict[int, cst.Call] = {}  # id(callee expression) -> its call
        self.muted = 0  # evaluating a method's returns ahead of its turn (method_returns): no sites
        # Parameters no caller of this file binds (functions and methods, `__init__`'s included:
        # `self.criterion = criterion` keeps the value), by the identity of the fresh value that
        # stands for each: id -> (value, function, parameter, position after self or -1). A site
        # on one names it, and the rules join what the project's callers pass.
        self.open_params: dict[int, tuple[V, str, str, int]] = {}
        # values that select or reshape an open parameter, with its record (derived_param)
        self.open_derived: dict[int, tuple[V, str, str, int]] = {}
        # of those, the ones that only select or reshape it (`input.transpose(1, 2).view(1, -1)`,
        # `p[:, 0]`): each element is one the callers passed, so what they passed (a sigmoid
        # output...) it still is (kept_param)
        self.open_kept: dict[int, tuple[V, str, str, int]] = {}
        # values computed from several open parameters of one function (`pred @ target.T`), with
        # the function and each parameter's (name, position): a hazard on one holds when every
        # caller passes, for one of them, a tensor that carries gradient (derived_params)
        self.open_multi: dict[int, tuple[V, str, tuple[tuple[str, int], ...]]] = {}
        # one element of an open parameter unpacked (`xy, wh, obj, cls = preds`): the parameter
        # as in open_params, and the element's index (only sites on tensors read these)
        self.open_elems: dict[int, tuple[V, str, str, int, int]] = {}
        self.default_params: dict[int, tuple[V, str, str, int]] = {}  # the same, for a default (binding)
        self._codes: dict[int, tuple[cst.CSTNode, str]] = {}  # id(node) -> (it, its code): code()
        # id(function) -> (it, the names it trains): numerics_calls._trained, once per function
        self.trained: dict[int, tuple[cst.FunctionDef, frozenset[str]]] = {}
        # GL403's reads, made once (and only for a forward that cuts something): id(class context)
        # -> (it, what module_uses read); what the file runs on other receivers than `self`
        # (module_uses.outside_runs); the file's top-level classes by name (a class's bases)
        self.module_uses: dict[int, tuple[ClassCtx, ModuleUses]] = {}
        self.outside_runs: set[str] | None = None
        self.top_classes: dict[str, cst.ClassDef] | None = None
        self._init_free()

    # -- helpers -----------------------------------------------------------------------------
    def q(self, expr: cst.BaseExpression) -> frozenset[str]:
        return self.imports.qualify(expr)

    def span(self, node: cst.CSTNode) -> SourceSpan:
        return self.src.span(node)

    def where(self, node: cst.CSTNode) -> Where:
        """The node's lazy position, one per node (so that sets of them compare by node)."""
        found = self._where.get(id(node))
        if found is None:
            found = self._where[id(node)] = Where(self.src, node)
        return found

    def code(self, node: cst.CSTNode) -> str:
        # once per node: the sites and call texts of a unit walked again generate it again
        known = self._codes.get(id(node))
        if known is not None and known[0] is node:
            return known[1]
        try:
            text = self.src.code(node).strip()
        except Exception:
            text = ""
        self._codes[id(node)] = (node, text)
        return text

    def add(self, site: Site) -> None:
        if self.muted:
            return
        if not site.function and self.walking:
            site = replace(site, function=self.walking[-1])
        key = (site.kind, site.span, site.variant)
        if key not in self._seen:
            self._seen.add(key)
            self.sites.append(site)

    def expr(self, node: cst.BaseExpression) -> Expr:
        return Expr(self.span(node), self.code(node), atom=not _wraps(node), sum_safe=not _needs_parens(node))

    def call_text(self, call: cst.Call) -> CallText:
        func = call.func
        pos, _ = _args(call)
        attribute = type(func) is cst.Attribute
        return CallText(self.span(call), self.expr(func), resolved=bool(self.q(func)),
                        receiver=self.expr(func.value) if attribute else None,
                        name_span=self.span(func.attr) if attribute else None,
                        args=_args_text(self, call), nargs=len(call.args),
                        only=self.expr(pos[0]) if len(call.args) == 1 and pos else None)

    def torch_imports(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """The names of torch modules and functions a fix may write anywhere in the file: bound
        by an import at the module's top level, to one thing, and by no assignment. The file's import table
        holds every import, wherever it is: a fix once wrote `F.logsigmoid` where `F` was
        imported only inside another function, under `if TYPE_CHECKING:` or `__main__`, or where
        a local `B, F = x.shape` hid it."""
        top = top_level_imports(self.src.positions._cpython_tree())
        out = []
        for local, targets in sorted(self.imports.names.items()):
            torch = tuple(sorted(t for t in targets if t == "torch" or t.startswith("torch.")))
            # (one target: an import elsewhere of the same name binding another thing shadows it)
            if torch and top.get(local, 0) and len(targets) == 1 and not bound_otherwise(self.src.text, local):
                out.append((local, torch))
        return tuple(out)

    # -- driver ------------------------------------------------------------------------------
    def run(self) -> NumericsFacts:
        module = self.src.module
        self._prescan(module)
        self.ref_names = frozenset(self.def_names | set(self.imports.names))
        self.file_quiet = _data_pipeline(self.src.path) or self.defines_optimizer
        top = FunctionWalk(self, "<module>", None, quiet=self.file_quiet, globals_={})
        # RecursionError: a statement nested too deep for libcst's own recursive code (positions,
        # visitors); what it held is not followed, the rest of the file is.
        try:
            top.walk(module.body)
        except RecursionError:
            self.depth = 0
        self.functions.append(Function("<module>", calls=tuple(top.calls)))
        # Functions and classes after the module body: a model or criterion defined below a
        # function is still the global that function uses.
        self.globals = {k: self._module_value(k, v) for k, v in top.env.items() if "." not in k}
        self.module_functions = {n.name.value: n for n in top.module_defs if type(n) is cst.FunctionDef}
        last = {n.name.value: id(n) for n in top.module_defs}
        self.shadowed = {id(n) for n in top.module_defs if last[n.name.value] != id(n)}
        # Last to first: a file's callers are mostly below what they call (timm's `vit_base()`
        # below `_create_vision_transformer()` below `VisionTransformer` below `Block`), so each
        # unit's first walk mostly sees what its callers pass already. In file order, _settle
        # walked 830 units of timm + torchvision again (97% to the same facts); in this one, 197.
        for node in reversed(top.module_defs):
            self._walk_unit(node)
        for node in top.module_defs:
            if type(node) is cst.FunctionDef:
                top._record_wrapper(node)
        self._settle()
        for _node, sites, classes, functions in (self.units[id(n)] for n in top.module_defs):
            self.sites.extend(sites)
            self.classes.extend(classes)
            self.functions.extend(functions)
        self._cut_returns()
        self.aliases.extend(class_aliases(self.src.module, self.autograd_classes, self.aliases))
        # (the instances' calls are only known once every unit is walked)
        self.classes = [replace(c, forward_called=True) if self.passed.get(c.name + ".forward") else c
                        for c in self.classes]
        return NumericsFacts(sites=tuple(self.sites), classes=tuple(self.classes),
                             function_probs=self._function_probs(top),
                             function_modules=self._function_modules(top),
                             criteria=self._criteria(top),
                             gradchecked=frozenset(self.gradchecked), apply_aliases=tuple(self.aliases),
                             torch_imports=self.torch_imports(),
                             functions=tuple(self.functions),
                             references=frozenset(self.references | self.class_refs),
                             backpropagated_outputs=tuple(sorted(set().union(*self.backprop_outputs.values()),
                                                                 key=lambda e: (e[0], str(e[1])))),
                             attrs_set=frozenset(self.attrs_set),
                             passed_functions=frozenset(self.arg_refs - self.free_refs))

    def _function_probs(self, top: FunctionWalk) -> tuple[tuple[str, str], ...]:
        """The top-level functions every return of which is a softmax or sigmoid output, not
        eps-shifted, of a model they are given (`def predict(model, x): return
        torch.sigmoid(model(x))`: a parameter called), for callers in other files
        (NumericsFacts.function_probs). Only functions that name one are read."""
        out: list[tuple[str, str]] = []
        if "softmax" not in self.src.text and "sigmoid" not in self.src.text:
            return ()  # (a walk of every function of every file cost 2% of the extraction)
        for name, fn in self.module_functions.items():
            if id(fn) in self.shadowed or not mentions_any(fn, _PROB_NAMES):
                continue
            if not _calls_a_parameter(fn):
                continue  # `def soft_labels(scores): return softmax(scores)`: of data as likely as of a model
            made = top.function_returns(name)
            if made is not None and made.prob in ("softmax", "sigmoid") and not made.shifted and not made.nograd:
                out.append((name, made.prob))
        return tuple(sorted(out))

    def _criteria(self, top: FunctionWalk) -> tuple[tuple[str, str], ...]:
        """Module-level names bound once to a criterion (NumericsFacts.criteria)."""
        found = [(k, v.crit) for k, v in top.env.items() if "." not in k and type(v) is V and v.crit]
        if not found:
            return ()
        once = bound_once_at_top(self.src.module)
        return tuple(sorted((k, crit) for k, crit in found if k in once))

    def _function_modules(self, top: FunctionWalk) -> tuple[tuple[str, str], ...]:
        """The top-level functions every return of which is a module whose call gives a
        probability (`return nn.Sequential(..., nn.Sigmoid())`), for callers in other files
        (NumericsFacts.function_modules). Only files that name such a module are read."""
        if not _PROB_MODULE_WORDS.search(self.src.text):
            return ()
        out: list[tuple[str, str]] = []
        for name, fn in self.module_functions.items():
            if id(fn) in self.shadowed:
                continue
            made = top.function_returns(name)
            if made is not None and made.module and made.callret in ("softmax", "sigmoid") and not made.inst:
                out.append((name, made.callret))
        return tuple(sorted(out))

    def _walk_unit(self, node: cst.FunctionDef | cst.ClassDef) -> None:
        """Walk one top-level def into its own lists of facts (replacing those of an earlier walk)."""
        key = id(node)
        if type(node) is cst.FunctionDef:
            self.returns_of.pop(node.name.value, None)  # (this walk's returns replace an earlier one's)
        else:
            for method in [k for k in self.returns_of if k.startswith(node.name.value + ".")]:
                # (and its methods'; kept aside for a method called before its def: method_free)
                self.prev_returns[method] = self.returns_of.pop(method)
        old = self.units.get(key)
        if old is not None:
            self._seen.difference_update((s.kind, s.span, s.variant) for s in old[1])
        self.backprop_outputs.pop(key, None)  # (this walk's replace an earlier one's)
        saved = self.sites, self.classes, self.functions, self.unit, self.fresh
        self.sites, self.classes, self.functions, self.unit = [], [], [], key
        self.fresh = {} if old is not None else None
        try:
            if type(node) is cst.ClassDef:
                self.walk_class(node, False)
            else:
                FunctionWalk(self, node.name.value, None,
                             quiet=self.file_quiet or quiet_function(node.name.value)).run_function(node)
        except RecursionError:
            self.depth = 0
        finally:
            self.units[key] = (node, self.sites, self.classes, self.functions)
            fresh = self.fresh  # (method_returns may have put a copy in its place)
            self.sites, self.classes, self.functions, self.unit, self.fresh = saved
            if fresh is not None:
                for by_unit in self.passed.values():
                    by_unit.pop(key, None)
                for qual, calls in fresh.items():
                    self.passed.setdefault(qual, {})[key] = calls

    def _settle(self) -> None:
        """Walk again the units whose functions were walked with other arguments than their callers
        pass (a caller walked after its callee, a chain of calls), and those that read members of a
        class before the class was walked or before its members changed, a few rounds at most:
        until nothing changes, whatever order the first walks took."""
        stale = set(self.stale)
        for _ in range(MAX_REWALKS):
            for qual, sig in self.signatures.items():
                if self.binding(qual) != self.walked_with.get(qual, {}):
                    stale.add(sig[3])
            if not stale:
                return
            self.stale = set()
            before = dict(self.class_attrs)  # (a walk of a class makes a new dict of its members)
            for key in [k for k in self.units if k in stale]:
                self._walk_unit(self.units[key][0])
            stale = set(self.stale)
            for cls, attrs in self.class_attrs.items():
                if not _same_members(before.get(cls), attrs):
                    stale |= self.member_readers.get(cls, set())

    def binding(self, qual: str) -> dict[str, V]:
        """What each parameter of function `qual` is, joined over the calls of this file: only
        models and criteria (anything else stays unknown, as before)."""
        sig = self.signatures.get(qual)
        if sig is None:
            return {}
        positional, kwonly, defaults, unit = sig
        head, _, name = qual.rpartition(".")
        if (head if name == "__init__" else name) in self.references or head in self.subclassed:
            return {}  # passed around as a value, or a subclass's `super()` calls: callers not all known
        calls = [c for by_unit in self.passed.get(qual, {}).values() for c in by_unit]
        out: dict[str, V] = {}
        for i, p in enumerate(positional + kwonly):
            joined: V | None = None
            passed = False
            for pos, kw, star in calls:
                if i < len(positional) and i < len(pos):
                    v = pos[i]
                elif p in kw:
                    v = kw[p]
                else:
                    v = UNKNOWN if star else defaults.get(p, UNKNOWN)
                    joined = v if joined is None else merge(joined, v)
                    continue
                if self._recursive(v, qual, unit):
                    continue  # what the function (or one it calls) passes back of its own parameter
                passed = True
                joined = v if joined is None else merge(joined, v)
            if joined is None:
                joined = defaults.get(p, UNKNOWN)
            joined = passed_tensor(joined)
            if joined is not UNKNOWN:
                if not passed and joined.crit and p in defaults:
                    # the constructor default, which a caller in another file may replace: the
                    # value's identity names the parameter (Extractor.default_param)
                    self.default_params[id(joined)] = (joined, qual, p, positional.index(p) if p in positional else -1)
                out[p] = joined
        return out

    def _recursive(self, v: V, qual: str, unit: int) -> bool:
        """Whether `v` is the open parameter of `qual` itself, or of a function that `qual`'s unit
        calls (a recursion through one other function, `even`/`odd`): it stands for what the
        callers pass, which the other calls give; joined, it would keep the parameter open."""
        ref = self.open_params.get(id(v))
        if ref is None or ref[0] is not v:
            return False
        return ref[1] == qual or unit in self.passed.get(ref[1], {})

    def default_param(self, v: V) -> tuple[str, str, int] | None:
        """(function, parameter, position) when `v` is a criterion parameter's constructor default
        that no call of this file replaces."""
        got = self.default_params.get(id(v))
        return got[1:] if got is not None and got[0] is v else None

    def open_param(self, v: V) -> tuple[str, str, int] | None:
        """(function, parameter, position) when `v` is the value of an open parameter."""
        got = self.open_params.get(id(v))
        return got[1:] if got is not None and got[0] is v else None

    def derived_param(self, v: V) -> tuple[str, str, int] | None:
        """`open_param`, or the open parameter `v` is computed from (derive_from)."""
        got = self.open_params.get(id(v)) or self.open_derived.get(id(v))
        return got[1:] if got is not None and got[0] is v else None

    def derived_params(self, v: V) -> tuple[str, tuple[tuple[str, int], ...]] | None:
        """(function, ((parameter, position), ...)) of the open parameters `v` is computed from:
        one (derived_param) or several of one function."""
        one = self.derived_param(v)
        if one is not None:
            return one[0], ((one[1], one[2]),)
        got = self.open_multi.get(id(v))
        return got[1:] if got is not None and got[0] is v else None

    def kept_param(self, v: V) -> tuple[str, str, int] | None:
        """`open_param`, or the open parameter `v` selects or reshapes (derive_from's `kept`)."""
        got = self.open_params.get(id(v)) or self.open_kept.get(id(v))
        return got[1:] if got is not None and got[0] is v else None

    def same_origin(self, old: V, new: V) -> V:
        """`new`, a copy of `old` with another fact, computed from what `old` was (derive_from)."""
        for table in (self.open_derived, self.open_kept, self.open_multi, self.free_of):
            got = table.get(id(old))
            if got is not None and got[0] is old:
                table[id(new)] = (new, *got[1:])
        return new

    def derive_from(self, operands: list, result: V, kept: bool = False) -> V:
        """`result`, computed from `operands`: of the open parameter every operand that is not a
        constant is of (a selection or reshape of it, `inp[:, 0].double()`; arithmetic on such
        values, `(a11 - q) * a22 / p` with each a column of one parameter); none else. `kept`:
        `result` selects or reshapes `operands[0]`, the others are sizes and indices. And
        grad-free where they all are (numerics_free)."""
        if self.open_params:
            result = self._derive_from(operands, result, kept)
        if self.open_params or self.free_of:
            result = self.free_through(operands, result, kept=kept)
        return result

    def _derive_from(self, operands: list, result: V, kept: bool) -> V:
        if kept and result is not operands[0] and (ref := self.kept_param(operands[0])) is not None:
            if result is UNKNOWN:
                result = open_value()
            self.open_kept[id(result)] = (result, *ref)
        functions: set[str] = set()
        params: set[tuple[str, int]] = set()
        for v in operands:
            if v is UNKNOWN or v.const or v.cut is not None:
                if v is UNKNOWN:
                    return result  # (something nothing is known of takes part)
                continue
            got = self.derived_params(v)
            if got is None:
                return result
            functions.add(got[0])
            params.update(got[1])
        if len(functions) != 1 or not params or result is operands[0]:
            return result
        if result is UNKNOWN:
            # nothing known of it but where it comes from: a value of its own (the one bottom,
            # so marked, would make every unknown value of the file this parameter's)
            result = open_value()
        if len(params) == 1:
            (name, at), = params
            self.open_derived[id(result)] = (result, functions.pop(), name, at)
        else:
            self.open_multi[id(result)] = (result, functions.pop(), tuple(sorted(params)))
        return result

    def open_elem(self, v: V) -> tuple[tuple[str, str, int], int] | None:
        """((function, parameter, position), index) when `v` is an element unpacked from an open
        parameter (`xy, wh, obj, cls = preds`)."""
        got = self.open_elems.get(id(v))
        return (got[1:4], got[4]) if got is not None and got[0] is v else None

    def member(self, cls: str, attr: str) -> V | None:
        """A submodule (`encoder`) of an instance of a top-level class of this file, as its
        __init__ sets it; None when unknown or not a module."""
        if cls not in self.local_classes:
            return None
        if not self.path or self.path[0] != cls:
            self.member_readers.setdefault(cls, set()).add(self.unit)
        attrs = self.class_attrs.get(cls)
        if attrs is None:
            self.stale.add(self.unit)
            self.member_misses += 1
            return None
        v = attrs.get(attr)
        return _passed(v) if v is not None and (v.module or v.inst) else None

    def _prescan(self, module: cst.Module) -> None:
        """Class names and autograd Functions of this file, before any function is walked.

        Walks statements only (a full visitor over every expression costs more than the rest of
        the extraction)."""
        stack: list[cst.CSTNode] = list(module.body)
        derived: dict[str, tuple[str, ...]] = {}  # classes of the file by their bases
        while stack:
            node = stack.pop()
            if type(node) is cst.FunctionDef:
                self.def_names.add(node.name.value)
                self.def_counts[node.name.value] = self.def_counts.get(node.name.value, 0) + 1
            if type(node) is cst.ClassDef:
                self.local_classes.add(node.name.value)
                if any(type(m) is cst.FunctionDef and m.name.value == "forward" for m in suite(node.body)):
                    self.forward_classes.add(node.name.value)
                bases = self.base_names(node)
                if any(b.startswith("torch.optim.") for b in bases):
                    self.defines_optimizer = True
                if any(b in AUTOGRAD_FUNCTION or (b.startswith("torch.") and b.endswith("Function")) for b in bases):
                    self.autograd_classes.add(node.name.value)
                else:
                    derived[node.name.value] = bases
            if type(node) is cst.SimpleStatementLine:
                if self.scan_globals:
                    for small in node.body:
                        if type(small) is cst.Global:
                            self.global_names.update(n.name.value for n in small.names)
                continue
            body = getattr(node, "body", None)
            if type(body) is cst.IndentedBlock:
                stack.extend(body.body)
            elif isinstance(body, (list, tuple)):
                stack.extend(body)
            for extra in ("orelse", "finalbody"):
                sub = getattr(node, extra, None)
                if sub is not None and isinstance(getattr(sub, "body", None), cst.IndentedBlock):
                    stack.extend(sub.body.body)
                elif type(sub) is cst.If:
                    stack.append(sub)
            for h in getattr(node, "handlers", ()) or ():
                if type(h.body) is cst.IndentedBlock:
                    stack.extend(h.body.body)
        # a subclass of a Function of the file is one too (`class SparsemaxLossFunction(
        # _GenericLossFunction)`: entmax), in whatever order the file defines them
        grown = True
        while grown:
            more = {c for c, bases in derived.items() if c not in self.autograd_classes and
                    any(b in self.autograd_classes for b in bases)}
            self.autograd_classes |= more
            grown = bool(more)

    def base_names(self, node: cst.ClassDef) -> tuple[str, ...]:
        out = []
        for arg in node.bases:
            q = self.q(arg.value)
            if q:
                out.extend(sorted(q))
            else:
                d = dotted(arg.value)
                if d:
                    out.append(d)
        return tuple(out)

    def walk_class(self, node: cst.ClassDef, parent_quiet: bool) -> None:
        self.path.append(node.name.value)
        try:
            self._walk_class(node, parent_quiet)
        finally:
            self.path.pop()

    def _walk_class(self, node: cst.ClassDef, parent_quiet: bool) -> None:
        bases = self.base_names(node)
        self.subclassed.update(b for b in bases if b in self.local_classes)
        name = node.name.value
        module_like = any(b.startswith("torch.nn.") or "Module" in b or "Model" in b or "Layer" in b
                          or "Block" in b or "Net" in b for b in bases)
        ctx = ClassCtx(name=name, bases=bases, module_like=module_like,
                       quiet=parent_quiet or self.file_quiet or _quiet_class(name))
        methods = [s for s in node.body.body if type(s) is cst.FunctionDef]
        ctx.methods = {m.name.value for m in methods}
        ctx.method_nodes = {m.name.value: m for m in methods}
        ctx.reads_requires_grad = self.self_requires_grad and _reads_self_requires_grad(node)
        is_function = name in self.autograd_classes
        if is_function:
            # autograd does not trace inside a Function's forward/backward
            ctx.quiet = True
        # __init__ first: it defines the attributes (criteria, submodules) other methods use.
        setup = [m for m in methods if m.name.value in ("__init__", "setup", "build", "_build")]
        for m in setup:
            walk = FunctionWalk(self, m.name.value, ctx, quiet=True)
            walk.run_function(m)
            ps = m.params
            # (a parameter its callers pass, `self.scale = scale`, is theirs: not one of this class's)
            passed = [walk.env.get(p.name.value) for p in (*ps.posonly_params, *ps.params, *ps.kwonly_params)]
            for key, val in walk.env.items():
                if key.startswith("self.") and key.count(".") == 1:
                    # a plain value set in __init__ may be set again anywhere (`model.eps = 0.1`):
                    # other methods do not read it as a constant
                    ctx.attrs[key[5:]] = replace(val, value=UNKNOWN) if val.value is not UNKNOWN else val
                    if val.leaf and val.params and val.tensor and not val.module and not any(val is v for v in passed):
                        ctx.params.add(key[5:])
            if len(self.path) == 1:
                self.note_init_attrs(name, walk.env, methods, setup)
        if any(b in _WEIGHTED_LAYERS for b in bases):
            # a subclass of a torch layer (weight standardisation's `class WSConv2d(nn.Conv2d)`):
            # the layer's own __init__ made `self.weight` and `self.bias` its parameters
            for tensor in ("weight", "bias"):
                if tensor not in ctx.attrs:
                    ctx.attrs[tensor] = _TRAINABLE
                    ctx.params.add(tensor)
        if len(self.path) == 1:
            self.class_attrs[name] = ctx.attrs
            self.class_ctxs[name] = ctx
        returns: list[V] = []
        items: tuple[str | None, ...] = ()
        has_forward = False
        for m in methods:
            if m in setup:
                continue
            walk = FunctionWalk(self, m.name.value, ctx, quiet=ctx.quiet or quiet_function(m.name.value))
            walk.computes_gradient = is_function and m.name.value == "backward"
            walk.run_function(m)
            if m.name.value == "forward" and not is_function:
                has_forward = True
                returns = walk.returns
                items = _returned_items(walk)
                walk.check_forward_output()
                if len(self.path) == 1:
                    self._returned_cuts(name, walk)
        # nested classes
        for stmt in node.body.body:
            if type(stmt) is cst.ClassDef:
                self.walk_class(stmt, ctx.quiet)
        kind = None
        via: tuple[str, ...] = ()
        if returns and not any(r is None for r in returns):
            kinds = {r.prob for r in returns}
            if len(kinds) == 1:
                kind = kinds.pop()
            if kind is None:
                outs = [r.out for r in returns]
                if all(outs):
                    common = frozenset.intersection(*outs)
                    via = tuple(sorted(common))
        assuming: tuple[tuple[str, int, str, str], ...] = ()
        if kind is None and not via and has_forward and len(self.path) == 1 and not node.decorators:
            # `if self.method == 'multiclass': out = softmax(out)`: what it returns under the
            # constructor's defaults, believed while no caller passes another (numerics_defaults);
            # not for a decorated class (a registry builds it from a config) nor when another
            # method tests the setting too (a use on the other path: `if self.method ==
            # 'multiclass': return ...` then `cross_entropy(self.forward(x), y)`)
            init = ctx.method_nodes.get("__init__")
            forward = ctx.method_nodes["forward"]
            defaults = init_defaults(init, methods, tested_settings(forward)) if init is not None else {}
            if defaults:
                kind, assuming = forward_under_defaults(FunctionWalk, self, ctx, forward, defaults)
                attrs = {a[3] for a in assuming}
                if any(attrs & tested_settings(m) for m in methods if m.name.value not in ("__init__", "forward")):
                    kind, assuming = None, ()
        if not has_forward and kind is None:
            kind = sequential_returns(ctx)  # `class Head(nn.Sequential)`: its last module's output
        custom_backward = False
        if is_function:
            # a straight-through, gradient-scaling or surrogate backward is no derivative to
            # gradcheck, nor one that only raises or is handed its derivative (a callable kept on
            # ctx, a dispatched op), and a collective's needs a process group
            fwd = next((m for m in methods if m.name.value == "forward"), None)
            # (with a setup_context, the forward takes no ctx: its first parameter is an input)
            ctx_less = any(m.name.value == "setup_context" for m in methods)
            custom_backward = any(m.name.value == "backward" and not not_a_derivative(fwd, m, ctx_less)
                                  and not surrogate(fwd, m, ctx_less, self.q) and not autograd_computed(m, self.q)
                                  and not handed_in(fwd, m, self.q)
                                  and not refuses(m) and not blocks(m, self.q) and not passes_through(fwd, m, self.q)
                                  and not (fwd is None and straight_through_base(self.src.module, name, m)) for m in methods) \
                and not communicates(methods, self.q, self.module_functions)
            for m in methods:
                if m.name.value == "backward":
                    self.check_backward(node, m, fwd, ctx_less)
        self.classes.append(NumClass(name=name, span=self.span(node.name), bases=bases,
                                     has_forward=has_forward, returns=kind, returns_via=via, returns_items=items,
                                     autograd_function=is_function, custom_backward=custom_backward,
                                     returns_assuming=assuming, getters=_getters(methods),
                                     forward_params=_positional_after_self(ctx.method_nodes.get("forward"))))


def _positional_after_self(method: cst.FunctionDef | None) -> tuple[str, ...]:
    """The names of a method's positional parameters after `self` (none for a static method)."""
    if method is None or any(dotted(d.decorator) == "staticmethod" for d in method.decorators):
        return ()
    ps = method.params
    return tuple(p.name.value for p in [*ps.posonly_params, *ps.params][1:])


def _getters(methods: list[cst.FunctionDef]) -> tuple[tuple[str, str], ...]:
    """(method, attribute path) of the methods whose body is one `return self.a.b` and that take
    nothing but `self` (no decorator: a property or a cached method is not called so)."""
    out = []
    for m in methods:
        body = suite(m.body)
        ps = m.params
        if m.decorators or len(body) != 1 or len(ps.params) != 1 or ps.posonly_params or ps.kwonly_params \
                or ps.star_arg not in (None, cst.MaybeSentinel.DEFAULT) or ps.star_kwarg is not None:
            continue
        line = body[0]
        if type(line) is not cst.SimpleStatementLine or len(line.body) != 1 or \
                type(line.body[0]) is not cst.Return:
            continue
        text = dotted(line.body[0].value) if line.body[0].value is not None else None
        if text and text.startswith("self."):
            out.append((m.name.value, text[5:]))
    return tuple(out)


def _returned_items(walk: FunctionWalk) -> tuple[str | None, ...]:
    """Per element, the probability kind a forward returns when it returns a tuple of one length on
    every path (`return validity, label`); () otherwise or when no element is a probability."""
    nodes = walk.return_nodes
    if not nodes or len(nodes) != len(walk.returns):
        return ()
    vals = [walk.memo.get(id(n.value)) for n in nodes]
    if any(v is None or v.elems is None or len(v.elems) != len(vals[0].elems) for v in vals):
        return ()
    items = []
    for i in range(len(vals[0].elems)):
        kinds = {v.elems[i].prob for v in vals}
        items.append(kinds.pop() if len(kinds) == 1 else None)
    return tuple(items) if any(items) else ()


def _reads_self_requires_grad(cls: cst.ClassDef) -> bool:
    """More `self.requires_grad` reads than assignments to it: the class uses the attribute as
    a setting of its own (`self.requires_grad = flag` is then no module attribute mistake). A
    plain walk: libcst's visitor rebuilds every node it passes, 0.1 s per large class."""
    uses = stores = 0
    stack: list = [cls]
    while stack:
        n = stack.pop()
        if type(n) is cst.Attribute and n.attr.value == "requires_grad" and \
                type(n.value) is cst.Name and n.value.value == "self":
            uses += 1
        elif type(n) is cst.AssignTarget and type(n.target) is cst.Attribute and \
                n.target.attr.value == "requires_grad" and type(n.target.value) is cst.Name and \
                n.target.value.value == "self":
            stores += 1
        stack.extend(children(n))
    return uses > stores


def _args_text(x: Extractor, call: cst.Call) -> str:
    parts = []
    for a in call.args:
        text = x.code(a.value)
        if a.keyword is not None:
            text = f"{a.keyword.value}={text}"
        elif a.star:
            text = f"{a.star}{text}"
        parts.append(text)
    return ", ".join(parts)


def _needs_parens(node: cst.BaseExpression) -> bool:
    if node.lpar:
        return False
    if isinstance(node, cst.Name | cst.Attribute | cst.Call | cst.Subscript | cst.Integer | cst.Float):
        return False
    if type(node) is cst.BinaryOperation and isinstance(
            node.operator, cst.Add | cst.Subtract | cst.Multiply | cst.Divide | cst.Power | cst.FloorDivide):
        return False
    return True


def _wraps(node: cst.BaseExpression) -> bool:
    """Whether the expression needs parentheses as an operand (of a unary minus)."""
    return not (isinstance(node, cst.Name | cst.Attribute | cst.Call | cst.Subscript) or node.lpar)


def extract(src, project=None) -> NumericsFacts:
    """Numerics facts of one parsed file (gradlint.source.SourceFile); `project`: the reader of
    other files of its project (configs.ConfigReader), for the constants it imports."""
    return Extractor(src, project).run()


def _same_members(old: dict | None, new: dict) -> bool:
    """Whether a class walked again sets the same members (by value; a fresh open value each walk
    compares equal to the last one)."""
    if old is None or old.keys() != new.keys():
        return False
    return all(same(old[k], new[k]) for k in old)


# A parameter named as a model is (`model`, `net`, `teacher`, `backbone`, `m`): a callback or a
# transform (`encode`, `fn`) may be called as well, and its output is as likely data
_MODEL_PARAM = re.compile(r"(^|_)(model|net|network|module|teacher|student|encoder|decoder|backbone|classifier|"
                          r"policy|actor|critic|discriminator|generator|m)($|_|\d)", re.IGNORECASE)


def _calls_a_parameter(fn: cst.FunctionDef) -> bool:
    """Whether `fn` calls one of its parameters named as a model (`model(x)`, `model.forward(x)`,
    `model.head(feats)`): a model it is given."""
    ps = fn.params
    names = {p.name.value for p in (*ps.posonly_params, *ps.params, *ps.kwonly_params) if _MODEL_PARAM.search(p.name.value)}
    for n in walk_nodes(fn.body):
        if type(n) is cst.Call:
            func = n.func
            while type(func) is cst.Attribute:
                func = func.value  # `model.forward(x)`, `model.head(x)`, `model.module(x)`
            if type(func) is cst.Name and func.value in names:
                return True
    return False

