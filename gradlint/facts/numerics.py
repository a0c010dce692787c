"""Numerics and gradient-path facts as pure data, and the project-wide queries the rules make on them.

The extractor (gradlint/source/numerics.py) reads libcst trees; this module does not, so rules
and the project index can use these records without importing a parser. Class names in these
records are as written in their file; the queries resolve them through the project index
(gradlint.facts.project) from the module that wrote them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gradlint.facts.project import MAX_DEPTH, Scope
from gradlint.findings import SourceSpan

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


@dataclass(frozen=True)
class NumClass:
    """What the run needs to know about a class defined in a file."""

    name: str
    span: SourceSpan
    bases: tuple[str, ...] = ()  # qualified where the base is imported, else as written
    has_forward: bool = False
    returns: str | None = None  # 'softmax', 'sigmoid', 'log_softmax'... when every return agrees
    returns_via: tuple[str, ...] = ()  # forward returns the output of an instance of these classes
    autograd_function: bool = False
    custom_backward: bool = False


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


def forward_returns(scope: Scope | None, name: str, _depth: int = 0) -> str | None:
    """What the forward of the class `name` (as written in `scope`'s module) returns, when every
    class the name may stand for agrees (a conditional import of two that disagree gives None:
    precision first). Classes outside the project give None."""
    if scope is None or _depth > MAX_DEPTH:
        return None
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
        if rec.has_forward:
            if rec.returns:
                kinds.add(rec.returns)
            elif rec.returns_via:
                kinds.add(_agree([forward_returns(home, c, _depth + 1) for c in rec.returns_via]))
            else:
                kinds.add(None)
        else:
            # An inherited forward: the first base that is a class of the project decides.
            inherited = None
            for base in rec.bases:
                if any(scope.index.numclass(b) is not None for b in home.resolve(base) if b != q):
                    inherited = forward_returns(home, base, _depth + 1)
                    break
            kinds.add(inherited)
    return _agree(list(kinds))


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
    for cls in site.classes:
        if site.want == "module":
            if is_module_class(scope, cls):
                return True
            continue
        kind = forward_returns(scope, cls)
        if kind is None:
            continue
        if site.want == "probability" and kind in PROBABILITY:
            return True
        if kind == site.want:
            return True
    return False


def returned_kind(site: Site, scope: Scope | None) -> str | None:
    """The probability kind a conditional site's classes return (for the message)."""
    for cls in site.classes:
        kind = forward_returns(scope, cls)
        if kind:
            return kind
    return None
