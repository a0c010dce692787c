"""Numerics and gradient-path facts: def-use of values within functions, call sites, class summaries.

Every function (and the module body) is walked once, statement by statement, with an environment
from local names (and `self.x` attributes set in `__init__`) to an abstract value: "a softmax
output", "a sum of squares", "the output of an instance of class Net", "cut from the graph by
.item()"... Each pattern seen becomes a `Site` named by what it is (a log of a probability, a sqrt
near zero...), with the source pieces a fix would rewrite; the rules decide which to report, word
them and build the fixes. Where the answer depends on another file (what a model's forward
returns), the site names the classes and the run index settles it. Branches merge so that a
hazard must hold on every path (precision first).
"""

from __future__ import annotations

import builtins
import re
import sys
from dataclasses import dataclass, field, fields
from dataclasses import replace as _replace_record
from typing import Any, Iterable

import libcst as cst

from gradlint.findings import SourceSpan
from gradlint.source.budget import MAX_EXPR_DEPTH
from gradlint.source.engine.calls import arg as _arg
from gradlint.source.engine.calls import split as _args
from gradlint.source.engine.fold import number
from gradlint.source.engine.interp import StatementWalker
from gradlint.source.engine.walk import comprehensions as _comprehensions
from gradlint.source.engine.walk import children, suite
from gradlint.source.names import NO_GRAD, dotted
from gradlint.facts.numerics import Call, CallText, Expr, Function, NumClass, NumericsFacts, Pieces, Site

F = "torch.nn.functional."
SOFTMAX = frozenset({"torch.softmax", F + "softmax", "torch.special.softmax", "torch.Tensor.softmax"})
SIGMOID = frozenset({"torch.sigmoid", F + "sigmoid", "torch.special.expit", "torch.Tensor.sigmoid"})
LOG_SOFTMAX = frozenset({"torch.log_softmax", F + "log_softmax", "torch.special.log_softmax"})
LOGSIGMOID = frozenset({F + "logsigmoid"})
LOSS_FUNCTIONS = {
    F + "cross_entropy": "ce",
    F + "binary_cross_entropy": "bce",
    F + "binary_cross_entropy_with_logits": "bce_logits",
}
LOSS_MODULES = {
    "torch.nn.CrossEntropyLoss": "ce",
    "torch.nn.BCELoss": "bce",
    "torch.nn.BCEWithLogitsLoss": "bce_logits",
}
PROB_MODULES = {"torch.nn.Softmax": "softmax", "torch.nn.Sigmoid": "sigmoid",
                "torch.nn.LogSoftmax": "log_softmax", "torch.nn.LogSigmoid": "logsigmoid"}
FACTORIES = frozenset("torch." + n for n in (
    "zeros ones empty full rand randn randint randperm arange linspace logspace eye zeros_like "
    "ones_like empty_like full_like rand_like randn_like randint_like normal bernoulli multinomial "
    "tril_indices triu_indices").split())
TENSOR_FROM_DATA = frozenset({"torch.tensor", "torch.as_tensor", "torch.from_numpy", "torch.Tensor",
                              "torch.FloatTensor", "torch.DoubleTensor", "torch.LongTensor",
                              "torch.cuda.FloatTensor", "torch.scalar_tensor"})
VARIABLE = frozenset({"torch.autograd.Variable", "torch.autograd.variable.Variable"})
GRADCHECK = frozenset({"torch.autograd.gradcheck", "torch.autograd.gradgradcheck",
                       "torch.autograd.gradcheck.gradcheck", "torch.autograd.gradcheck.gradgradcheck",
                       "torch.testing._internal.common_utils.gradcheck"})
AUTOGRAD_FUNCTION = frozenset({"torch.autograd.Function", "torch.autograd.function.Function",
                               "torch.autograd.function.InplaceFunction", "torch.autograd.InplaceFunction"})
# Methods that move, reshape or re-type a tensor: what a value is survives them.
KEEP = frozenset(
    "view view_as reshape reshape_as flatten squeeze unsqueeze permute transpose contiguous float "
    "double half bfloat16 to type type_as clone cuda cpu t expand expand_as gather index_select "
    "masked_select narrow select movedim swapaxes flip roll repeat tile squeeze_ unsqueeze_".split())
CUTTING_METHODS = {"item": ".item()", "tolist": ".tolist()", "numpy": ".numpy()",
                   "argmax": "argmax", "argmin": "argmin", "round": "round", "detach": ".detach()",
                   "detach_": ".detach_()", "long": "an integer cast", "int": "an integer cast",
                   "bool": "a bool cast"}
CUTTING_FUNCTIONS = {"torch.argmax": "argmax", "torch.argmin": "argmin", "torch.round": "round"}
# Functions whose output is never part of a training graph (their whole body is quiet).
_QUIET_TOKENS = frozenset(
    "eval evaluate evaluation validate validation val valid test predict prediction inference infer "
    "metric metrics accuracy benchmark sample sampling generate visualize visualise plot "
    "init quantize dequantize quant pack unpack convert".split())
_QUIET_NAMES = frozenset({"__init__", "reset_parameters", "init_weights", "_init_weights", "__getitem__",
                          "extra_repr", "__repr__"})
# Class-name words of data, metric and preprocessing classes (whole words: a Transformer is
# not a Transform).
_QUIET_CLASS_WORDS = frozenset(
    "metric metrics dataset datasets transform transforms augment augmentation augmenter sampler collator "
    "processor processing extractor tokenizer warper".split())
# Words that name a deliberate stop-gradient: EMA/teacher/target networks, recurrent state
# carried between truncated-BPTT windows, caches.
_STOP_WORDS = frozenset(
    "ema teacher target momentum shadow frozen old prev previous avg average swa polyak mean "
    "h c hx cx hn cn hidden hiddens state states memory mems carry cache past".split())
_BACKWARD_HOSTS = frozenset({"accelerator", "fabric", "engine", "model_engine", "deepspeed", "strategy",
                             "trainer", "self", "amp", "booster"})
_SELF_RG = re.compile(r"\bself\s*\.\s*requires_grad\b")


class Where:
    """A node's position, computed only when a finding reports it.

    Positions cost more than the rest of the walk (measured on timm's vision_transformer.py:
    half of the whole extraction went to spans of values that never became a finding), so a
    value keeps where it was cut as the node, and the span is resolved on first use.
    """

    __slots__ = ("node", "_src", "_span")

    def __init__(self, src, node: cst.CSTNode) -> None:
        self.node = node
        self._src = src
        self._span: SourceSpan | None = None

    @property
    def span(self) -> SourceSpan:
        if self._span is None:
            self._span = self._src.span(self.node)
        return self._span

    @property
    def line(self) -> int:
        return self.span.line

    @property
    def column(self) -> int:
        return self.span.column


@dataclass(frozen=True)
class V:
    """The abstract value of an expression: only what the rules need, every field a fact."""

    prob: str | None = None  # softmax / sigmoid / one_minus_sigmoid / log_softmax / logsigmoid
    prob_node: cst.Call | None = None  # the call that made it, when inline (for fixes)
    shifted: bool = False  # eps-shifted or clamped probability
    inst: frozenset[str] = frozenset()  # an instance of these user classes
    out: frozenset[str] = frozenset()  # the output of calling an instance of these classes
    crit: str | None = None  # a loss module instance: ce / bce / bce_logits
    crit_node: cst.Call | None = None
    callret: str | None = None  # a module whose call returns this probability kind
    module: bool = False  # a known nn.Module instance
    sq: bool = False  # a square
    sumsq: bool = False  # a sum or mean of squares
    norm: str | None = None  # 'x.norm()', 'x.std()', 'sqrt(var)'
    var: bool = False
    exp: bool = False
    one_plus_exp: bool = False
    sum_exp: bool = False
    max_shifted: bool = False  # x - x.max(): the stable log-sum-exp shift
    nonpos: bool = False  # never above 0 (-x**2, -0.5 * (x / s) ** 2): its exp cannot overflow
    is_max: bool = False  # x.max(...), torch.amax(...)
    const: bool = False  # literal or built from literals/factories: no gradient
    cut: str | None = None  # why no gradient flows (".item()", ".detach()", "torch.tensor(...)"...)
    cut_span: Where | None = None
    numpy: bool = False
    tensor: bool = False
    clamped: bool = False  # bounded away from 0 (clamp(min>0), + eps, maximum(x, eps))
    unit: str | None = None  # clamped into [-1, 1]: 'strict' (a margin) or 'loose'
    params: bool = False  # computed from self.* (a module's parameters)
    param_cuts: frozenset[tuple[Where, str]] = frozenset()
    rg: frozenset[tuple[Where, str]] = frozenset()  # requires_grad set on a computed value
    computed: bool = False  # made by an operation (not a parameter, literal, or factory)
    leaf: bool = False  # a fresh leaf: factory, Parameter, .detach() result
    safe_where: bool = False  # torch.where(m, x, safe): the double-where guard
    # Terms of a sum that are cut from the graph (`aux.item()`, `reg.detach()`) while another
    # term may carry gradient: (where it was cut, how). Only sums and differences keep them: a
    # cut value used inside a computation (`(pred - target.detach()) ** 2`) is a stop-gradient.
    cut_terms: frozenset[tuple[Where, str]] = frozenset()
    # The output of a learned layer, or a square, sum, norm or positive probability made from
    # one: an all-zero vector there has probability zero, so 0/0 and sqrt(0) are not a hazard
    # (CLIP-style `emb / emb.norm()` on a projection's output; measured on the corpus: every
    # such division was harmless).
    dense: bool = False
    # a tuple or list of known length: what each element is (`return validity, label`)
    elems: tuple[V, ...] | None = None
    # `out` is this element of the classes' output (`a, b = model(x)`, `model(x)[1]`)
    out_elem: int | None = None

    @property
    def nograd(self) -> bool:
        return self.const or self.cut is not None


_V_FIELDS = frozenset(f.name for f in fields(V))
_V_DEFAULTS = {f.name: f.default for f in fields(V)}  # all immutable: None, False, frozenset()


def _v_init(self, **values) -> None:
    """V's constructor: a frozen dataclass's sets each of its 34 fields through
    object.__setattr__, and a V is made for nearly every expression."""
    if not values.keys() <= _V_FIELDS:
        raise TypeError(f"V has no field {sorted(values.keys() - _V_FIELDS)[0]!r}")
    state = self.__dict__
    state.update(_V_DEFAULTS)
    state.update(values)


V.__init__ = _v_init  # type: ignore[method-assign]
UNKNOWN = V()
# a leaf made to require grad (`torch.zeros(..., requires_grad=True)`, `W.requires_grad_()`)
_TRAINABLE = V(leaf=True, tensor=True, params=True)


def replace(obj, /, **changes):
    """dataclasses.replace; for a V (made for nearly every expression) a copy of its fields,
    without the generic per-field machinery that cost more than the walk around it."""
    if type(obj) is not V:
        return _replace_record(obj, **changes)
    if not changes.keys() <= _V_FIELDS:
        raise TypeError(f"V has no field {sorted(changes.keys() - _V_FIELDS)[0]!r}")
    new = object.__new__(V)
    state = new.__dict__
    state.update(obj.__dict__)
    state.update(changes)
    return new


def _combine(vals: list[V]) -> V:
    """Generic result of an operation on these operands: no gradient only if none carries one."""
    if not vals:
        return V(computed=True)
    cuts = [v for v in vals if v.cut is not None]
    all_nograd = all(v.nograd for v in vals)
    first_cut = cuts[0] if cuts else None
    return V(
        const=all(v.const for v in vals),
        cut=first_cut.cut if (all_nograd and first_cut) else None,
        cut_span=first_cut.cut_span if (all_nograd and first_cut) else None,
        numpy=any(v.numpy for v in vals),
        tensor=any(v.tensor for v in vals),
        params=any(v.params for v in vals),
        param_cuts=frozenset().union(*(v.param_cuts for v in vals)),
        rg=frozenset().union(*(v.rg for v in vals)),
        computed=True,
    )


