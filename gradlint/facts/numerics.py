"""Numerics and gradient-path facts as pure data, and the project-wide queries the rules make on them.

The extractor (gradlint/source/numerics.py) reads libcst trees; this module does not, so rules
and the project index can use these records without importing a parser. Class names in these
records are as written in their file; the queries resolve them through the project index
(gradlint.facts.project) from the module that wrote them.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from gradlint.facts import callgraph
from gradlint.facts.callgraph import passed_everywhere, project_calls
from gradlint.facts.losses import is_loss_class, prediction_passed
from gradlint.facts.project import MAX_DEPTH, ProjectIndex, Scope
from gradlint.findings import SourceSpan
from gradlint.model.ir import Extern

# The probability kinds a value can carry ('one_minus_sigmoid' is `1 - sigmoid(x)`).
PROBABILITY = frozenset({"softmax", "sigmoid"})


@dataclass(frozen=True)
class Expr:
    """An expression as written, for a rule that rewrites source without a parser."""

    span: SourceSpan
    text: str
    # a name, attribute, call or subscript, or parenthesised: usable as an operand as it is
    atom: bool = False
    # `text + eps` adds to the whole expression (a literal, an atom, or + - * / // ** at the top)
    sum_safe: bool = False


@dataclass(frozen=True)
class CallText:
    """A call as written: its callee, its arguments, and where each piece is."""

    span: SourceSpan
    callee: Expr
    # the callee names something through the file's imports (torch.sigmoid, F.softmax, BCELoss),
    # rather than a method of a value (x.sigmoid)
    resolved: bool
    receiver: Expr | None = None  # what precedes the last dot of an attribute callee
    name_span: SourceSpan | None = None  # the name after that dot
    args: str = ""  # the arguments as written, joined with ", " (keywords and stars kept)
    nargs: int = 0
    only: Expr | None = None  # the argument, when there is exactly one and it is positional


@dataclass(frozen=True)
class Pieces:
    """The source pieces of a site that a rule may rewrite."""

    operand: Expr | None = None  # the value the pattern applies to (the argument of a sqrt)
    # the call that made the operand, when it is written inline (`softmax(x)` in `log(softmax(x))`,
    # `sigmoid(x)` as a loss's input)
    producer: CallText | None = None
    call: CallText | None = None  # the call the site is on (a loss call)
    criterion: CallText | None = None  # the constructor call of the loss module the call uses
    # the criterion is built inline, or in this function under a local name used only for this call
    criterion_local: bool = False
    # the operand is clamped at 0 or more (`(1 - c ** 2).clamp(0, 1)`, through a name too): never
    # negative, so an eps added keeps it off 0
    floored: bool = False


@dataclass(frozen=True)
class Site:
    """One place where the extractor saw a numerics or gradient-path pattern.

    `kind` names what was seen ('log_of_probability', 'sqrt_near_zero'...), `variant` how
    ('softmax', 'model-output'...); the rules select the kinds they report on. `classes`/`want`
    make the site conditional on the rest of the run: it holds only when the forward of one of
    `classes` returns `want` ('softmax', 'sigmoid', 'probability' for either, 'module' for an
    nn.Module subclass). Sites without classes hold as they are.
    """

    kind: str
    variant: str
    span: SourceSpan
    detail: str = ""
    classes: tuple[str, ...] = ()  # as written in the file (local, imported, or qualified)
    want: str | None = None
    pieces: Pieces | None = None  # what a fix would rewrite, when it is written where one can
    info: bool = False  # report at info severity whatever the rule's default
    data: tuple[tuple[str, Any], ...] = ()
    # the function holding the site, qualified within its module ('f', 'C.m', 'f.<locals>.g');
    # '' for module-level code
    function: str = ""
    # the value is this element of the classes' output (`a, b = model(x)`, `model(x)[1]`): where a
    # forward returns a tuple, `want` is asked of that element
    element: int | None = None


@dataclass(frozen=True)
class NumClass:
    """What the run needs to know about a class defined in a file."""

    name: str
    span: SourceSpan
    bases: tuple[str, ...] = ()  # qualified where the base is imported, else as written
    has_forward: bool = False
    # 'softmax', 'sigmoid', 'log_softmax'... when every return agrees (with no forward of its own:
    # what nn.Sequential's gives over the modules its __init__ hands to `super().__init__`)
    returns: str | None = None
    returns_via: tuple[str, ...] = ()  # forward returns the output of an instance of these classes
    # forward returns a tuple of this length on every path: each element's kind where they agree
    returns_items: tuple[str | None, ...] = ()
    # `returns` holds only with these `__init__` parameters at their defaults (name, position
    # after self or -1, the default's code): a test in forward reads the setting they make
    returns_assuming: tuple[tuple[str, int, str, str], ...] = ()  # (..., the attribute it sets)
    autograd_function: bool = False
    # a hand-written backward that is meant to be the forward's derivative: not a straight-through
    # or gradient-reversal/scaling one, which a gradcheck fails by design (source/backwards.py)
    custom_backward: bool = False
    # methods whose whole body returns an attribute path of the instance (`def get_encoder(self):
    # return self.encoder`), with that path: a getter another file calls
    getters: tuple[tuple[str, str], ...] = ()
    # the positional parameters of its own forward after self, in order (facts.losses reads a
    # loss class's prediction among them)
    forward_params: tuple[str, ...] = ()
    # the file calls instances of the class (`crit = ContrastiveLoss(); crit(a, b, y)`): its
    # forward's callers are joined there, and what they pass outweighs a convention (facts.losses)
    forward_called: bool = False


@dataclass(frozen=True)
class Call:
    """A call made in a function: the callee as written ('name', 'mod.name', 'self.m', 'cls.m',
    'super().m', 'obj.attr.m') and whether it runs under no_grad/inference_mode (a with-block, or
    the calling function's own decorator)."""

    callee: str
    nograd: bool = False
    # the models and criteria it passes, by parameter position ('0', '1'...) or keyword:
    # 'crit:bce_logits', 'inst:Net' (the class as written in the caller's file); and how many
    # positional arguments ('#': '2'), the other keywords ('=': 'lr,eps'), or ('*', '') for a
    # call with `*args`/`**kwargs`; for `obj.m(...)` with `obj` an instance of one class, that
    # class as written ('@': 'Trainer'); a function of the project passed ('fn:deviance', as
    # written); for a call of the calling function's own parameter, read nowhere but as a callee
    # (`loss_fn(model(x), y)`), that parameter and its position after self ('&': 'loss_fn@2')
    args: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Function:
    """A function or method of a file and the calls it makes (the project call graph's edges)."""

    name: str  # qualified within its module: 'f', 'C.m', 'C.Inner.m', 'f.<locals>.g'; '<module>'
    nograd: bool = False  # decorated with torch.no_grad() / torch.inference_mode()
    calls: tuple[Call, ...] = ()


@dataclass(frozen=True)
class NumericsFacts:
    sites: tuple[Site, ...] = ()
    classes: tuple[NumClass, ...] = ()
    # names (as written) passed (as `X.apply`, a wrapper, or an alias) to torch.autograd.gradcheck
    gradchecked: frozenset[str] = frozenset()
    # alias or wrapper function name -> autograd.Function class it applies
    apply_aliases: tuple[tuple[str, str], ...] = ()
    # the file's import bindings into torch: local name -> the torch names it may stand for, in
    # name order (how a fix spells a replacement function)
    torch_imports: tuple[tuple[str, tuple[str, ...]], ...] = ()
    functions: tuple[Function, ...] = ()
    # last parts of function names read as values rather than called (`fn = helper`,
    # `checkpoint(self.block, x)`): such a function may be called from anywhere
    references: frozenset[str] = frozenset()
    # the outputs of instances of classes (as written) this file backpropagates, with the element
    # of a returned tuple (-1: the whole output): `frames, loss = self.network(x); loss.backward()`
    # (and of a method of a class of another file, as `Class.method`, with the entry of a returned
    # dict: `out = model.loss_function(x); out["loss"].backward()`)
    backpropagated_outputs: tuple[tuple[str, int | str], ...] = ()
    # attributes the file assigns on objects other than `self` (`model.method = 'logits'`)
    attrs_set: frozenset[str] = frozenset()
    # top-level functions of the file whose every return is a probability (`def predict(m, x):
    # return torch.sigmoid(m(x))`), with its kind: what a call of one in another file gives
    function_probs: tuple[tuple[str, str], ...] = ()
    # top-level functions of the file whose every return is a module whose call gives a
    # probability (`def make_disc(): return nn.Sequential(..., nn.Sigmoid())`), with its kind:
    # what calling the module a call of one in another file builds gives
    function_modules: tuple[tuple[str, str], ...] = ()
    # module-level names bound once to a criterion (`criterion = nn.CrossEntropyLoss()`,
    # `ce = partial(F.cross_entropy, label_smoothing=0.1)`), with its kind ('ce', 'bce',
    # 'bce_logits'): what a call of one imported into another file computes
    criteria: tuple[tuple[str, str], ...] = ()
    # of `references`, the names read as values only as arguments of calls that record them
    # (`fit(model, data, deviance)`: 'fn:deviance' in Call.args): where the callee calls that
    # parameter, it calls the function (facts.callgraph)
    passed_functions: frozenset[str] = frozenset()


def forward_returns(scope: Scope | None, name: str, _depth: int = 0, element: int | None = None) -> str | None:
    """What the forward of the class `name` (as written in `scope`'s module) returns, when every
    class the name may stand for agrees (a conditional import of two that disagree gives None:
    precision first). Classes outside the project give None. With `element`, what that element
    of a returned tuple is (of a returned tensor, its rows are what the tensor is)."""
    if scope is None or _depth > MAX_DEPTH:
        return None
    if name.startswith("fn:"):
        # the output of calling a function of another project file (`fn:predict`): what its
        # every return is (NumericsFacts.function_probs); not an element of a tuple
        return None if element is not None else function_returns_kind(scope, name[3:])
    if name.startswith("mk:"):
        # the output of calling the module a function of another project file builds
        # (`mk:make_disc`): what its every returned module gives (NumericsFacts.function_modules)
        return None if element is not None else function_returns_kind(scope, name[3:], modules=True)
    quals = scope.resolve(name)
    if not quals:
        return None
    kinds: set[str | None] = set()
    for q in quals:
        rec = scope.index.numclass(q)
        if rec is None:
            kinds.add(None)
            continue
        home = scope.at(q)
        if element is not None and rec.returns_items:
            items = rec.returns_items
            kinds.add(items[element] if -len(items) <= element < len(items) else None)
        elif rec.has_forward:
            if rec.returns and rec.returns_assuming and not _defaults_hold(scope.index, q, rec.returns_assuming):
                kinds.add(None)  # a call of the class passes another setting than the default
            elif rec.returns:
                kinds.add(rec.returns)
            elif rec.returns_via:
                kinds.add(_agree([forward_returns(home, c, _depth + 1, element) for c in rec.returns_via]))
            else:
                kinds.add(None)
        elif rec.returns:
            # no forward of its own, but nn.Sequential's, over the modules its __init__ hands to
            # `super().__init__` (source/numerics_sequential.py)
            kinds.add(rec.returns)
        else:
            # An inherited forward: the first base that is a class of the project decides.
            inherited = None
            for base in rec.bases:
                if any(scope.index.numclass(b) is not None for b in home.resolve(base) if b != q):
                    inherited = forward_returns(home, base, _depth + 1, element)
                    break
            kinds.add(inherited)
    return _agree(list(kinds))


def function_returns_kind(scope: Scope, name: str, modules: bool = False) -> str | None:
    """The probability kind every return of the project function `name` (as written in `scope`'s
    module) is, when every function the name may stand for agrees; None otherwise. `modules`:
    the kind the call of every module it returns gives (NumericsFacts.function_modules)."""
    quals = scope.resolve(name)
    kinds: list[str | None] = []
    for q in quals:
        home, _, function = q.rpartition(".")
        mod = scope.index.module(home) if home else None
        facts = mod.facts.numerics if mod is not None else None
        table = (facts.function_modules if modules else facts.function_probs) if facts is not None else ()
        kinds.append(dict(table).get(function))
    return _agree(kinds) if kinds else None


def forward_assumes(scope: Scope | None, name: str) -> str:
    """The constructor defaults (`method='multiclass'`) that what the forward of the class `name`
    returns rests on (forward_returns), as a message says them; empty when none."""
    if scope is None:
        return ""
    quals = scope.resolve(name)
    rec = scope.index.numclass(quals[0]) if len(quals) == 1 else None
    if rec is None or not rec.returns_assuming:
        return ""
    return ", ".join(f"{param}={code}" for param, _at, code, _attr in rec.returns_assuming)


def _defaults_hold(index: ProjectIndex, qualified: str, assuming: tuple[tuple[str, int, str, str], ...]) -> bool:
    """Whether every call of the project class `qualified` leaves these `__init__` parameters at
    their defaults (no call: they hold), and no other file sets the attributes they make
    (`model.method = 'logits'`); False when a call passes one, or the calls cannot all be known
    (a subclass, the class read as a value, a file not read)."""
    module, _, cls = qualified.rpartition(".")
    for param, at, _code, attr in assuming:
        if passed_everywhere(index, module, cls + ".__init__", param, at, default="=default") != "=default":
            return False
        if attr_set_elsewhere(index, attr):
            return False
    return True


def attr_set_elsewhere(index: ProjectIndex, attr: str) -> bool:
    """Whether an attribute `attr` may be set after construction (`model.method = 'logits'`,
    `net.criterion = ProbLoss()`): a file that names it assigns it on an object other than
    `self` (NumericsFacts.attrs_set), or cannot be read, or too many files name it."""
    naming = _numerics_naming(index, "." + attr)
    return naming is None or any(facts is None or attr in facts.attrs_set for _name, facts in naming)


def _numerics_naming(index: ProjectIndex, word: str, also: str = "") -> list[tuple[str, NumericsFacts | None]] | None:
    """The numerics facts (None: not read) of the files whose text holds `word`, with module
    `also` among them, as a search for callers reads them (ProjectIndex.calling), in name order;
    None when more than MAX_CALLER_MODULES hold it."""
    mentions = index.mentioning(word)
    if len(mentions) > callgraph.MAX_CALLER_MODULES:
        return None
    out = []
    for name in sorted({*mentions, *([also] if also else [])}):
        mod = index.calling(name)
        out.append((mod.name if mod is not None else name, mod.facts.numerics if mod is not None else None))
    return out


def _agree(kinds: list[str | None]) -> str | None:
    distinct = set(kinds)
    if len(distinct) == 1:
        return distinct.pop()
    return None


def is_module_class(scope: Scope | None, name: str, _depth: int = 0) -> bool:
    """True when every class `name` may stand for is a project class deriving from torch.nn.Module."""
    if scope is None or _depth > MAX_DEPTH:
        return False
    quals = scope.resolve(name)
    if not quals:
        return False
    for q in quals:
        rec = scope.index.numclass(q)
        if rec is None or not any(_base_is_module(scope.at(q), b, _depth) for b in rec.bases):
            return False
    return True


def only_model(scope: Scope) -> str | None:
    """The name of the one model class the module defines, as written there, or None: a class with a
    forward deriving from torch.nn.Module (or a project module class) that no other class of the
    file builds or derives from (a submodule or a base is part of another model), and no loss
    or autograd Function. A second such class (a generator and its discriminator) makes it None."""
    mod = scope.index.modules.get(scope.module)
    facts = mod.facts.numerics if mod is not None else None
    if facts is None:
        return None
    memo = scope.index.memos.setdefault("only_model", {})
    if scope.module in memo:
        return memo[scope.module]
    names = {c.name for c in facts.classes}
    # the classes another class of the file builds (`self.enc = Encoder(...)`) or derives from
    inner: set[str] = set()
    for fn in facts.functions:
        owner = fn.name.partition(".")[0] if "." in fn.name else None
        if owner is not None:
            inner.update(c.callee for c in fn.calls if c.callee in names and c.callee != owner)
    for c in facts.classes:
        inner.update(b for b in c.bases if b in names and b != c.name)
    found = [c.name for c in facts.classes
             if c.has_forward and not c.autograd_function and c.name not in inner and is_module_class(scope, c.name)
             and not is_loss_class(scope.index, f"{scope.module}.{c.name}")]
    # (the class as the file writes it: resolved from the module's own scope, as a caller's
    # `inst:` shape is; its qualified name would resolve again from the module, where a function
    # of the same name as the file, `train` in train.py, hides it)
    memo[scope.module] = got = found[0] if len(found) == 1 else None
    return got


def _may_hold_parameters(scope: Scope | None, name: str) -> bool:
    """False only for a project class whose module the lowering built in full with no parametric
    layer and no module of another file (speechbrain's STFT, GccPhat, DelaySum: signal
    processing); anything not known may hold parameters."""
    if scope is None:
        return True
    quals = scope.resolve(name)
    if len(quals) != 1:
        return True
    nets = scope.index.networks(quals[0])
    if len(nets) != 1:
        return True
    net = nets[0]
    if net.params or net.recurrents or not net.forward_known:
        return True
    from gradlint.model.ir import Attention, Param, Recurrent, TransformerBlock, walk

    return any(isinstance(n, (Extern, Param, Recurrent, Attention, TransformerBlock))
               or (type(n).__name__ == "Opaque" and ("module" in n.what or "class" in n.what))
               for path in net.paths for n in walk(path))


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _base_is_module(scope: Scope, base: str, depth: int) -> bool:
    if base.startswith("torch.nn.") and _short(base)[:1].isupper() and _short(base) not in (
            "Parameter", "ParameterList", "ParameterDict"):
        return True
    if base in ("lightning.LightningModule", "pytorch_lightning.LightningModule",
                "lightning.pytorch.LightningModule", "transformers.PreTrainedModel"):
        return True
    return is_module_class(scope, base, depth + 1)


def holds(site: Site, scope: Scope | None) -> bool:
    """Whether a site's cross-module condition holds, seen from the site's own module."""
    if not site.classes:
        return True
    if site.want == "parametric":
        # a forward whose cut output ran only modules of these classes of other files: a cut
        # matters only where one of them may hold a parameter
        return any(_may_hold_parameters(scope, cls) for cls in site.classes)
    for cls in site.classes:
        if site.want == "module":
            if is_module_class(scope, cls):
                return True
            continue
        if site.want in ("module-path", "getter"):
            # `model.backbone.requires_grad = ...`: every class the name may stand for holds a
            # module at that path (not a Parameter such as `cls_token`); `model.get_encoder()`:
            # at the path its getter returns
            quals = scope.resolve(cls) if scope is not None else ()
            path = dict(site.data).get("model_path", "")
            if quals and all(_owns_module(scope.index, q, path if site.want == "module-path" else
                                          _getter_path(scope.index, q, dict(site.data).get("getter", "")))
                             for q in quals):
                return True
            continue
        kind = forward_returns(scope, cls, element=site.element)
        if kind is None:
            continue
        if site.want == "probability" and kind in PROBABILITY:
            return True
        if kind == site.want:
            return True
    return False


# The sites whose operand is a hazard where it is exactly zero (or ±1), once it carries gradient
_ZERO_HAZARDS = frozenset({"divide_by_norm", "acos_near_one", "sqrt_near_zero", "unsafe_where_branch"})
_WANT = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid", "binary_cross_entropy_with_logits": "sigmoid"}
# A criterion's short kind (what the front-end records, `crit:bce`) -> the loss function it computes.
LOSS_NAMES = {"ce": "cross_entropy", "bce": "binary_cross_entropy", "bce_logits": "binary_cross_entropy_with_logits"}


def bind_parameters(site: Site, scope: Scope | None) -> Site | None:
    """A site on a function's or method's parameters (variant 'parameters') as every caller in the
    project passes them: the site it then is, or None when a caller passes something unknown,
    callers disagree, none calls the function, or it is read as a value.

    A loss ('probability_into_loss') becomes 'local' or 'model-output'; the log of a model
    parameter's output ('log_of_probability') 'model-output'; a log or a loss of a tensor
    parameter (`def nll(probs, y): ... log(probs)`) what every caller passes for it (a softmax or
    sigmoid output: the probability's own variant, 'local' for a loss; a model's output:
    'model-output'), with the parameter's name (`passed`) for the message; `model.requires_grad = ...` on a
    model parameter ('requires_grad_on_module') 'module-attribute'. A parameter of `__init__`
    (`self.criterion = criterion`) is bound by the calls of the class."""
    if scope is None or not scope.module:
        return None
    data = dict(site.data)
    joined: dict[str, str] = {}
    only: str | None = None  # the model parameter read as the file's only model class
    # a hazard on a loss's prediction (or on what its forward hands a helper): the training step
    # that passes it is not seen, but what it passes there carries gradient (facts.losses)
    unseen = prediction_passed if site.kind in _ZERO_HAZARDS else None
    for role in ("criterion", "model", "tensor"):
        param = data.get(role + "_param")
        if not param:
            continue
        function = data.get(role + "_of") or site.function
        default = data.get(role + "_default")
        if role == "model" and default is None and site.kind in ("probability_into_loss", "log_of_probability") \
                and "." not in function and not project_calls(scope.index, scope.module, function):
            # a top-level function that no call in the project gives a model (`def train(model,
            # loader)` of a script): the model its file defines, when it defines one
            guess = only_model(scope)
            if guess is not None:
                only = param
                default = "inst:" + guess
        shape = passed_everywhere(scope.index, scope.module, function, param,
                                   int(data.get(role + "_at", -1)), default,
                                   unseen=unseen if role == "tensor" else None)
        if shape is None:
            return None
        joined[role] = shape
    model = joined.get("model")
    if only is not None and model is not None:
        # (no caller passes one: the message says the model is read as the file's only one)
        data["only_model"] = only
    if model is not None and not model.startswith("inst:"):
        return None
    tensor = joined.get("tensor")
    if tensor is not None and "branch" in data and site.kind in ("probability_into_loss", "log_of_probability"):
        # on some paths of the function only (`if not from_logits: return bce(pred, t)` then
        # `return bce_with_logits(pred, t)`): the path the callers take is not known
        return None
    if site.kind in _ZERO_HAZARDS:
        # `v / v.norm()`, `sqrt(sum(v ** 2))`, `acos(v)` on the parameter: every caller passes a
        # tensor that carries gradient (for a division or a root, one that may be all zero: not a
        # learned projection's output). Computed from several parameters (`tensor_any`), one of
        # them that every caller passes so is enough: its gradient reaches the hazard, and what
        # the function makes of them (`a - b`) may be zero whatever each is, as the same code
        # written at the call would be (`model(x) - t`: a learned output less a target).
        def carries(shape: str | None, mixed: bool = False) -> bool:
            # (a where's masked-out inputs are the data's, not the tensor's: any gradient will do)
            if site.kind in ("acos_near_one", "unsafe_where_branch") or mixed:
                return shape is not None and shape.startswith(("grad", "out:"))
            return shape == "grad"

        if "tensor_any" in data:
            for one in data["tensor_any"].split(","):
                name, _, at = one.rpartition("@")
                if carries(passed_everywhere(scope.index, scope.module, data.get("tensor_of") or site.function,
                                             name, int(at), unseen=unseen), mixed=True):
                    return replace(site, variant=data.get("how", site.variant), data=(("passed", name),))
            return None
        # (the pairwise distances of a tensor with itself are zero somewhere whatever it holds:
        # a learned layer's output will do, as for a value made from several parameters)
        if not carries(tensor, mixed=data.get("zeros") == "pairs"):
            return None
        return replace(site, variant=data.get("how", site.variant),
                       data=(("passed", data["tensor_param"]),))
    if tensor is not None and not tensor.startswith(("prob:", "out:")):
        return None
    if tensor is not None and "tensor_elem" in data:
        # an element unpacked from the parameter: the callers must pass a whole model output
        # (`out:Class`), whose forward's element it then is
        if not tensor.startswith("out:") or "@" in tensor:
            return None
        tensor = f"{tensor}@{data['tensor_elem']}"
    # a tensor parameter bound: which parameter, for the message (the callers made what it holds)
    # (and the expression the site reads of it, when that is a reshape or selection of it)
    passed = (("passed", data["tensor_param"]),) if tensor is not None else ()
    if passed and data.get("input") and data["input"] != data["tensor_param"]:
        passed += (("passed_as", data["input"]),)
    if site.kind == "log_of_probability":
        # (a log a torch.where keeps finite stays so, whatever the callers pass)
        guard = tuple((k, v) for k, v in site.data if k == "where_guarded")
        if tensor is not None:
            if tensor.startswith("prob:"):
                return replace(site, variant=tensor[5:], detail=tensor[5:], data=passed + guard)
            cls, element = _output_shape(tensor)
            return replace(site, variant="model-output", classes=(cls,), want="probability", data=passed + guard,
                           element=element)
        if model is None:
            return None
        return replace(site, variant="model-output", classes=(model[5:],), want="probability",
                       data=((("only_model", only),) if only else ()) + guard)
    if site.kind == "requires_grad_on_module":
        if model is None:
            return None
        if "model_path" in data:
            # `model.encoder.requires_grad = ...`: a module when the model's class owns one there
            if not _owns_module(scope.index, model[5:], data["model_path"]):
                return None
            return replace(site, variant="module-attribute", classes=(), want=None, data=())
        return replace(site, variant="module-attribute", classes=(model[5:],), want="module", data=())
    if site.kind != "probability_into_loss":
        return None
    loss = data.get("loss")
    crit = joined.get("criterion")
    if crit is not None and crit.startswith("inst:"):
        # a criterion of a project class (`self.criterion((seg, torch.sigmoid(e)), gts)` with
        # `criterion=JointEdgeSegLoss()` from every caller): what its forward does with the input
        prob = data.get("input_prob")
        elem = data.get("input_elem")
        if model is not None or tensor is not None or "input_keyword" in data or prob not in ("softmax", "sigmoid"):
            return None
        attr = data.get("criterion_attr")
        if attr and attr_set_elsewhere(scope.index, attr):
            return None  # `net.criterion = ProbLoss()` somewhere: the class it was built with is not the one called
        return _fed(site, prob, data.get("input", ""),
                    forward_feeds(scope.index, crit[5:], 0, "", int(elem) if elem is not None else None))
    if "input_elem" in data:
        return None  # a tuple passed to a criterion of torch's: not what it takes
    if crit is not None:
        if not crit.startswith("crit:"):
            return None
        loss = LOSS_NAMES.get(crit[5:])
    if loss not in _WANT:
        return None
    want = _WANT[loss]
    rest = tuple((k, v) for k, v in site.data if k in ("input",)) + (("loss", loss),) + passed
    if tensor is not None:
        if tensor.startswith("prob:"):
            return replace(site, variant="local", classes=(), want=None, data=rest, detail=loss) \
                if tensor[5:] == want else None
        cls, element = _output_shape(tensor)
        return replace(site, variant="model-output", classes=(cls,), want=want, data=rest, detail=loss, element=element)
    if model is not None:
        if only:
            rest += (("only_model", only),)
        return replace(site, variant="model-output", classes=(model[5:],), want=want, data=rest, detail=loss)
    if data.get("input_prob"):
        return replace(site, variant="local", classes=(), want=None, data=rest, detail=loss) \
            if data["input_prob"] == want else None
    if site.classes:
        return replace(site, variant="model-output", want=want, data=rest, detail=loss)
    return None


def imported_criterion(site: Site, scope: Scope | None) -> Site | None:
    """A probability passed to a name imported from another project module (variant
    'imported-criterion'): the loss site it is when that module binds the name to a criterion
    (NumericsFacts.criteria) that takes what the probability is not (a softmax into
    cross-entropy...); None else."""
    data = dict(site.data)
    written, prob = data.get("criterion_name", ""), data.get("input_prob", "")
    if scope is None or not written:
        return None
    kinds = set()
    for q in scope.resolve(written):
        module, _, name = q.rpartition(".")
        mod = scope.index.module(module) if module else None
        facts = mod.facts.numerics if mod is not None else None
        kind = dict(facts.criteria).get(name) if facts is not None else None
        if kind is None:
            return None
        kinds.add(kind)
    loss = LOSS_NAMES.get(kinds.pop()) if len(kinds) == 1 else None
    if loss not in _WANT or _WANT[loss] != prob:
        return None
    rest = tuple((k, v) for k, v in site.data if k == "input") + (("loss", loss),)
    return replace(site, variant="local", classes=(), want=None, data=rest, detail=loss)


def backpropagated_elsewhere(site: Site, scope: Scope | None) -> bool:
    """Whether a file of the project backpropagates the element of a class's output that a site
    in its forward's returned value is about (`returned_by`, `element`): a term the forward cut
    trains nothing only where someone calls backward on it. Callers are looked for in the files
    whose text names the class (at most MAX_CALLER_MODULES of them), as for other callers."""
    if scope is None or not scope.module:
        return False
    data = dict(site.data)
    cls, element = data.get("returned_by", ""), data.get("element", -1)
    qualified = f"{scope.module}.{cls}"  # (`VAE`, or `VAE.loss_function` for a method's return)
    naming = _numerics_naming(scope.index, cls.partition(".")[0], also=scope.module)
    return naming is not None and any(
        str(elem) == str(element) and qualified in scope.index.resolve(name, written)
        for name, facts in naming if facts is not None for written, elem in facts.backpropagated_outputs)


def bind_forward_call(site: Site, scope: Scope | None) -> Site | None:
    """A probability passed to an instance of a project class ('probability_passed': `crit(p, y)`
    with `crit = EdgeLoss()`, or an element of a tuple, `crit((seg, p), y)`), as the site the
    class's forward makes of it (forward_feeds): the loss or log site at this call, with the
    method (`through`) and its parameter (`passed`) for the message; None otherwise. Sound
    whatever other callers pass: the hazard is this call's."""
    if scope is None or not scope.module:
        return None
    data = dict(site.data)
    quals = scope.resolve(data.get("callee", ""))
    if len(quals) != 1:
        return None
    elem = data.get("arg_elem")
    return _fed(site, site.detail, data.get("input", ""), forward_feeds(
        scope.index, quals[0], int(data.get("arg_at", -1)), data.get("arg_keyword", ""),
        int(elem) if elem is not None else None))


def _fed(site: Site, prob: str, shown: str, feeds: list[tuple[Site, str, str]]) -> Site | None:
    """The first of `feeds` (forward_feeds) that is a hazard for a `prob` ('softmax', 'sigmoid')
    passed in, as a site at `site`'s call: a loss that wants logits of that kind, or a log."""
    for inner, function, param in feeds:
        data = (("input", shown), ("through", function), ("passed", param))
        if inner.kind == "probability_into_loss":
            loss = dict(inner.data).get("loss")
            if _WANT.get(loss) == prob:
                return replace(site, kind=inner.kind, variant="local", detail=loss, classes=(), want=None,
                               data=(("loss", loss), *data))
        elif inner.kind == "log_of_probability":
            return replace(site, kind=inner.kind, variant=prob, detail=prob, classes=(), want=None, data=data)
    return None


def forward_feeds(index: ProjectIndex, qualified: str, at: int, keyword: str,
                  elem: int | None = None) -> list[tuple[Site, str, str]]:
    """Where the forward of the project class `qualified` feeds its parameter at position `at`
    after self (or the one named `keyword`), or element `elem` of it (`seg, edge = inputs`), to
    a loss or a log, unchanged or reshaped, on every path: its own 'parameters' sites on that
    tensor alone, and those of a method of the class that forward calls with it, as
    `self.m(...)`, or of a top-level function of its file (defined once), on every path (GSCNN:
    `self.bce2d(edgein, edgemask)`; RTM3D's FocalLoss: `_neg_loss(out, target)`). Not in one
    branch of an `if`, which may be a setting that takes probabilities. Each as (site, the
    function it is in, its parameter). An inherited forward is not followed."""
    home, _, cls = qualified.rpartition(".")
    mod = index.module(home)
    facts = mod.facts.numerics if mod is not None else None
    if facts is None:
        return []
    rec = next((c for c in facts.classes if c.name == cls), None)
    if rec is None or not rec.has_forward:
        return []
    function = cls + ".forward"
    routes = [(function, at, keyword, elem, function)]
    defined = Counter(fn.name for fn in facts.functions)
    for fn in facts.functions:
        if fn.name != function:
            continue
        for call in fn.calls:
            args = dict(call.args)
            method = call.callee.startswith("self.") and call.callee.count(".") == 1
            # a function of the file defined once, which the name resolves to alone (not rebound
            # or imported under it too), neither the forward's parameter ('&') nor a def nested in it
            helper = "." not in call.callee and defined[call.callee] == 1 and call.callee not in facts.references \
                and "&" not in args and defined[f"{function}.<locals>.{call.callee}"] == 0 \
                and tuple(index.resolve(home, call.callee)) == (f"{home}.{call.callee}",) \
                and not _bound_otherwise(mod.facts.source or "", call.callee)
            if not (method or helper) or "?" in args or "*" in args or call.nograd:
                continue
            for key, shape in call.args:
                if not shape.startswith("param:"):
                    continue
                name, _, where = shape[6:].rpartition("@")
                position, _, part = where.partition("#")
                if (name != keyword if keyword else position != str(at)) or part != ("" if elem is None else str(elem)):
                    continue
                target = f"{cls}.{call.callee[5:]}" if method else call.callee
                # (shown as the class and the function, `FocalLoss:_neg_loss`, for a helper)
                shown = target if method else f"{cls}:{target}"
                routes.append((target, int(key), "", None, shown) if key.isdigit() else (target, -2, key, None, shown))
    out = []
    for function, position, name, part, shown in routes:
        for inner in facts.sites:
            got = dict(inner.data)
            if inner.variant != "parameters" or inner.function != function or got.get("tensor_of") != function \
                    or "branch" in got or any(k in got for k in ("criterion_param", "model_param")):
                continue
            if got.get("tensor_elem") != part or not (
                    got.get("tensor_param") == name if name else int(got.get("tensor_at", -2)) == position):
                continue
            out.append((inner, shown, got["tensor_param"]))
    return out


def _bound_otherwise(source: str, name: str) -> bool:
    """Whether a module's text binds `name` other than by its def: a module-level assignment
    (`_neg_loss = _safe`) or an import of it (`try: from fast import _neg_loss`)."""
    word = re.escape(name)
    return re.search(rf"(?m)^{word}\s*(?::[^=\n]*)?=(?!=)|^[ \t]*(?:from\s+\S+\s+)?import\b[^\n]*\b{word}\b", source) is not None


def _output_shape(shape: str) -> tuple[str, int | None]:
    """`out:Class` or `out:Class@1` (element 1 of a returned tuple): the class and the element."""
    cls, _, elem = shape[4:].partition("@")
    return cls, (int(elem) if elem.lstrip("-").isdigit() else None)


def _getter_path(index: ProjectIndex, qualified: str, method: str) -> str:
    """The attribute path the getter `method` of the project class `qualified` returns; '' when
    it is no getter (or the class is not known, or a subclass of the file may override it)."""
    module, _, cls = qualified.rpartition(".")
    mod = index.module(module) if module and method else None
    facts = mod.facts.numerics if mod is not None else None
    if facts is None:
        return ""
    rec = next((c for c in facts.classes if c.name == cls), None)
    if rec is None or any(cls in c.bases for c in facts.classes):
        return ""
    return dict(rec.getters).get(method, "")


def _owns_module(index: ProjectIndex, qualified: str, path: str) -> bool:
    """Whether instances of the project class `qualified` hold a module at attribute path `path`
    (`encoder`, `encoder.blocks`), as its model IR records them: a layer with parameters at or
    below the path, or a block of another file placed there. Unknown (a class without IR, a
    module without parameters, a tensor such as `weight`) is False."""
    below = path + "."
    for net in index.networks(qualified):
        names = [p.name for p in net.params] + [r.name for r in net.recurrents]
        todo = list(net.nodes)
        while todo:
            node = todo.pop()
            if isinstance(node, Extern):
                names.append(node.name)
            todo.extend(getattr(node, "body", ()))
        if any(n == path or n.startswith(below) for n in names):
            return True
    return False


def default_holds(site: Site, scope: Scope | None) -> Site | None:
    """A site on a criterion that is its parameter's constructor default (`criterion_default`):
    the site without those records, or None when a call in the project passes another value for
    the parameter. When the calls cannot all be known the default stands, as in its own file."""
    data = dict(site.data)
    default = data.get("criterion_default")
    if not default:
        return site
    if scope is not None and scope.module and passed_everywhere(
            scope.index, scope.module, data.get("criterion_of") or site.function, data.get("criterion_param", ""),
            int(data.get("criterion_at", -1)), default, unknown=default) != default:
        return None
    return replace(site, data=tuple((k, v) for k, v in site.data if not k.startswith("criterion_")))


def returned_kind(site: Site, scope: Scope | None) -> str | None:
    """The probability kind a conditional site's classes return (for the message)."""
    for cls in site.classes:
        kind = forward_returns(scope, cls, element=site.element)
        if kind:
            return kind
    return None
