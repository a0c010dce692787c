"""Numerics and gradient-path facts as pure data, and the run-wide queries the rules make on them.

The extractor (gradlint/source/numerics.py) reads libcst trees; this module does not, so rules
and the run index can use these records without importing a parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gradlint.findings import Fix, SourceSpan

# The probability kinds a value can carry ('one_minus_sigmoid' is `1 - sigmoid(x)`).
PROBABILITY = frozenset({"softmax", "sigmoid"})


@dataclass(frozen=True)
class Site:
    """One place a numerics/gradient-path rule may report.

    `classes`/`want` make the site conditional on the rest of the run: it holds only when the
    forward of one of `classes` returns `want` ('softmax', 'sigmoid', 'probability' for either,
    'module' for an nn.Module subclass). Sites without classes hold as they are.
    """

    code: str
    kind: str
    span: SourceSpan
    detail: str = ""
    classes: tuple[str, ...] = ()
    want: str | None = None
    fix: Fix | None = None
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
    # names passed (as `X.apply`, a wrapper, or an alias) to torch.autograd.gradcheck/gradgradcheck
    gradchecked: frozenset[str] = frozenset()
    # alias or wrapper function name -> autograd.Function class it applies
    apply_aliases: tuple[tuple[str, str], ...] = ()


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _records(index: Any, name: str) -> list[NumClass]:
    table = getattr(index, "numeric_classes", None) or {}
    return list(table.get(_short(name), ()))


def forward_returns(index: Any, name: str, _depth: int = 0) -> str | None:
    """What the forward of class `name` returns, when every definition of that name in the run
    agrees (two classes of one name that disagree give None: precision first)."""
    if _depth > 8:
        return None
    records = _records(index, name)
    if not records:
        return None
    kinds: set[str | None] = set()
    for rec in records:
        if rec.has_forward:
            if rec.returns:
                kinds.add(rec.returns)
            elif rec.returns_via:
                kinds.add(_agree([forward_returns(index, c, _depth + 1) for c in rec.returns_via]))
            else:
                kinds.add(None)
        else:
            # An inherited forward: the first base that is a class of the run decides.
            inherited = None
            for base in rec.bases:
                if _records(index, base) and _short(base) != rec.name:
                    inherited = forward_returns(index, base, _depth + 1)
                    break
            kinds.add(inherited)
    return _agree(list(kinds))


def _agree(kinds: list[str | None]) -> str | None:
    distinct = set(kinds)
    if len(distinct) == 1:
        return distinct.pop()
    return None


def is_module_class(index: Any, name: str, _depth: int = 0) -> bool:
    """True when every definition of `name` in the run derives from torch.nn.Module."""
    if _depth > 8:
        return False
    records = _records(index, name)
    if not records:
        return False
    for rec in records:
        if not any(_base_is_module(index, b, _depth) for b in rec.bases):
            return False
    return True


def _base_is_module(index: Any, base: str, depth: int) -> bool:
    if base.startswith("torch.nn.") and _short(base)[:1].isupper() and _short(base) not in (
            "Parameter", "ParameterList", "ParameterDict"):
        return True
    if base in ("lightning.LightningModule", "pytorch_lightning.LightningModule",
                "lightning.pytorch.LightningModule", "transformers.PreTrainedModel"):
        return True
    return is_module_class(index, base, depth + 1)


def holds(site: Site, index: Any) -> bool:
    """Whether a site's cross-module condition holds in this run."""
    if not site.classes:
        return True
    for cls in site.classes:
        if site.want == "module":
            if is_module_class(index, cls):
                return True
            continue
        kind = forward_returns(index, cls)
        if kind is None:
            continue
        if site.want == "probability" and kind in PROBABILITY:
            return True
        if kind == site.want:
            return True
    return False


def returned_kind(site: Site, index: Any) -> str | None:
    """The probability kind a conditional site's classes return (for the message)."""
    for cls in site.classes:
        kind = forward_returns(index, cls)
        if kind:
            return kind
    return None