def merge(a: V, b: V) -> V:
    """A value that is `a` on one path and `b` on another: hazards must hold on both."""
    if a is b or a == b:
        return a
    return V(
        prob=a.prob if a.prob == b.prob else None,
        prob_node=a.prob_node if a.prob_node is b.prob_node else None,
        shifted=a.shifted or b.shifted,
        inst=a.inst & b.inst,
        out=a.out & b.out if a.out_elem == b.out_elem else frozenset(),
        out_elem=a.out_elem if a.out_elem == b.out_elem else None,
        elems=tuple(merge(p, q) for p, q in zip(a.elems, b.elems))
        if a.elems is not None and b.elems is not None and len(a.elems) == len(b.elems) else None,
        crit=a.crit if a.crit == b.crit else None,
        crit_node=a.crit_node if a.crit_node is b.crit_node else None,
        callret=a.callret if a.callret == b.callret else None,
        module=a.module and b.module,
        sq=a.sq and b.sq,
        sumsq=a.sumsq and b.sumsq,
        norm=a.norm if a.norm == b.norm else None,
        var=a.var and b.var,
        exp=a.exp and b.exp,
        one_plus_exp=a.one_plus_exp and b.one_plus_exp,
        sum_exp=a.sum_exp and b.sum_exp,
        max_shifted=a.max_shifted or b.max_shifted,
        nonpos=a.nonpos and b.nonpos,
        is_max=a.is_max and b.is_max,
        const=a.const or b.const,
        cut=a.cut if (a.cut and b.cut) else None,
        cut_span=a.cut_span if (a.cut and b.cut) else None,
        numpy=a.numpy or b.numpy,
        tensor=a.tensor and b.tensor,
        clamped=a.clamped or b.clamped,
        unit=a.unit if a.unit == b.unit else ("strict" if "strict" in (a.unit, b.unit) else None),
        params=a.params or b.params,
        param_cuts=a.param_cuts & b.param_cuts,
        rg=a.rg & b.rg,
        computed=a.computed and b.computed,
        leaf=a.leaf or b.leaf,
        safe_where=a.safe_where or b.safe_where,
        dense=a.dense and b.dense,
        cut_terms=a.cut_terms & b.cut_terms,
    )


def _passed(v: V) -> V:
    """What an argument (or a member) keeps when it becomes a parameter: whether it is a model or
    a criterion; any other value stays unknown, as a parameter always was."""
    if not (v.inst or v.crit or v.callret or v.module):
        return UNKNOWN
    return V(inst=v.inst, crit=v.crit, callret=v.callret, module=v.module, leaf=v.leaf)


# Walks of one unit when its callers' arguments change (a chain of calls through this file).
MAX_REWALKS = 3
_LOSS_NAMES = {"ce": "cross_entropy", "bce": "binary_cross_entropy", "bce_logits": "binary_cross_entropy_with_logits"}


def _shape(v: V) -> str:
    """An argument as a caller in another file needs it (Call.args): '' when nothing useful."""
    if v.crit:
        return "crit:" + v.crit
    if len(v.inst) == 1 and not v.crit:
        return "inst:" + next(iter(v.inst))
    return ""


def merge_env(a: dict[str, V], b: dict[str, V]) -> dict[str, V]:
    out: dict[str, V] = {}
    for key in a.keys() | b.keys():
        out[key] = merge(a.get(key, UNKNOWN), b.get(key, UNKNOWN))
    return out


def _function_value(names: frozenset[str]) -> V | None:
    """A torch loss function named as a value (`self.loss_func = F.binary_cross_entropy_with_logits`)
    is a criterion: calling it is the loss."""
    for qn, kind in LOSS_FUNCTIONS.items():
        if qn in names:
            return V(crit=kind)
    return None


def _item(val: V, i: int) -> V | None:
    """Element `i` of a tuple value (cut where the tuple was: made under no_grad), or of a model's
    output (which the run index settles: a tuple's element, or rows of a tensor); None if unknown."""
    if val.elems is not None:
        if not -len(val.elems) <= i < len(val.elems):
            return None
        e = val.elems[i]
        if val.cut is not None and not e.nograd:
            e = replace(e, cut=val.cut, cut_span=val.cut_span)
        return e
    if val.out and val.out_elem is None:
        return replace(val, out_elem=i)
    return None


def _int_index(node: cst.Subscript) -> int | None:
    """The literal integer of `x[1]` / `x[-1]`; None for slices, names and several indices."""
    if len(node.slice) != 1 or not isinstance(node.slice[0].slice, cst.Index):
        return None
    v = node.slice[0].slice.value
    sign = 1
    if isinstance(v, cst.UnaryOperation) and isinstance(v.operator, cst.Minus):
        v, sign = v.expression, -1
    if isinstance(v, cst.Integer):
        return sign * int(v.evaluated_value)
    return None


def _tokens(name: str) -> set[str]:
    return {t for t in re.split(r"_+|(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", name.strip("_")) if t} | {
        name.lower()}


def _quiet_class(name: str) -> bool:
    return bool({t.lower() for t in _tokens(name)} & _QUIET_CLASS_WORDS)


def quiet_function(name: str) -> bool:
    if name in _QUIET_NAMES:
        return True
    return bool({t.lower() for t in _tokens(name)} & _QUIET_TOKENS)


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


class Extractor:
    """Walks one parsed file and collects Sites, class summaries and gradcheck names."""

    def __init__(self, src) -> None:
        self.src = src
        self.imports = src.imports
        self.sites: list[Site] = []
        self.classes: list[NumClass] = []
        self.gradchecked: set[str] = set()
        self.aliases: list[tuple[str, str]] = []
        self.autograd_classes: set[str] = set()
        self.local_classes: set[str] = set()
        self._seen: set[tuple[str, SourceSpan, str]] = set()
        self.globals: dict[str, V] = {}
        self.defines_optimizer = False
        self.file_quiet = False
        # Whether the text names `self.requires_grad` at all: the class walk that counts reads
        # and stores of it is skipped for the (many) files that never do.
        # (the substring test first: the expression alone scans the text six times slower)
        self.self_requires_grad = "requires_grad" in src.text and _SELF_RG.search(src.text) is not None
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
        self.def_names: set[str] = set()
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
        self.signatures: dict[str, tuple[tuple[str, ...], tuple[str, ...], dict[str, V], int]] = {}
        self.walked_with: dict[str, dict[str, V]] = {}
        self.class_attrs: dict[str, dict[str, V]] = {}  # top-level class -> what its __init__ sets
        self.unit = 0  # id of the top-level def being walked (0: the module body)
        self.units: dict[int, tuple[cst.CSTNode, list, list, list]] = {}
        self.stale: set[int] = set()  # units that read a class's members before it was walked
        self.subclassed: set[str] = set()  # classes of this file another class of it derives from
        self.calling: dict[int, cst.Call] = {}  # id(callee expression) -> its call
        self.muted = 0  # evaluating a method's returns ahead of its turn (method_returns): no sites
        # Parameters no caller of this file binds (functions and methods, `__init__`'s included:
        # `self.criterion = criterion` keeps the value), by the identity of the fresh value that
        # stands for each: id -> (value, function, parameter, position after self or -1). A site
        # on one names it, and the rules join what the project's callers pass.
        self.open_params: dict[int, tuple[V, str, str, int]] = {}
        self.default_params: dict[int, tuple[V, str, str, int]] = {}  # the same, for a default (binding)

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
        try:
            return self.src.code(node).strip()
        except Exception:
            return ""

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
        attribute = isinstance(func, cst.Attribute)
        return CallText(self.span(call), self.expr(func), resolved=bool(self.q(func)),
                        receiver=self.expr(func.value) if attribute else None,
                        name_span=self.span(func.attr) if attribute else None,
                        args=_args_text(self, call), nargs=len(call.args),
                        only=self.expr(pos[0]) if len(call.args) == 1 and pos else None)

    def torch_imports(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        out = []
        for local, targets in sorted(self.imports.names.items()):
            torch = tuple(sorted(t for t in targets if t == "torch" or t.startswith("torch.")))
            if torch:
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
        self.globals = {k: v for k, v in top.env.items() if "." not in k}
        for node in top.module_defs:
            self._walk_unit(node)
            if isinstance(node, cst.FunctionDef):
                top._record_wrapper(node)
        self._settle()
        for _node, sites, classes, functions in self.units.values():
            self.sites.extend(sites)
            self.classes.extend(classes)
            self.functions.extend(functions)
        return NumericsFacts(sites=tuple(self.sites), classes=tuple(self.classes),
                             gradchecked=frozenset(self.gradchecked), apply_aliases=tuple(self.aliases),
                             torch_imports=self.torch_imports(),
                             functions=tuple(self.functions),
                             references=frozenset(self.references | self.class_refs))

    def _walk_unit(self, node: cst.FunctionDef | cst.ClassDef) -> None:
        """Walk one top-level def into its own lists of facts (replacing those of an earlier walk)."""
        key = id(node)
        old = self.units.get(key)
        if old is not None:
            self._seen.difference_update((s.kind, s.span, s.variant) for s in old[1])
            for by_unit in self.passed.values():
                by_unit.pop(key, None)
        saved = self.sites, self.classes, self.functions, self.unit
        self.sites, self.classes, self.functions, self.unit = [], [], [], key
        try:
            if isinstance(node, cst.ClassDef):
                self.walk_class(node, False)
            else:
                FunctionWalk(self, node.name.value, None,
                             quiet=self.file_quiet or quiet_function(node.name.value)).run_function(node)
        except RecursionError:
            self.depth = 0
        finally:
            self.units[key] = (node, self.sites, self.classes, self.functions)
            self.sites, self.classes, self.functions, self.unit = saved

    def _settle(self) -> None:
        """Walk again the units whose functions were walked with other arguments than their callers
        pass (a caller below its callee, a chain of calls), a few rounds at most."""
        stale = set(self.stale)
        for _ in range(MAX_REWALKS):
            for qual, sig in self.signatures.items():
                if self.binding(qual) != self.walked_with.get(qual, {}):
                    stale.add(sig[3])
            if not stale:
                return
            for key in [k for k in self.units if k in stale]:
                self._walk_unit(self.units[key][0])
            stale = set()

    def binding(self, qual: str) -> dict[str, V]:
        """What each parameter of function `qual` is, joined over the calls of this file: only
        models and criteria (anything else stays unknown, as before)."""
        sig = self.signatures.get(qual)
        if sig is None:
            return {}
        positional, kwonly, defaults, _unit = sig
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
                    passed = True
                elif p in kw:
                    v = kw[p]
                    passed = True
                else:
                    v = UNKNOWN if star else defaults.get(p, UNKNOWN)
                joined = v if joined is None else merge(joined, v)
            if joined is None:
                joined = defaults.get(p, UNKNOWN)
            joined = _passed(joined)
            if joined != UNKNOWN:
                if not passed and joined.crit and p in defaults:
                    # the constructor default, which a caller in another file may replace: the
                    # value's identity names the parameter (Extractor.default_param)
                    self.default_params[id(joined)] = (joined, qual, p, positional.index(p) if p in positional else -1)
                out[p] = joined
        return out

    def default_param(self, v: V) -> tuple[str, str, int] | None:
        """(function, parameter, position) when `v` is a criterion parameter's constructor default
        that no call of this file replaces."""
        got = self.default_params.get(id(v))
        return got[1:] if got is not None and got[0] is v else None

    def open_param(self, v: V) -> tuple[str, str, int] | None:
        """(function, parameter, position) when `v` is the value of an open parameter."""
        got = self.open_params.get(id(v))
        return got[1:] if got is not None and got[0] is v else None

    def member(self, cls: str, attr: str) -> V | None:
        """A submodule (`encoder`) of an instance of a top-level class of this file, as its
        __init__ sets it; None when unknown or not a module."""
        if cls not in self.local_classes:
            return None
        attrs = self.class_attrs.get(cls)
        if attrs is None:
            self.stale.add(self.unit)
            return None
        v = attrs.get(attr)
        return _passed(v) if v is not None and (v.module or v.inst) else None

    def _prescan(self, module: cst.Module) -> None:
        """Class names and autograd Functions of this file, before any function is walked.

        Walks statements only (a full visitor over every expression costs more than the rest of
        the extraction)."""
        stack: list[cst.CSTNode] = list(module.body)
        while stack:
            node = stack.pop()
            if type(node) is cst.FunctionDef:
                self.def_names.add(node.name.value)
            if type(node) is cst.ClassDef:
                self.local_classes.add(node.name.value)
                bases = self.base_names(node)
                if any(b.startswith("torch.optim.") for b in bases):
                    self.defines_optimizer = True
                if any(b in AUTOGRAD_FUNCTION or (b.startswith("torch.") and b.endswith("Function")) for b in bases):
                    self.autograd_classes.add(node.name.value)
            if type(node) is cst.SimpleStatementLine:
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
        methods = [s for s in node.body.body if isinstance(s, cst.FunctionDef)]
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
            for key, val in walk.env.items():
                if key.startswith("self.") and key.count(".") == 1:
                    ctx.attrs[key[5:]] = val
                    if val.leaf and val.params and val.tensor and not val.module:
                        ctx.params.add(key[5:])
        if len(self.path) == 1:
            self.class_attrs[name] = ctx.attrs
        returns: list[V] = []
        items: tuple[str | None, ...] = ()
        has_forward = False
        for m in methods:
            if m in setup:
                continue
            walk = FunctionWalk(self, m.name.value, ctx, quiet=ctx.quiet or quiet_function(m.name.value))
            walk.run_function(m)
            if m.name.value == "forward" and not is_function:
                has_forward = True
                returns = walk.returns
                items = _returned_items(walk)
                walk.check_forward_output()
        # nested classes
        for stmt in node.body.body:
            if isinstance(stmt, cst.ClassDef):
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
        custom_backward = False
        if is_function:
            custom_backward = any(m.name.value == "backward" for m in methods)
            for m in methods:
                if m.name.value == "backward":
                    self.check_backward(node, m)
        self.classes.append(NumClass(name=name, span=self.span(node.name), bases=bases,
                                     has_forward=has_forward, returns=kind, returns_via=via, returns_items=items,
                                     autograd_function=is_function, custom_backward=custom_backward))

    def check_backward(self, cls: cst.ClassDef, fn: cst.FunctionDef) -> None:
        """A backward that never reads its gradient arguments."""
        params = fn.params
        names = [p.name.value for p in list(params.posonly_params) + list(params.params)]
        grads = names[1:]  # the first is ctx
        if isinstance(params.star_arg, cst.Param):
            grads.append(params.star_arg.name.value)
        if not grads:
            return
        reads: set[str] = set()
        returns_values = False
        raises = False

        class Reads(cst.CSTVisitor):
            def visit_Name(self, node: cst.Name) -> None:
                reads.add(node.value)

            def visit_Return(self, node: cst.Return) -> None:
                nonlocal returns_values
                if node.value is not None and not _all_none(node.value):
                    returns_values = True

            def visit_Raise(self, node: cst.Raise) -> None:
                nonlocal raises
                raises = True

        fn.body.visit(Reads())
        if returns_values and not reads & set(grads):
            self.add(Site("backward_ignores_grad", "ignores-grad", self.span(fn.name),
                          detail=f"{cls.name.value}.backward", data=(("arguments", tuple(grads)),)))


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


def _short_returns(fn: cst.FunctionDef) -> list[cst.BaseExpression] | None:
    """The returned expressions of a method of at most 5 statements whose every return (at its top
    level or in an if/else there) gives a call or an attribute; None for any other method."""
    body = suite(fn.body)
    if len(body) > 5:
        return None
    out: list[cst.BaseExpression] = []
    stack: list[cst.CSTNode] = list(body)
    while stack:
        n = stack.pop()
        if isinstance(n, cst.If):
            stack.extend(suite(n.body))
            if n.orelse is not None:
                stack.extend([n.orelse] if isinstance(n.orelse, cst.If) else suite(n.orelse.body))
        elif isinstance(n, cst.SimpleStatementLine | cst.SimpleStatementSuite):
            for small in n.body:
                if isinstance(small, cst.Return):
                    if not isinstance(small.value, cst.Call | cst.Attribute):
                        return None
                    out.append(small.value)
    return out or None


def _reads_self_requires_grad(cls: cst.ClassDef) -> bool:
    """More `self.requires_grad` reads than assignments to it: the class uses the attribute as
    a setting of its own (`self.requires_grad = flag` is then no module attribute mistake). A
    plain walk: libcst's visitor rebuilds every node it passes, 0.1 s per large class."""
    uses = stores = 0
    stack: list = [cls]
    while stack:
        n = stack.pop()
        if isinstance(n, cst.Attribute) and n.attr.value == "requires_grad" and \
                isinstance(n.value, cst.Name) and n.value.value == "self":
            uses += 1
        elif isinstance(n, cst.AssignTarget) and isinstance(n.target, cst.Attribute) and \
                n.target.attr.value == "requires_grad" and isinstance(n.target.value, cst.Name) and \
                n.target.value.value == "self":
            stores += 1
        stack.extend(children(n))
    return uses > stores


def _all_none(node: cst.BaseExpression) -> bool:
    if isinstance(node, cst.Name):
        return node.value == "None"
    if isinstance(node, cst.Tuple | cst.List):
        return all(_all_none(e.value) for e in node.elements)
    return False


class FunctionWalk(StatementWalker):
    """Walks one function body in order, keeping the environment of abstract values."""

    def __init__(self, x: Extractor, name: str, cls: ClassCtx | None, *, quiet: bool,
                 globals_: dict[str, V] | None = None) -> None:
        self.x = x
        # module-level names (criteria, model instances) seen from inside functions
        self.globals = globals_ if globals_ is not None else x.globals
        self.name = name
        self.cls = cls
        self.quiet = quiet  # no-grad, eval, metric or init code: no numerics hazard
        self.nograd = 0
        self.decorated_nograd = False
        self.env: dict[str, V] = {}
        if cls is not None:
            for attr, val in cls.attrs.items():
                self.env["self." + attr] = val
        self.memo: dict[int, V] = {}
        self.fn_node: cst.FunctionDef | None = None
        self.returns: list[V | None] = []
        self.return_nodes: list[cst.Return] = []
        self.deferred: list[cst.FunctionDef] = []
        self.module_defs: list[cst.FunctionDef | cst.ClassDef] = []
        self.calls: dict[Call, None] = {}  # in order, once each
        # id(value) -> (value, the open parameter called to make it: Extractor.open_param)
        self.param_outputs: dict[int, tuple[V, tuple[str, str, int]]] = {}

    # -- entry points --------------------------------------------------------------------------
    def run_function(self, fn: cst.FunctionDef) -> None:
        qual = ".".join([*self.x.path, self.name])
        self.qual = qual
        self.x.path.append(self.name + ".<locals>")
        self.x.walking.append(qual)
        try:
            self._run_function(fn)
        finally:
            self.x.path.pop()
            self.x.walking.pop()
            self.x.functions.append(Function(qual, nograd=self.decorated_nograd, calls=tuple(self.calls)))

    def _run_function(self, fn: cst.FunctionDef) -> None:
        self.fn_node = fn
        for dec in fn.decorators:
            expr = dec.decorator.func if isinstance(dec.decorator, cst.Call) else dec.decorator
            if not self.x.q(expr).isdisjoint(NO_GRAD):
                self.quiet = True
                self.nograd += 1
                self.decorated_nograd = True
        ps = fn.params
        bound = self._bound_params(fn)
        sig = self.x.signatures.get(self.qual) if self.x.unit != 0 else None
        for p in list(ps.posonly_params) + list(ps.params) + list(ps.kwonly_params):
            name = p.name.value
            v = bound.get(name)
            if v is None and sig is not None and (name in sig[0] or name in sig[1]):
                # unknown here; a caller in another file may pass a model or a criterion (a site
                # on it names the parameter, and the rules join what the project's callers pass)
                v = V()
                self.x.open_params[id(v)] = (v, self.qual, name, sig[0].index(name) if name in sig[0] else -1)
            self.env[name] = v if v is not None else UNKNOWN
        for star in (ps.star_arg, ps.star_kwarg):
            if isinstance(star, cst.Param):
                self.env[star.name.value] = UNKNOWN
        try:
            self.walk(suite(fn.body))
        except RecursionError:
            # an expression too deep to follow (generated code): this function yields no facts,
            # the rest of the file still does
            self.returns = [None]

    def _bound_params(self, fn: cst.FunctionDef) -> dict[str, V]:
        """The parameters of a top-level function or method as its callers in this file pass them
        (Extractor.binding); the signature is kept so that later callers can be joined."""
        qual = self.qual
        if "<locals>" in qual or qual.count(".") > (self.cls is not None) or not self.x.unit:
            return {}
        ps = fn.params
        positional = [p.name.value for p in list(ps.posonly_params) + list(ps.params)]
        if self.cls is not None:
            if any(dotted(d.decorator) == "staticmethod" for d in fn.decorators) or not positional:
                return {}
            positional = positional[1:]
        defaults: dict[str, V] = {}
        for p in list(ps.posonly_params) + list(ps.params) + list(ps.kwonly_params):
            if type(p.default) is cst.Call:
                v = _passed(self.ev(p.default))
                if v != UNKNOWN:
                    defaults[p.name.value] = v  # `criterion=nn.BCELoss()`
        self.x.signatures[qual] = (tuple(positional), tuple(p.name.value for p in ps.kwonly_params), defaults,
                                   self.x.unit)
        bound = self.x.walked_with[qual] = self.x.binding(qual)
        return bound

    def _record_passed(self, node: cst.Call) -> None:
        """At a call of a function or method of this file, what it passes (Extractor.binding)."""
        func = node.func
        x = self.x
        if type(func) is cst.Name:
            name = func.value
            if name in self.env or name in self.globals:
                return
            if name in x.local_classes:
                qual = name + ".__init__"
            elif name in x.def_names:
                qual = name
            else:
                return
        elif type(func) is cst.Attribute and type(func.value) is cst.Name and func.attr.value in x.def_names:
            if func.value.value == "self" and self.cls is not None:
                owner = self.cls.name
            else:
                inst = self.ev(func.value).inst
                if len(inst) != 1:
                    return
                owner = next(iter(inst))
            qual = owner + "." + func.attr.value
        else:
            return
        pos: list[V] = []
        kw: dict[str, V] = {}
        star = False
        for a in node.args:
            if a.star:
                star = True
            elif a.keyword is not None:
                kw[a.keyword.value] = self.ev(a.value)
            elif not star:
                pos.append(self.ev(a.value))
        self.x.passed.setdefault(qual, {}).setdefault(self.x.unit, []).append((pos, kw, star))

    def walk(self, stmts: Iterable[cst.CSTNode]) -> None:
        for stmt in stmts:
            self.statement(stmt)
        for fn in self.deferred:
            FunctionWalk(self.x, fn.name.value, None,
                         quiet=self.quiet or quiet_function(fn.name.value)).run_function(fn)
        self.deferred = []

    # -- statements: the walker (engine/interp.py) over V ----------------------------------------
    # No condition is decided and a `return` does not end the walk: a hazard is a fact of every
    # path that reaches it, and values join where paths meet (`merge_env`).
    def evaluate(self, node: cst.BaseExpression) -> V:
        return self.ev(node)

    def unknown(self) -> V:
        return UNKNOWN

    def function_def(self, node: cst.FunctionDef) -> None:
        if self.cls is None and self.name == "<module>":
            self.module_defs.append(node)
        else:
            self.deferred.append(node)

    def class_def(self, node: cst.ClassDef) -> None:
        if self.name == "<module>":
            self.module_defs.append(node)
        else:
            self.x.walk_class(node, self.quiet)

    def condition(self, stmt: cst.If) -> bool | None:
        self.ev(stmt.test)
        return None

    def fork(self) -> dict[str, V]:
        return dict(self.env)

    def restore(self, before: dict[str, V]) -> None:
        self.env = dict(before)

    def settle(self, before: dict[str, V]) -> dict[str, V]:
        return self.env

    def join_branches(self, stmt: cst.CSTNode, before: dict, first: dict[str, V], second: dict[str, V]) -> None:
        self.env = merge_env(first, second)

    def join_loop(self, stmt: cst.For | cst.While, before: dict[str, V]) -> None:
        self.env = merge_env(before, self.env)

    def for_stmt(self, node: cst.For) -> None:
        it = self.ev(node.iter)
        self._bind_loop_target(node.target, node.iter, it)
        self.loop_body(node)
        self.loop_else(node)

    def with_stmt(self, node: cst.With) -> None:
        entered = 0
        for item in node.items:
            expr = item.item
            func = expr.func if isinstance(expr, cst.Call) else expr
            names = self.x.q(func)
            if not names.isdisjoint(NO_GRAD) or (
                    "torch.set_grad_enabled" in names and isinstance(expr, cst.Call) and expr.args
                    and isinstance(expr.args[0].value, cst.Name) and expr.args[0].value.value == "False"):
                entered += 1
            else:
                val = self.ev(expr)
                if item.asname is not None:
                    self.bind(item.asname.name, val)
        self.nograd += entered
        self.block(node.body)
        self.nograd -= entered

    def assign_stmt(self, node: cst.Assign) -> None:
        val = self.ev(node.value)
        if type(node.value) is cst.Attribute and node.value.attr.value == "apply" and isinstance(
                node.value.value, cst.Name) and node.value.value.value in self.x.autograd_classes:
            for t in node.targets:
                if type(t.target) is cst.Name:
                    self.x.aliases.append((t.target.value, node.value.value.value))
        for t in node.targets:
            self.assign(t.target, val, node.value)

    def augmented(self, node: cst.AugAssign, target_val: V, val: V) -> V:
        op = node.operator
        if isinstance(op, cst.DivideAssign):
            self.check_divide(node, target_val, val, node.value)
        return self.binop_value(_AUG.get(type(op)), target_val, val, node.target, node.value, node)

    def return_stmt(self, node: cst.Return) -> None:
        if node.value is not None:
            val = self.ev(node.value)
            self.returns.append(None if isinstance(node.value, cst.Tuple) else val)
            self.return_nodes.append(node)
        else:
            self.returns.append(None)

    def other_small(self, node: cst.BaseSmallStatement) -> None:
        for child in node.children:
            if isinstance(child, cst.BaseExpression):
                self.ev(child)

    def _bind_loop_target(self, target: cst.BaseAssignTargetExpression, it_node: cst.BaseExpression, it: V) -> None:
        module_iter = False
        named = False
        while isinstance(it_node, cst.Subscript) or (
                isinstance(it_node, cst.Call) and isinstance(it_node.func, cst.Name)
                and it_node.func.value in ("list", "tuple") and len(it_node.args) == 1):
            # `list(model.children())[:3]`: some of the same modules
            it_node = it_node.value if isinstance(it_node, cst.Subscript) else it_node.args[0].value
        if isinstance(it_node, cst.Call) and isinstance(it_node.func, cst.Attribute):
            meth = it_node.func.attr.value
            module_iter = meth in ("modules", "children", "named_modules", "named_children")
            named = meth.startswith("named_")
        if module_iter and not named and isinstance(target, cst.Name):
            self.env[target.value] = V(module=True)
            return
        if module_iter and named and isinstance(target, cst.Tuple) and len(target.elements) == 2:
            first, second = target.elements
            self.bind(first.value, UNKNOWN)
            self.bind(second.value, V(module=True))
            return
        self.bind(target, UNKNOWN)

    def bind(self, target: cst.BaseExpression, val: V) -> None:
        """A target of a comprehension, a walrus or a loop gets `val` (a tuple target: `unpack`)."""
        self.assign_target(target, val)

    def unpack(self, val: V, count: int) -> list | None:
        """`validity, label = D(x)`: each target gets its element when the length is known (a
        tuple literal's, or a model output's whose forward returns a tuple)."""
        known = len(val.elems) == count if val.elems is not None else bool(val.out)
        return [_item(val, i) or UNKNOWN for i in range(count)] if known else None

    def bind_name(self, name: str, val: V) -> None:
        self.env[name] = val

    def bind_attribute(self, target: cst.BaseExpression, val: V) -> None:
        key = dotted(target)
        if key:
            self.env[key] = val

    bind_subscript = bind_attribute

    def assign(self, target: cst.BaseExpression, val: V, value_node: cst.BaseExpression | None = None) -> None:
        if self.nograd and not val.nograd:
            val = replace(val, cut="torch.no_grad()", cut_span=self.x.where(value_node) if value_node else None)
        if type(target) is cst.Attribute:
            attr = target.attr.value
            if attr == "require_grad":
                self.x.add(Site("requires_grad_on_module", "typo", self.x.span(target), detail=self.x.code(target)))
                return
            if attr == "requires_grad":
                self.requires_grad_set(target.value, value_node, self.x.where(target))
                return
            if attr == "data" or attr == "grad":
                return
        if type(target) in (cst.Tuple, cst.List) and type(value_node) in (cst.Tuple, cst.List) and len(
                target.elements) == len(value_node.elements):
            for t, v in zip(target.elements, value_node.elements):
                self.assign(t.value, self.memo.get(id(v.value), UNKNOWN), v.value)
            return
        self.assign_target(target, val)

    def requires_grad_set(self, holder: cst.BaseExpression, value_node: cst.BaseExpression | None,
                          where: Where) -> None:
        """`x.requires_grad = ...`: on a module it sets a plain attribute; on a computed value it is
        remembered for the backward call."""
        truth = value_node is None or not (isinstance(value_node, cst.Name) and value_node.value == "False")
        hv = self.ev(holder)
        key = dotted(holder)
        if hv.module:
            self.x.add(Site("requires_grad_on_module", "module-attribute", where.span, detail=self.x.code(holder)))
            return
        if hv.inst and not hv.params:
            self.x.add(Site("requires_grad_on_module", "module-attribute", where.span, detail=self.x.code(holder),
                            classes=tuple(sorted(hv.inst)), want="module"))
            return
        if (model := self.x.open_param(hv)) is not None:
            # a parameter: a module when the project's callers all pass one
            self.x.add(Site("requires_grad_on_module", "parameters", where.span, detail=self.x.code(holder),
                            data=tuple(_param_data("model", model))))
            return
        if key == "self" and self.cls is not None and not self.cls.reads_requires_grad:
            self.x.add(Site("requires_grad_on_module", "module-attribute", where.span, detail="self", classes=(self.cls.name,),
                            want="module"))
            return
        if truth and key and hv.computed and not hv.leaf and not hv.nograd:
            self.env[key] = replace(hv, rg=hv.rg | {(where, key)})
        elif truth and key and hv.leaf and hv.const and hv.tensor:
            self.env[key] = _TRAINABLE  # `W.requires_grad = True` on a factory's tensor

    def _record_wrapper(self, fn: cst.FunctionDef) -> None:
        """`def op(x): return MyFn.apply(x)` makes `op` a name under which MyFn can be gradchecked."""
        if not self.x.autograd_classes:
            return
        found: set[str] = set()
        x = self.x

        class Apply(cst.CSTVisitor):
            def visit_Attribute(self, node: cst.Attribute) -> None:
                if node.attr.value == "apply" and isinstance(node.value, cst.Name) and \
                        node.value.value in x.autograd_classes:
                    found.add(node.value.value)

        fn.visit(Apply())
        for cls in sorted(found):  # facts must not depend on the hash seed
            x.aliases.append((fn.name.value, cls))

    # -- expressions ---------------------------------------------------------------------------
    def ev(self, node: cst.BaseExpression) -> V:
        key = id(node)
        if key in self.memo:
            return self.memo[key]
        x = self.x
        if x.depth >= MAX_EXPR_DEPTH:
            return UNKNOWN  # generated code nested past the budget: not followed
        x.depth += 1
        try:
            val = self._ev(node)
        finally:
            x.depth -= 1
        if self.nograd and not val.nograd and not isinstance(node, cst.Name | cst.Attribute):
            val = replace(val, cut="torch.no_grad()", cut_span=self.x.where(node))
        self.memo[key] = val
        return val

    def _ev(self, node: cst.BaseExpression) -> V:
        kind = type(node)  # libcst's node classes are ABCs: isinstance costs a cache lookup per miss
        if kind is cst.Name:
            if node.value in ("True", "False", "None"):
                return V(const=True)
            if node.value in self.x.ref_names and id(node) not in self.x.callees:
                self.x.references.add(node.value)
            if node.value in self.env:
                return self.env[node.value]
            if node.value in self.globals:
                return self.globals[node.value]
            if node.value in self.x.local_classes:
                if id(node) not in self.x.callees:
                    self.x.class_refs.add(node.value)
                return UNKNOWN
            if node.value in self.x.imports.names:
                fn = _function_value(self.x.q(node))
                if fn is not None:
                    return fn
            if node.value.isupper() and len(node.value) > 1:
                return V(const=True)
            return UNKNOWN
        if kind in (cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString,
                    cst.ConcatenatedString, cst.FormattedString):
            return V(const=True)
        if kind is cst.Attribute:
            return self.attribute(node)
        if kind is cst.Call:
            return self.call(node)
        if kind is cst.BinaryOperation:
            return self.binop(node)
        if kind is cst.UnaryOperation:
            inner = self.ev(node.expression)
            if isinstance(node.operator, cst.Not):
                return V(const=inner.const, cut=inner.cut or "comparison", computed=True)
            negated_square = isinstance(node.operator, cst.Minus) and (inner.sq or inner.sumsq)
            return replace(_combine([inner]), tensor=inner.tensor, exp=False,
                           prob=None, nonpos=negated_square)
        if kind is cst.Subscript:
            base = self.ev(node.value)
            for el in node.slice:
                self._ev_children(el)
            if isinstance(node.value, cst.Attribute) and node.value.attr.value == "shape":
                return V(const=True)
            if base.elems is not None or (base.out and base.out_elem is None):
                i = _int_index(node)
                item = _item(base, i) if i is not None else None
                if item is not None and base.elems is not None:
                    return item
                base = item or base
            return replace(base, sq=False, sumsq=False, crit=None, callret=None, module=False, inst=frozenset(),
                           norm=base.norm, exp=base.exp, elems=None)
        if kind is cst.Comparison:
            vals = [self.ev(node.left)] + [self.ev(c.comparator) for c in node.comparisons]
            return V(const=all(v.const for v in vals), cut="comparison", computed=True)
        if kind is cst.BooleanOperation:
            return merge(self.ev(node.left), self.ev(node.right))
        if kind is cst.IfExp:
            self.ev(node.test)
            return merge(self.ev(node.body), self.ev(node.orelse))
        if kind in (cst.Tuple, cst.List, cst.Set):
            vals = [self.ev(e.value) for e in node.elements]
            # elements kept only where one is a probability, a model's output or a criterion (what
            # unpacking it can tell a rule), and the length is known
            if vals and type(node) is not cst.Set and any(
                    v.prob or v.out or v.crit or v.callret or v.elems is not None for v in vals) and not any(
                    type(e) is cst.StarredElement for e in node.elements):
                return replace(_combine(vals), elems=tuple(vals))
            return _combine(vals) if vals else V(const=True)
        if kind in (cst.ListComp, cst.GeneratorExp, cst.SetComp):
            saved = dict(self.env)
            for comp in _comprehensions(node.for_in):
                self.ev(comp.iter)
                self.bind(comp.target, UNKNOWN)
                for cond in comp.ifs:
                    self.ev(cond.test)
            val = self.ev(node.elt)
            self.env = saved
            return _combine([val])
        if kind is cst.DictComp:
            saved = dict(self.env)
            for comp in _comprehensions(node.for_in):
                self.ev(comp.iter)
                self.bind(comp.target, UNKNOWN)
            self.ev(node.key)
            self.ev(node.value)
            self.env = saved
            return UNKNOWN
        if kind is cst.Lambda:
            saved = dict(self.env)
            for p in node.params.params:
                self.env[p.name.value] = UNKNOWN
            self.ev(node.body)
            self.env = saved
            return UNKNOWN
        if kind is cst.NamedExpr:
            val = self.ev(node.value)
            self.bind(node.target, val)
            return val
        self._ev_children(node)
        return UNKNOWN

    def _ev_children(self, node: cst.CSTNode) -> None:
        for child in node.children:
            if _is_expression(child):
                self.ev(child)
            else:
                self._ev_children(child)

    def attribute(self, node: cst.Attribute) -> V:
        key = dotted(node)
        if id(node) not in self.x.callees and (node.attr.value in self.x.def_names or (
                key is not None and key.partition(".")[0] in self.x.ref_names)):
            self.x.references.add(node.attr.value)
        if key and key in self.env:
            return self.env[key]
        attr = node.attr.value
        names = self.x.q(node)
        if names:
            return _function_value(names) or UNKNOWN
        base = self.ev(node.value)
        if base.inst and id(node) not in self.x.callees:
            # `step = trainer.train_step`: a method of a project class read as a value may be called
            # from anywhere, so its callers are not all known (facts.numerics.bind_parameters)
            self.x.references.add(attr)
        if attr == "data":
            cut_params = base.param_cuts
            if key and key.startswith("self.") and key.count(".") == 2 and self.cls and key.split(".")[1] in self.cls.params:
                cut_params = cut_params | {(self.x.where(node), key)}
            return V(cut=".data", cut_span=self.x.where(node), tensor=True, params=base.params,
                     param_cuts=cut_params, leaf=True)
        if attr == "indices":
            # topk/sort/max indices: integers, never differentiable
            return V(cut="indices", cut_span=self.x.where(node), tensor=True, computed=True)
        if attr in ("shape", "ndim", "dtype", "device", "is_cuda", "requires_grad", "training"):
            return V(const=True)
        if attr in ("T", "mT", "H", "real", "values"):
            return base
        if isinstance(node.value, cst.Name) and node.value.value == "self":
            # an attribute __init__ did not set to a parameter or module: a buffer, a config value
            return UNKNOWN
        if len(base.inst) == 1:
            sub = self.x.member(next(iter(base.inst)), attr)  # `self.model.encoder` of a class here
            if sub is not None:
                return sub
        # `outputs.embeds` of a model's output is that output's (a learned layer's: dense)
        return V(params=base.params, cut=base.cut, cut_span=base.cut_span, const=base.const,
                 numpy=base.numpy, param_cuts=base.param_cuts, dense=base.dense)

    def binop(self, node: cst.BinaryOperation) -> V:
        left = self.ev(node.left)
        right = self.ev(node.right)
        op = type(node.operator)
        if op is cst.Divide:
            self.check_divide(node, left, right, node.right, numerator=node.left)
            if number(node.left) == 1 and right.one_plus_exp and not right.nograd:
                self.add_305(node, "1 / (1 + exp(-x))", "sigmoid")
            if left.exp and right.sum_exp and not left.nograd:
                # measured: exp(z) / exp(z).sum() at z = [100, 1] is [nan, 0] with a NaN gradient
                self.add_305(node, "exp(z) / exp(z).sum()", "softmax")
        if op is cst.Power:
            exponent = number(node.right)
            if exponent == 0.5:
                self.check_sqrt(node, node.left, left, "** 0.5", need_tensor=True)
        return self.binop_value(op, left, right, node.left, node.right, node)

    def binop_value(self, op, left: V, right: V, lnode, rnode, node) -> V:
        res = self._binop_value(op, left, right, lnode, rnode, node)
        if op in (cst.Add, cst.Subtract):
            terms = left.cut_terms | right.cut_terms
            for side, other in ((left, right), (right, left)):
                if side.cut in _TERM_CUTS and side.cut_span is not None and not side.const \
                        and not other.nograd and (other.tensor or other.computed):
                    terms |= {(side.cut_span, side.cut)}
            if terms and not res.nograd:
                res = replace(res, cut_terms=terms)
        elif op is cst.Multiply and (number(lnode) is not None or number(rnode) is not None):
            # `0.1 * aux_loss` keeps what the term is made of
            res = replace(res, cut_terms=left.cut_terms | right.cut_terms)
        return res

    def _binop_value(self, op, left: V, right: V, lnode, rnode, node) -> V:
        base = _combine([left, right])
        ln = number(lnode) if lnode is not None else None
        rn = number(rnode) if rnode is not None else None
        if op is cst.Power:
            if rn == 2:
                return replace(base, sq=True, tensor=left.tensor, dense=left.dense)
            return base
        if op is cst.Multiply:
            if lnode is not None and rnode is not None and self.x.code(lnode) == self.x.code(rnode):
                return replace(base, sq=True, dense=left.dense)
            for lit, other in ((ln, right), (rn, left)):
                if lit is not None and lit < 0 and (other.sq or other.sumsq):
                    return replace(base, nonpos=True)  # -0.5 * x**2 (a Gaussian's exponent)
                if lit is not None and lit > 0 and other.nonpos:
                    return replace(base, nonpos=True)
                if lit is not None and lit > 0 and other.sq:
                    return replace(base, sq=True, dense=other.dense)  # 2 * s**2 is a square too
            if rn is not None and 0 < rn < 1 and left.unit in (None, "loose"):
                return replace(base, unit="strict" if left.unit else None)
            return replace(base, unit=left.unit if rn is not None and abs(rn) <= 1 else None)
        if op is cst.Divide and left.nonpos and (right.sq or right.sumsq or (rn is not None and rn > 0)):
            return replace(base, nonpos=True)  # -x**2 / (2 * s**2)
        if op is cst.Divide and left.exp and right.sum_exp:
            # a hand-written softmax: what it feeds (cross-entropy, log) sees probabilities
            return replace(base, prob="softmax", dense=True)
        if op is cst.Subtract:
            if ln == 1 and right.prob == "sigmoid":
                return replace(base, prob="one_minus_sigmoid", prob_node=right.prob_node)
            if right.is_max or (rnode is not None and _mentions_max(rnode)):
                return replace(base, max_shifted=True)
            return base
        if op is cst.Add:
            if (left.sq or left.sumsq) and (right.sq or right.sumsq):
                if left.const or right.const:
                    # a positive constant squared inside the root is the eps (sqrt(d**2 + 1**2))
                    return replace(base, clamped=True)
                return replace(base, sumsq=True, dense=left.dense and right.dense)
            if left.sq or left.sumsq or right.sq or right.sumsq:
                return replace(base, clamped=True)
            if (ln == 1 and right.exp) or (rn == 1 and left.exp):
                exp_v = right if ln == 1 else left
                return replace(base, one_plus_exp=True, const=exp_v.const)
            if left.prob or right.prob:
                p = left if left.prob else right
                return replace(base, prob=p.prob, shifted=True)
            # two learned outputs added (x + self.prompts(x)) cancel exactly with probability 0;
            # a difference of two (proj(a) - proj(b)) is 0 whenever a == b, so it is not dense
            return replace(base, clamped=True, dense=left.dense and right.dense)
        return base

    # -- calls ---------------------------------------------------------------------------------
    def call(self, node: cst.Call) -> V:
        func = node.func
        self.x.calling[id(func)] = node
        self.record_call(func)
        self._record_passed(node)
        names = self.x.q(func)
        if names:
            return self.qualified_call(node, names)
        if type(func) is cst.Attribute:
            recv = func.value
            meth = func.attr.value
            if meth in ("manual_backward", "backward") and type(recv) is cst.Name and recv.value == "self":
                return self.method_call(node, recv, meth)
            if type(recv) is cst.Name and recv.value in ("self", "cls") or (
                    type(recv) is cst.Call and type(recv.func) is cst.Name and recv.func.value == "super"):
                callee = self.ev(func)
                return self.instance_call(node, callee, owner=dotted(func))
            key = dotted(func)
            if key and key in self.env:
                return self.instance_call(node, self.env[key], owner=key)
            if type(recv) is cst.Name and recv.value in self.x.local_classes and meth == "apply":
                self._args_ev(node)
                return V(computed=True, tensor=True)
            return self.method_call(node, recv, meth)
        if type(func) is cst.Name:
            fname = func.value
            if fname in self.env or fname in self.globals:
                return self.instance_call(node, self.env.get(fname, self.globals.get(fname, UNKNOWN)), owner=fname)
            if fname in self.x.local_classes:
                self._args_ev(node)
                if fname in self.x.autograd_classes:
                    return UNKNOWN
                return V(inst=frozenset({fname}), leaf=True)
            return self.builtin_call(node, fname)
        callee = self.ev(func)
        return self.instance_call(node, callee, owner=None)

    def record_call(self, func: cst.BaseExpression) -> None:
        """An edge of the call graph (callee as written), and `func` is not a read of a value."""
        self.x.callees.add(id(func))
        text = dotted(func)
        if text is None and type(func) is cst.Attribute and type(func.value) is cst.Call and isinstance(
                func.value.func, cst.Name) and func.value.func.value == "super" and not func.value.args:
            text = "super()." + func.attr.value
        if text is not None:
            self.calls.setdefault(Call(text, nograd=self.nograd > 0, args=self._shapes(func)))

    def _shapes(self, func: cst.BaseExpression) -> tuple[tuple[str, str], ...]:
        """The models and criteria a call passes (Call.args), for callers of other files."""
        node = self.x.calling.get(id(func))
        if node is None or not node.args or type(func) is cst.Attribute and type(func.value) is not cst.Name:
            return ()
        names = self.x.q(func)
        if names and all(n.startswith(("torch.", "numpy.")) or n == "torch" or n.partition(".")[0] in _STDLIB
                         for n in names):
            return ()
        if not names and not self._may_call_project(func):
            return ()
        out = []
        position = 0
        unknown = []
        for a in node.args:
            if a.star:
                return (("*", ""),)
            key = a.keyword.value if a.keyword is not None else str(position)
            position += a.keyword is None
            shape = _shape(self.ev(a.value))
            if shape:
                out.append((key, shape))
            elif a.keyword is not None:
                unknown.append(key)
        # what else it passes, so that a parameter left to its default is told apart
        if position:
            out.append(("#", str(position)))
        if unknown:
            out.append(("=", ",".join(unknown)))
        if type(func) is cst.Attribute and not names and func.value.value not in ("self", "cls"):
            # `trainer.train_step(...)`: the class of the instance, for callers of its method
            out.append(("@", next(iter((self.env.get(func.value.value) or self.globals[func.value.value]).inst))))
        return tuple(out)

    def _may_call_project(self, func: cst.Name | cst.Attribute) -> bool:
        """Whether a callee no import names may be a function, class or method of the project
        whose callers a join reads (facts.numerics.bind_parameters): not a builtin, a local value
        (`fn(x)`), an attribute holding a value (`self.fc(x)`), or a method of a value that is no
        instance of one class (a receiver of unknown class leaves the join unknown anyway)."""
        if type(func) is cst.Name:
            name = func.value
            if name in self.x.def_names or name in self.x.local_classes:
                return True
            return not (name in self.env or name in self.globals or name in _BUILTINS)
        head = func.value.value
        if head in ("self", "cls"):
            return dotted(func) not in self.env
        held = self.env.get(head) or self.globals.get(head)
        return held is not None and len(held.inst) == 1

    def _args_ev(self, node: cst.Call) -> list[V]:
        return [self.ev(a.value) for a in node.args]

    def instance_call(self, node: cst.Call, callee: V, owner: str | None) -> V:
        vals = self._args_ev(node)
        ref = self.x.open_param(callee) if owner is not None else None
        if ref is not None:
            inp = _arg(node, 0, "input")
            if inp is not None:
                self.param_loss(node, None, ref, inp, self.ev(inp))
            out = V(computed=True, tensor=_combine(vals).tensor)
            self.param_outputs[id(out)] = (out, ref)
            return out
        if callee.crit:
            inp = _arg(node, 0, "input")
            if inp is not None:
                # a function-valued criterion (no constructor call): no fix renames it
                self.check_loss(node, callee.crit, inp, self.ev(inp), crit_node=callee.crit_node, owner=owner,
                                fixable=callee.crit_node is not None, default=self.x.default_param(callee))
            first = self.ev(inp) if inp is not None else UNKNOWN
            return V(computed=True, tensor=True, cut=first.cut, cut_span=first.cut_span, const=first.const)
        if callee.callret:
            first = vals[0] if vals else UNKNOWN
            return V(prob=callee.callret, computed=True, tensor=True, params=first.params,
                     out=first.out, cut=first.cut, cut_span=first.cut_span)
        if callee.inst:
            return V(out=callee.inst, computed=True, tensor=True, params=True, dense=True)
        if owner in ("self", "self.forward") and self.cls is not None:
            # `self.forward(x)` is `self(x)` (hooks aside)
            return V(out=frozenset({self.cls.name}), computed=True, tensor=True, params=True, dense=True)
        if owner and owner.startswith("self.") and owner.count(".") == 1 and (
                callee.module or callee.params or self.cls is None or owner[5:] not in self.cls.methods):
            # a submodule (or an attribute set outside __init__): its parameters carry gradient
            # whatever its input
            carries = callee.module or callee.params or bool(callee.inst)
            return V(computed=True, tensor=True, params=carries, dense=carries)
        if callee.module:
            return V(computed=True, tensor=True, params=True, dense=True)
        if owner and owner.startswith("self.") and owner.count(".") == 1 and self.cls is not None:
            made = self.method_returns(owner[5:])
            if made is not None and (made.crit or made.callret):
                return made  # `crit = self.get_loss()`: a method that returns a criterion
        res = _combine(vals)
        if callee == UNKNOWN:
            # An unknown callable (a model passed as an argument, a factory's result): what it
            # returns is unknown, never "cut" because its inputs were made by torch.tensor().
            return V(computed=True, tensor=res.tensor)
        return replace(res, rg=frozenset(), tensor=res.tensor)

    def method_returns(self, meth: str) -> V | None:
        """What a short method of this class returns (`return nn.BCELoss()`, `return self.crit`):
        its returned calls and attributes evaluated once, merged, with its parameters unknown and
        no sites recorded; None for any other method."""
        cls = self.cls
        if meth in cls.returned:
            return cls.returned[meth]
        fn = cls.method_nodes.get(meth)
        exprs = _short_returns(fn) if fn is not None else None
        if not exprs:
            cls.returned[meth] = None
            return None
        cls.returned[meth] = UNKNOWN  # a method that calls itself
        walk = FunctionWalk(self.x, meth, cls, quiet=True)
        ps = fn.params
        for p in (*ps.posonly_params, *ps.params, *ps.kwonly_params, ps.star_arg, ps.star_kwarg):
            if isinstance(p, cst.Param):
                walk.env[p.name.value] = UNKNOWN
        self.x.muted += 1
        try:
            vals = [walk.ev(e) for e in exprs]
        finally:
            self.x.muted -= 1
        made = vals[0]
        for v in vals[1:]:
            made = merge(made, v)
        cls.returned[meth] = made
        return made

    def builtin_call(self, node: cst.Call, fname: str) -> V:
        vals = self._args_ev(node)
        pos, kw = _args(node)
        if fname in ("float", "int", "bool") and vals:
            v = vals[0]
            if v.nograd:
                return replace(v, cut=v.cut)
            return V(cut=f"{fname}()", cut_span=self.x.where(node), computed=True)
        if fname in ("len", "range", "isinstance", "hasattr", "getattr", "print", "str", "repr", "type", "id"):
            return V(const=True)
        if fname == "max" and len(pos) == 2:
            res = _combine(vals)
            return replace(res, clamped=True)
        if fname == "sum" and vals:
            return _combine(vals[:1])
        if fname == "pow" and len(pos) == 2 and number(pos[1]) == 0.5:
            self.check_sqrt(node, pos[0], vals[0], "pow(x, 0.5)", need_tensor=True)
        if fname == "Variable":
            return self.variable(node, kw)
        res = _combine(vals)
        return replace(res, rg=frozenset())

    def variable(self, node: cst.Call, kw: dict) -> V:
        rg = kw.get("requires_grad")
        if rg is not None and isinstance(rg, cst.Name) and rg.value == "True":
            return V(cut="Variable(..., requires_grad=True)", cut_span=self.x.where(node), leaf=True, tensor=True)
        return V(leaf=True, tensor=True)

    def qualified_call(self, node: cst.Call, names: frozenset[str]) -> V:
        def isq(group) -> bool:
            return not names.isdisjoint(group)

        pos, kw = _args(node)
        if isq(GRADCHECK):
            self.record_gradcheck(node)
        vals = self._args_ev(node)
        first_node = _arg(node, 0, "input")
        first = self.ev(first_node) if first_node is not None else UNKNOWN
        span = self.x.where(node)
        if isq(SOFTMAX):
            return self.prob_value("softmax", node, first)
        if isq(SIGMOID):
            return self.prob_value("sigmoid", node, first)
        if isq(LOG_SOFTMAX):
            return replace(_combine([first]), prob="log_softmax", tensor=True)
        if isq(LOGSIGMOID):
            return replace(_combine([first]), prob="logsigmoid", tensor=True)
        for qn, kind in LOSS_FUNCTIONS.items():
            if qn in names:
                if first_node is not None:
                    self.check_loss(node, kind, first_node, first, crit_node=None)
                return V(computed=True, tensor=True, cut=first.cut, cut_span=first.cut_span, const=first.const)
        for qn, kind in LOSS_MODULES.items():
            if qn in names:
                return V(crit=kind, crit_node=node, module=True)
        for qn, kind in PROB_MODULES.items():
            if qn in names:
                return V(callret=kind, module=True)
        if "torch.nn.Sequential" in names:
            last = vals[-1] if vals else UNKNOWN
            return V(module=True, callret=last.callret)
        if "torch.nn.Parameter" in names or "torch.nn.parameter.Parameter" in names:
            return V(leaf=True, tensor=True, params=True)
        if isq(TENSOR_FROM_DATA):
            if all(v.const for v in vals):
                rg = kw.get("requires_grad")
                if isinstance(rg, cst.Name) and rg.value == "True":
                    return _TRAINABLE  # torch.tensor([1., 2.], requires_grad=True): a trainable leaf
                return V(const=True, leaf=True, tensor=True)
            return V(cut=f"{_short(names)}(...)", cut_span=span, leaf=True, tensor=True)
        if isq(VARIABLE):
            return self.variable(node, kw)
        if isq(FACTORIES):
            rg = kw.get("requires_grad")
            if isinstance(rg, cst.Name) and rg.value == "True":
                # a trainable leaf (torch.zeros(..., requires_grad=True)): carries gradient
                return V(leaf=True, tensor=True, params=True)
            return V(const=True, leaf=True, tensor=True)
        for qn, why in CUTTING_FUNCTIONS.items():
            if qn in names:
                return V(cut=why, cut_span=span, tensor=True, computed=True)
        if any(n.startswith("torch.nn.") and _short_of(n)[:1].isupper() for n in names):
            return V(module=True, leaf=True)
        if "torch.log" in names:
            if first_node is not None:
                self.check_log(node, first_node, first)
            return replace(_combine(vals), tensor=True)
        if "torch.log1p" in names:
            if first_node is not None and first.exp and not first.nograd:
                self.add_305(node, "log1p(exp(x))", "softplus")
            return replace(_combine(vals), tensor=True)
        if "torch.exp" in names:
            if first.prob == "log_softmax":
                # exp(log_softmax(x)) is softmax(x): probabilities again
                return replace(_combine([first]), prob="softmax", tensor=True, dense=True)
            return replace(_combine([first]), exp=not (first.max_shifted or first.nonpos), tensor=True,
                           const=first.const)
        if isq({"torch.sum", "torch.mean"}):
            return self.reduce_value(first, mean="torch.mean" in names)
        if isq({"torch.sqrt", "torch.rsqrt"}):
            short = "rsqrt" if "torch.rsqrt" in names else "sqrt"
            if first_node is not None:
                self.check_sqrt(node, first_node, first, f"torch.{short}", need_tensor=False)
            res = replace(_combine([first]), tensor=True)
            if first.var and short == "sqrt":
                res = replace(res, norm="sqrt(var)")
            return res
        if "torch.pow" in names and len(pos) >= 2:
            e = number(pos[1])
            if e == 0.5:
                self.check_sqrt(node, pos[0], first, "torch.pow(x, 0.5)", need_tensor=False)
            if e == 2:
                return replace(_combine([first]), sq=True, tensor=True, dense=first.dense)
            return replace(_combine(vals), tensor=True)
        if "torch.square" in names:
            return replace(_combine([first]), sq=True, tensor=True, dense=first.dense)
        if isq({"torch.norm", "torch.linalg.norm", "torch.linalg.vector_norm", "torch.frobenius_norm"}):
            return replace(_combine([first]), norm="norm()", tensor=True, dense=first.dense)
        if "torch.std" in names:
            return replace(_combine([first]), norm="std()", tensor=True)
        if "torch.var" in names:
            return replace(_combine([first]), var=True, tensor=True)
        if isq({"torch.acos", "torch.asin", "torch.arccos", "torch.arcsin"}):
            if first_node is not None:
                self.check_acos(node, first_node, first, _short(names))
            return replace(_combine([first]), tensor=True)
        if isq({"torch.clamp", "torch.clip", "torch.clamp_min"}):
            lo = _arg(node, 1, "min")
            hi = _arg(node, 2, "max") if "torch.clamp_min" not in names else None
            return self.clamp_value(first, lo, hi)
        if isq({"torch.maximum", "torch.fmax", "torch.max"}) and len(pos) == 2 and number(pos[1]) is None:
            return replace(_combine(vals), clamped=True, tensor=True)
        if isq({"torch.div", "torch.true_divide", "torch.divide"}) and len(pos) >= 2:
            den = self.ev(pos[1])
            self.check_divide(node, first, den, pos[1], numerator=pos[0])
            return replace(_combine(vals), tensor=True)
        if "torch.reciprocal" in names:
            if first.one_plus_exp and not first.const:
                self.add_305(node, "reciprocal(1 + exp(-x))", "sigmoid")
            return replace(_combine(vals), tensor=True)
        if "torch.where" in names and len(pos) >= 3:
            self.check_where(node, pos[1:3])
            return replace(_combine(vals[1:3]), tensor=True, safe_where=True, clamped=True)
        if isq({"torch.logsumexp", "torch.special.logsumexp", "torch.amax"}) or (
                "torch.max" in names and len(pos) + len(kw) >= 1):
            return replace(_combine(vals), tensor=True, is_max=True)
        if isq({"torch.autograd.backward"}):
            if first_node is not None:
                self.backward(node, first_node)
            return V(const=True)
        if any(n.startswith(("numpy.", "np.")) or n == "numpy" for n in names):
            return V(cut="numpy", cut_span=span, numpy=True, computed=True)
        if any(n.startswith("math.") for n in names):
            return V(const=True)
        if any(n.startswith("torch.") for n in names):
            return replace(_combine(vals), tensor=True, rg=frozenset())
        # an imported function of another library (or of the project): no facts
        res = _combine(vals)
        shorts = {n.rsplit(".", 1)[-1] for n in names}
        if len(shorts) == 1:
            short = shorts.pop()
            if short[:1].isupper():
                # maybe an instance of a class of the project: the project index resolves the
                # name as written here to the class, or to nothing outside the project
                written = dotted(node.func)
                return V(inst=frozenset({written}) if written else frozenset(), leaf=True)
        return replace(res, rg=frozenset())

    def prob_value(self, kind: str, node: cst.Call, first: V) -> V:
        # softmax and sigmoid outputs are strictly positive: dense
        return V(prob=kind, prob_node=node, tensor=True, computed=True, params=first.params, dense=True,
                 out=frozenset(), cut=first.cut, cut_span=first.cut_span, const=first.const,
                 param_cuts=first.param_cuts)

    def reduce_value(self, r: V, mean: bool) -> V:
        res = replace(_combine([r]), tensor=True, rg=r.rg, dense=r.dense)
        if r.sq or r.sumsq:
            res = replace(res, sumsq=True)
        if r.exp and not mean:
            res = replace(res, sum_exp=True)
        return res

    def clamp_value(self, r: V, lo: cst.BaseExpression | None, hi: cst.BaseExpression | None) -> V:
        res = replace(r, sq=False, norm=None, one_plus_exp=False, sum_exp=False, computed=True)
        lo_n = number(lo) if lo is not None else None
        hi_n = number(hi) if hi is not None else None
        if lo is not None and not (isinstance(lo, cst.Name) and lo.value == "None"):
            positive = lo_n is None or lo_n > 0
            if positive:
                res = replace(res, clamped=True, sumsq=False)
        if lo is not None and hi is not None:
            lo_strict = lo_n is None or lo_n > -1
            hi_strict = hi_n is None or hi_n < 1
            if lo_n is not None and hi_n is not None and (lo_n < -1 or hi_n > 1):
                res = replace(res, unit=None)
            else:
                res = replace(res, unit="strict" if lo_strict and hi_strict else "loose")
        if r.prob:
            res = replace(res, shifted=True)
        return res

    def method_call(self, node: cst.Call, recv_node: cst.BaseExpression, meth: str) -> V:
        r = self.ev(recv_node)
        vals = self._args_ev(node)
        pos, kw = _args(node)
        span = self.x.where(node)
        if meth == "softmax":
            return self.prob_value("softmax", node, r)
        if meth == "sigmoid" and not pos:
            return self.prob_value("sigmoid", node, r)
        if meth == "log_softmax":
            return replace(_combine([r]), prob="log_softmax", tensor=True)
        if meth == "log" and not pos and not kw:
            self.check_log(node, recv_node, r)
            return replace(_combine([r]), tensor=True)
        if meth == "log1p" and not pos and r.exp and not r.nograd:
            self.add_305(node, "log1p(exp(x))", "softplus")
        if meth == "exp" and not pos and r.prob == "log_softmax":
            return replace(_combine([r]), prob="softmax", tensor=True, dense=True)
        if meth == "exp" and not pos:
            return replace(_combine([r]), exp=not (r.max_shifted or r.nonpos), tensor=True, const=r.const)
        if meth in ("sum", "mean", "nansum") and not r.numpy:
            return self.reduce_value(r, mean=meth == "mean")
        if meth in ("add", "add_") and pos and number(pos[0]) == 1 and r.exp:
            return replace(_combine([r]), one_plus_exp=True, tensor=True)
        if meth in ("add", "add_") and pos and (r.sq or r.sumsq):
            return replace(_combine([r]), clamped=True, tensor=True)
        if meth in ("sqrt", "rsqrt") and not pos:
            self.check_sqrt(node, recv_node, r, f".{meth}()", need_tensor=False)
            res = replace(_combine([r]), tensor=True)
            return replace(res, norm="sqrt(var)") if r.var and meth == "sqrt" else res
        if meth in ("pow", "pow_") and pos:
            e = number(pos[0])
            if e == 0.5:
                self.check_sqrt(node, recv_node, r, ".pow(0.5)", need_tensor=False)
            if e == 2:
                return replace(_combine([r]), sq=True, tensor=True, dense=r.dense)
        if meth in ("max", "amax", "logsumexp"):
            return replace(_combine([r]), is_max=True, tensor=True)
        if meth == "square" and not pos:
            return replace(_combine([r]), sq=True, tensor=True, dense=r.dense)
        if meth == "norm" and not r.numpy:
            return replace(_combine([r]), norm="norm()", tensor=True, dense=r.dense)
        if meth == "std" and not r.numpy:
            return replace(_combine([r]), norm="std()", tensor=True)
        if meth == "var" and not r.numpy:
            return replace(_combine([r]), var=True, tensor=True)
        if meth in ("acos", "asin", "arccos", "arcsin", "acos_", "asin_"):
            self.check_acos(node, recv_node, r, meth)
            return replace(_combine([r]), tensor=True)
        if meth in ("clamp", "clip", "clamp_", "clip_"):
            return self.clamp_value(r, _arg(node, 0, "min"), _arg(node, 1, "max"))
        if meth in ("clamp_min", "clamp_min_"):
            return self.clamp_value(r, _arg(node, 0, "min"), None)
        if meth in ("div", "div_", "true_divide", "divide") and pos:
            self.check_divide(node, r, vals[0], pos[0], numerator=recv_node)
            return replace(_combine([r, vals[0]]), tensor=True)
        if meth == "reciprocal" and r.one_plus_exp and not r.const:
            self.add_305(node, "(1 + exp(-x)).reciprocal()", "sigmoid")
        if meth == "where" and len(pos) >= 2:
            # x.where(cond, other): x is the kept branch
            self.check_where(node, [recv_node, pos[1]])
            return replace(_combine([r, vals[1]]), tensor=True, safe_where=True, clamped=True)
        if meth in ("requires_grad_",):
            truth = not (pos and isinstance(pos[0], cst.Name) and pos[0].value == "False")
            key = dotted(recv_node)
            if r.module or (r.inst and not r.params):
                return r
            if truth and key and r.computed and not r.leaf and not r.nograd:
                ev = (self.x.where(node), key)
                self.env[key] = replace(r, rg=r.rg | {ev})
                return replace(r, rg=r.rg | {ev})
            if truth and r.leaf and r.const and r.tensor:
                # `W = torch.zeros(n, m); W.requires_grad_()`: a trainable leaf from now on
                if key:
                    self.env[key] = _TRAINABLE
                return _TRAINABLE
            return r
        if meth in ("backward", "manual_backward"):
            host = dotted(recv_node) or ""
            if meth == "manual_backward" or (pos and host.split(".")[-1] in _BACKWARD_HOSTS):
                if pos:
                    self.backward(node, pos[0])
            else:
                target = recv_node
                if isinstance(target, cst.Call) and isinstance(target.func, cst.Attribute) and \
                        target.func.attr.value == "scale" and target.args:
                    target = target.args[0].value
                self.backward(node, target)
            return V(const=True)
        if meth in CUTTING_METHODS:
            if r.nograd:
                return replace(r, computed=True)
            return V(cut=CUTTING_METHODS[meth], cut_span=span, tensor=meth.startswith(("detach", "arg", "round")),
                     params=r.params, leaf=meth.startswith("detach"),
                     param_cuts=r.param_cuts | self._param_cut(recv_node, meth), computed=True)
        if meth in _MOVE:
            return r
        if meth in KEEP:
            return replace(r, crit=None, callret=None, module=False, inst=frozenset(), dense=r.dense and not r.module,
                           tensor=r.tensor or bool(r.prob))
        if meth in ("apply",) and isinstance(recv_node, cst.Name) and recv_node.value in self.x.autograd_classes:
            return V(computed=True, tensor=True)
        if meth in ("item",):
            return V(cut=".item()", cut_span=span, computed=True)
        # unknown arguments (sizes, dims) leave the receiver's cut; one that carries gradient
        # (`x.matmul(W)` with W trainable) does not
        carried = any(v.params and not v.nograd for v in vals)
        res = replace(_combine([r] + vals), rg=r.rg if meth in _ARITH else frozenset(),
                      cut=r.cut if r.nograd and not carried else None,
                      cut_span=r.cut_span if r.nograd and not carried else None,
                      const=r.const and not carried, tensor=r.tensor)
        return res

    def _param_cut(self, recv_node: cst.BaseExpression, meth: str) -> frozenset:
        key = dotted(recv_node)
        if meth.startswith("detach") and key and key.startswith("self.") and key.count(".") == 1 and \
                self.cls and key[5:] in self.cls.params:
            return frozenset({(self.x.where(recv_node), key + ".detach()")})
        return frozenset()

    # -- the checks ----------------------------------------------------------------------------
    def hazard_quiet(self) -> bool:
        return self.quiet or self.nograd > 0

    def param_output(self, v: V) -> tuple[str, str, int] | None:
        """The open parameter whose call made `v` (`model(x)` with `model` a parameter), if any."""
        called = self.param_outputs.get(id(v))
        return called[1] if called is not None and called[0] is v else None

    def param_loss(self, node: cst.Call, kind: str | None, criterion: tuple[str, str, int] | None,
                   inp_node: cst.BaseExpression, inp: V, extra: tuple = ()) -> None:
        """A loss whose criterion or input model is a parameter no caller of this file binds: a site
        that holds for what the project's callers pass (facts.numerics.bind_parameters)."""
        if self.hazard_quiet() or inp.nograd:
            return
        model = self.param_output(inp)
        if not model and not (criterion and (inp.prob in ("softmax", "sigmoid") or inp.out)):
            return
        data = [*_param_data("criterion", criterion), *_param_data("model", model),
                ("input", self.x.code(inp_node)[:80]), *extra]
        if kind is not None:
            data.append(("loss", _LOSS_NAMES[kind]))
        if not model:
            data.append(("input_prob", inp.prob or ""))
        self.x.add(Site("probability_into_loss", "parameters", self.x.span(node), detail=_LOSS_NAMES.get(kind, ""),
                        classes=tuple(sorted(inp.out)) if not model and not inp.prob else (), data=tuple(data)))

    def check_loss(self, node: cst.Call, kind: str, inp_node: cst.BaseExpression, inp: V,
                   crit_node: cst.Call | None, owner: str | None = None, fixable: bool = True,
                   default: tuple[str, str, int] | None = None) -> None:
        """`default`: the criterion is this parameter's constructor default (Extractor.binding); the
        site then holds unless a caller in the project passes another (facts.numerics.default_holds)."""
        if self.hazard_quiet() or inp.nograd:
            return
        extra = (*_param_data("criterion", default), ("criterion_default", "crit:" + kind)) if default else ()
        if self.param_output(inp) is not None:
            self.param_loss(node, kind, None, inp_node, inp, extra)
            return
        want = "softmax" if kind == "ce" else "sigmoid"
        loss = {"ce": "cross_entropy", "bce": "binary_cross_entropy",
                "bce_logits": "binary_cross_entropy_with_logits"}[kind]
        span = self.x.span(node)
        if inp.prob == want:
            pieces = self.loss_pieces(node, inp_node, inp, crit_node, owner) if fixable else None
            self.x.add(Site("probability_into_loss", "local", span, detail=loss, pieces=pieces,
                            data=(("loss", loss), ("input", self.x.code(inp_node)[:80]), *extra)))
        elif inp.out and not inp.prob:
            self.x.add(Site("probability_into_loss", "model-output", span, detail=loss, classes=tuple(sorted(inp.out)), want=want,
                            data=(("loss", loss), ("input", self.x.code(inp_node)[:80]), *extra), element=inp.out_elem))

    def check_log(self, node: cst.Call, arg_node: cst.BaseExpression, a: V) -> None:
        if self.hazard_quiet() or a.nograd:
            return
        span = self.x.span(node)
        if a.prob in ("softmax", "sigmoid", "one_minus_sigmoid") and not a.shifted:
            self.x.add(Site("log_of_probability", a.prob, span, detail=a.prob, pieces=self.log_pieces(arg_node, a)))
        elif a.out and not a.prob and not a.shifted:
            self.x.add(Site("log_of_probability", "model-output", span, detail="model output", classes=tuple(sorted(a.out)),
                            want="probability", element=a.out_elem))
        elif (model := self.param_output(a)) is not None:
            # the output of a model parameter: what the project's callers pass decides
            self.x.add(Site("log_of_probability", "parameters", span, detail="model output",
                            data=tuple(_param_data("model", model))))
        elif a.one_plus_exp:
            self.add_305(node, "log(1 + exp(x))", "softplus")
        elif a.sum_exp:
            self.add_305(node, "log(sum(exp(x)))", "logsumexp")

    def add_305(self, node: cst.CSTNode, pattern: str, instead: str) -> None:
        if self.hazard_quiet():
            return
        self.x.add(Site("hand_written_unstable", instead, self.x.span(node), detail=pattern))

    def check_sqrt(self, node: cst.CSTNode, arg_node: cst.BaseExpression, a: V, how: str, need_tensor: bool) -> None:
        if self.hazard_quiet() or a.nograd or a.numpy or a.clamped or not a.params or a.dense:
            return  # no gradient carried (RULES.md: "carries gradient"), or never exactly zero
        if not (a.sq or a.sumsq):
            return
        if need_tensor and not a.tensor:
            return
        what = "sum of squares" if a.sumsq else "square"
        self.x.add(Site("sqrt_near_zero", how, self.x.span(node), detail=what, pieces=Pieces(operand=self.x.expr(arg_node))))

    def check_divide(self, node: cst.CSTNode, num: V, den: V, den_node: cst.BaseExpression,
                     numerator: cst.BaseExpression | None = None) -> None:
        if self.hazard_quiet() or not den.norm or den.clamped or den.nograd or num.nograd:
            return
        if not (den.params or num.params) or den.dense:
            return  # nothing trainable upstream, or the norm of a learned projection (never 0)
        if self.cls is not None and self.cls.quiet:
            return
        self.x.add(Site("divide_by_norm", den.norm, self.x.span(node), detail=self.x.code(den_node)[:80]))

    def check_acos(self, node: cst.Call, arg_node: cst.BaseExpression, a: V, fn: str) -> None:
        if self.hazard_quiet() or a.nograd or a.unit == "strict" or not a.params:
            return
        kind = "loose-clamp" if a.unit == "loose" else "unclamped"
        self.x.add(Site("acos_near_one", kind, self.x.span(node), detail=fn.rstrip("_")))

    def check_where(self, node: cst.Call, branches: list[cst.BaseExpression]) -> None:
        if self.hazard_quiet():
            return
        for br in branches:
            found = self._unsafe_op(br)
            if found:
                op, operand = found
                self.x.add(Site("unsafe_where_branch", op, self.x.span(br), detail=operand))

    def _unsafe_op(self, br: cst.BaseExpression) -> tuple[str, str] | None:
        unsafe = {"log", "sqrt", "rsqrt", "reciprocal", "acos", "arccos", "asin", "arcsin", "log2", "log10"}
        if isinstance(br, cst.BinaryOperation) and isinstance(br.operator, cst.Divide):
            den = br.right
            dv = self.memo.get(id(den), UNKNOWN)
            nv = self.memo.get(id(br.left), UNKNOWN)
            # A denominator without gradient still poisons the numerator's: 0 * (1/0) = NaN. But a
            # plain name (a config value, a python number) is not known to be a tensor that can be 0.
            if number(den) is None and dv.tensor and not dv.clamped and not dv.safe_where and not (
                    nv.nograd and dv.nograd) and (nv.params or dv.params):
                return "division", self.x.code(den)
            return None
        if isinstance(br, cst.Call):
            names = self.x.q(br.func)
            operand = None
            op = None
            if names:
                for n in names:
                    short = n.rsplit(".", 1)[-1]
                    if n.startswith("torch.") and short in unsafe:
                        op = short
                operand = _arg(br, 0, "input")
            elif isinstance(br.func, cst.Attribute) and br.func.attr.value in unsafe and not br.args:
                op = br.func.attr.value
                operand = br.func.value
            if op and operand is not None:
                ov = self.memo.get(id(operand), UNKNOWN)
                if not ov.nograd and not ov.clamped and not ov.safe_where and number(operand) is None \
                        and ov.unit != "strict" and ov.params:
                    return op, self.x.code(operand)
        return None

    def backward(self, node: cst.Call, target: cst.BaseExpression) -> None:
        """At a backward call: what the backpropagated value is made of."""
        v = self.ev(target)
        direct = dotted(target)
        for where, name in sorted(v.rg, key=lambda e: (e[0].line, e[0].column)):
            # Only the loss itself: a tensor made to require grad and then used in a computation
            # (adversarial inputs, optimised images) is a legitimate leaf.
            if name != direct and not _LOSSY.search(name):
                continue
            self.x.add(Site("requires_grad_on_loss", "requires-grad", where.span, detail=name,
                            data=(("backward_line", self.x.span(node).line),)))
        if v.cut_terms and not v.nograd:
            for where, how in sorted(v.cut_terms, key=lambda e: (e[0].line, e[0].column)):
                self.x.add(Site("loss_term_cut", how, where.span, detail=self.x.code(target)[:60],
                                data=(("backward_line", self.x.span(node).line),)))
        if v.cut in _GRAPH_BREAKS and not v.rg:
            where = v.cut_span.line if v.cut_span else None
            self.x.add(Site("loss_graph_break", v.cut, self.x.span(node), detail=self.x.code(target)[:60],
                            data=(("through", v.cut), ("line", where))))

    def check_forward_output(self) -> None:
        """A forward whose output is cut from the module's parameters."""
        if self.cls is None or not self.cls.module_like:
            return
        if _stop_gradient(self.cls.name):
            return
        for node in self.return_nodes:
            val = self.memo.get(id(node.value))
            if val is None:
                continue
            for where, text in sorted(val.param_cuts, key=lambda e: (e[0].line, e[0].column)):
                if not _stop_gradient(text):
                    self.x.add(Site("forward_output_cut", "parameter-cut", where.span, detail=text))
            if isinstance(node.value, cst.Tuple):
                continue
            if val.cut in ("torch.no_grad()", ".detach()", ".data", ".detach_()") and val.params:
                text = self.x.code(node.value)
                if _stop_gradient(text) or _integer_named(text):
                    continue
                span = val.cut_span.span if val.cut_span else self.x.span(node)
                self.x.add(Site("forward_output_cut", "output-cut", span, detail=val.cut))

    def record_gradcheck(self, node: cst.Call) -> None:
        first = _arg(node, 0, "func")
        if first is None:
            return
        found: set[str] = set()

        class Names(cst.CSTVisitor):
            # names as written; the project index resolves them from this module
            def visit_Name(self, n: cst.Name) -> None:
                found.add(n.value)

            def visit_Attribute(self, n: cst.Attribute) -> None:
                text = dotted(n)
                if text:
                    found.add(text[: -len(".apply")] if text.endswith(".apply") else text)

        first.visit(Names())
        self.x.gradchecked.update(found)

    # -- the pieces a fix rewrites --------------------------------------------------------------
    def log_pieces(self, arg_node: cst.BaseExpression, a: V) -> Pieces | None:
        """The probability call, when it is written inside the log (`log(softmax(x))`,
        `log(1 - sigmoid(x))`)."""
        p = a.prob_node
        if p is None:
            return None
        inline = arg_node is p
        if a.prob == "one_minus_sigmoid":
            inline = isinstance(arg_node, cst.BinaryOperation) and arg_node.right is p
        return Pieces(producer=self.x.call_text(p)) if inline else None

    def loss_pieces(self, node: cst.Call, inp_node: cst.BaseExpression, inp: V, crit_node: cst.Call | None,
                    owner: str | None = None) -> Pieces | None:
        """The probability call written as the loss's input, the loss call and its criterion."""
        p = inp.prob_node
        if p is None or inp_node is not p:
            return None
        x = self.x
        return Pieces(producer=x.call_text(p), call=x.call_text(node),
                      criterion=x.call_text(crit_node) if crit_node is not None else None,
                      criterion_local=crit_node is not None and self._constructed_here(crit_node, node, owner))

    def _constructed_here(self, crit_node: cst.Call, call: cst.Call, owner: str | None) -> bool:
        """The criterion is built inline, or in this function under a local name called only here:
        changing its class then changes no other call."""
        if call.func is crit_node:
            return True
        if id(crit_node) not in self.memo or not owner or "." in owner or self.fn_node is None:
            return False
        mentions = 0
        stack: list[cst.CSTNode] = [self.fn_node.body]
        while stack:
            n = stack.pop()
            if isinstance(n, cst.Name) and n.value == owner:
                mentions += 1
            stack.extend(n.children)
        # one binding and one call
        return mentions == 2


# Moving or re-typing a module or a tensor keeps everything known about it.
_EXPRESSION_TYPES: dict[type, bool] = {}


_BUILTINS = frozenset(dir(builtins))
_STDLIB = frozenset(sys.stdlib_module_names)


def _param_data(role: str, ref: tuple[str, str, int] | None) -> list[tuple[str, Any]]:
    """A 'parameters' site's record of the open parameter playing `role` ('criterion', 'model'):
    its name, the function it belongs to ('f', 'C.m', 'C.__init__' for `self.criterion` set from
    `__init__`'s parameter), and its position after self (-1: keyword-only)."""
    if ref is None:
        return []
    return [(role + "_param", ref[1]), (role + "_of", ref[0]), (role + "_at", ref[2])]


def _is_expression(node: cst.CSTNode) -> bool:
    """isinstance(node, cst.BaseExpression) without the ABC machinery's cost, once per class."""
    cls = type(node)
    known = _EXPRESSION_TYPES.get(cls)
    if known is None:
        known = _EXPRESSION_TYPES[cls] = isinstance(node, cst.BaseExpression)
    return known


_MOVE = frozenset("to cuda cpu float double half bfloat16 train eval type".split())
_AUG = {cst.AddAssign: cst.Add, cst.SubtractAssign: cst.Subtract, cst.MultiplyAssign: cst.Multiply,
        cst.DivideAssign: cst.Divide, cst.PowerAssign: cst.Power}
_ARITH = frozenset("add sub mul div neg mean sum add_ sub_ mul_ div_ abs pow float double half to view reshape "
                   "squeeze unsqueeze".split())
_LOSSY = re.compile(r"loss|cost|objective|obj\b", re.I)
# How a term of a loss sum is cut: the value is kept, its gradient is not.
_TERM_CUTS = frozenset({".item()", ".detach()", ".tolist()", "float()"}) | frozenset(
    f"{n}(...)" for n in ("tensor", "as_tensor", "Tensor", "FloatTensor", "scalar_tensor"))
_GRAPH_BREAKS = frozenset({".item()", ".tolist()", ".numpy()", "argmax", "argmin", "round", "numpy", "float()",
                           "int()", "comparison", "Variable(..., requires_grad=True)"}) | frozenset(
    f"{n}(...)" for n in ("tensor", "as_tensor", "from_numpy", "Tensor", "FloatTensor", "DoubleTensor",
                           "LongTensor", "scalar_tensor"))


_DATA_PATH = re.compile(r"(^|/)(transforms?|datasets?|data|dataloaders?|preprocessing|augment\w*)(/|\.py$)|"
                        r"(^|/)\w*(transforms?|dataset|augment\w*|collate|processing_\w+|image_processing\w*|"
                        r"feature_extraction\w*|tokenization\w*)\.py$")


def _data_pipeline(path: str) -> bool:
    """Data loading and preprocessing code (datasets, transforms, processors): no gradient flows there.
    An optimizer's own file is quiet too (its maths runs under no_grad)."""
    return bool(_DATA_PATH.search(path.replace("\\", "/")))


def _stop_gradient(text: str) -> bool:
    words = {w.lower() for part in re.findall(r"[A-Za-z0-9]+", text) for w in _tokens(part)}
    return bool(words & _STOP_WORDS)


_INTEGER_WORDS = frozenset("indices index idx ids mask masks positions position_ids lengths counts".split())


def _integer_named(text: str) -> bool:
    """Indices, masks and counts are integers or booleans by convention: no gradient to cut."""
    words = {w.lower() for part in re.findall(r"[A-Za-z0-9]+", text) for w in _tokens(part)}
    return bool(words & _INTEGER_WORDS)


def _short(names: frozenset[str]) -> str:
    return sorted(names)[0].rsplit(".", 1)[-1]


def _short_of(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _mentions_max(node: cst.BaseExpression) -> bool:
    """Whether a subtracted expression names a max (x.max(...), torch.amax, x_max)."""
    stack: list[cst.CSTNode] = [node]
    seen = 0
    while stack and seen < 64:
        n = stack.pop()
        seen += 1
        if isinstance(n, cst.Name):
            if "max" in n.value.lower():
                return True
        elif isinstance(n, cst.Attribute):
            if "max" in n.attr.value.lower():
                return True
            stack.append(n.value)
        elif isinstance(n, cst.Call):
            stack.append(n.func)
        elif isinstance(n, cst.Subscript):
            stack.append(n.value)
    return False


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
    if isinstance(node, cst.BinaryOperation) and isinstance(
            node.operator, cst.Add | cst.Subtract | cst.Multiply | cst.Divide | cst.Power | cst.FloorDivide):
        return False
    return True


def _wraps(node: cst.BaseExpression) -> bool:
    """Whether the expression needs parentheses as an operand (of a unary minus)."""
    return not (isinstance(node, cst.Name | cst.Attribute | cst.Call | cst.Subscript) or node.lpar)


def extract(src) -> NumericsFacts:
    """Numerics facts of one parsed file (gradlint.source.SourceFile)."""
    return Extractor(src).run()
