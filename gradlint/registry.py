"""Rules by code: the Rule base class, registration by subclassing, and selection by code/prefix."""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping

from gradlint.findings import DOCS_URL, Finding, Fix, GraphNode, RuleInfo, Severity, SourceSpan, make_data

REQUIRED_SECTIONS = ("What it does", "Why is this bad?", "Example", "Use instead")
OPTIONAL_SECTIONS = ("Options", "Fix safety", "References")

_CODE = re.compile(r"^GL\d{3}$")
_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Option:
    """A per-rule option: its default, a converter that raises ValueError on bad input, and help."""

    default: Any
    convert: Callable[[Any], Any]
    help: str


def positive_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"expected a positive number, got {value!r}")
    return float(value)


def positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class Example:
    """A snippet a rule must flag (invalid) or must not flag (valid).

    kind: 'python' (source text) or 'onnx-text' (parsed with onnx.parser). For an invalid
    python example with a fix, `fixed` is the expected source after the fix. `files` adds other
    files of the same run (name -> source) for cross-file rules.
    """

    source: str
    kind: str = "python"
    fixed: str | None = None
    files: tuple[tuple[str, str], ...] = ()
    note: str = ""


@dataclass
class RuleContext:
    """What a rule sees of one file: its facts, its options, and the project index."""

    rule: "Rule"
    path: str
    facts: Any  # gradlint.facts.files.FileFacts
    options: Mapping[str, Any]
    # gradlint.facts.project.Scope: the project index as this file sees it (names resolve through
    # the file's own imports, to the class of that qualified name); None outside a run.
    index: Any = None
    # Codes enabled for this file: lets a rule give way to a more specific one on the same line.
    enabled: frozenset[str] = frozenset()

    def finding(
        self,
        message: str,
        span: SourceSpan | None = None,
        *,
        node: GraphNode | None = None,
        severity: Severity | None = None,
        fix: Fix | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Finding:
        rule = self.rule
        return Finding(
            code=rule.code,
            name=rule.name,
            message=message,
            severity=severity if severity is not None else rule.severity,
            path=self.path,
            span=span if span is not None else SourceSpan.point(1, 1),
            node=node,
            fix_title=rule.fix_title,
            fix=fix,
            data=make_data(data or {}),
        )


class Rule:
    """Base of every rule. Subclassing registers the rule; see STYLE.md for the contract."""

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity]
    summary: ClassVar[str]  # one line, for `gradlint rules` and SARIF's shortDescription
    # Which file kinds the rule reads: 'python', 'onnx'.
    inputs: ClassVar[frozenset[str]] = frozenset({"python"})
    fix_title: ClassVar[str | None] = None
    options: ClassVar[dict[str, Option]] = {}
    valid: ClassVar[list[Example]] = []
    invalid: ClassVar[list[Example]] = []
    default_enabled: ClassVar[bool] = True
    # GL0xx: reported whatever the selection says (a file that cannot be read is always news).
    always_on: ClassVar[bool] = False
    # Rules measured by the probe are documented here but produced by `gradlint probe` only.
    probe_only: ClassVar[bool] = False
    # What `gradlint probe` measures to give this rule's static findings a verdict
    # (gradlint/probe/join.py): 'vanishing_gain', 'exploding_gain' (the chain's measured gain),
    # 'activation_std', 'zero_weight_gradient', 'gradient_check', 'parameters_cut' and
    # 'loss_parameters_cut' (parameters that get no gradient), 'parameters_still_trained' (a
    # freeze that freezes nothing), 'first_nonfinite' (where the first NaN/Inf appeared),
    # 'not_measurable'; None: a finding's own predicted gain, if it has one.
    probe_measure: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("abstract", False):
            return
        _register(cls)

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        """Yield the findings of this rule for one file."""
        return iter(())

    # Derived, not declared: a rule can fix when one of its examples shows the fixed text.
    @classmethod
    def fixable(cls) -> bool:
        return any(ex.fixed is not None for ex in cls.invalid)

    @classmethod
    def doc(cls) -> str:
        return _dedent(cls.__doc__ or "")

    @classmethod
    def sections(cls) -> dict[str, str]:
        return parse_sections(cls.doc())

    @classmethod
    def url(cls) -> str:
        return DOCS_URL.format(name=cls.name)

    @classmethod
    def info(cls) -> RuleInfo:
        """This rule's metadata as data, for the reporters (which do not import the registry)."""
        doc = cls.doc()
        family = cls.__module__.split(".")[-2] if cls.__module__.count(".") >= 3 else None
        return RuleInfo(code=cls.code, name=cls.name, summary=cls.summary,
                        description=parse_sections(doc).get("What it does", cls.summary), doc=doc, url=cls.url(),
                        severity=cls.severity, tags=(family,) if family else ())


_RULES: dict[str, type[Rule]] = {}


def _dedent(text: str) -> str:
    import inspect

    return inspect.cleandoc(text)


def parse_sections(doc: str) -> dict[str, str]:
    """Split a docstring into its `## Section` parts."""
    sections: dict[str, str] = {}
    current = None
    lines: list[str] = []
    for line in doc.splitlines():
        # every rule's docstring is split when it registers: the test first spares the regex
        m = re.match(r"^##\s+(.*?)\s*$", line) if line.startswith("##") else None
        if m:
            if current is not None:
                sections[current] = "\n".join(lines).strip()
            current, lines = m.group(1), []
        elif current is not None:
            lines.append(line)
    if current is not None:
        sections[current] = "\n".join(lines).strip()
    return sections


def _register(cls: type[Rule]) -> None:
    code = getattr(cls, "code", None)
    if not isinstance(code, str) or not _CODE.match(code):
        raise TypeError(f"{cls.__name__}: code must look like GL123, got {code!r}")
    if code in _RULES and _RULES[code].__qualname__ != cls.__qualname__:
        raise TypeError(f"{cls.__name__}: code {code} is already taken by {_RULES[code].__name__}")
    if not _NAME.match(getattr(cls, "name", "")):
        raise TypeError(f"{cls.__name__}: name must be kebab-case")
    sections = parse_sections(_dedent(cls.__doc__ or ""))
    missing = [s for s in REQUIRED_SECTIONS if s not in sections]
    if missing:
        raise TypeError(f"{code}: docstring lacks section(s) {', '.join(missing)}")
    unknown = [s for s in sections if s not in REQUIRED_SECTIONS + OPTIONAL_SECTIONS]
    if unknown:
        raise TypeError(f"{code}: docstring has unknown section(s) {', '.join(unknown)}")
    if cls.options and "Options" not in sections:
        raise TypeError(f"{code}: a rule with options documents them under '## Options'")
    _RULES[code] = cls


_loaded = False


def load_rules() -> dict[str, type[Rule]]:
    """Import every module under gradlint.rules (registration happens on import)."""
    global _loaded
    if not _loaded:
        import gradlint.rules as pkg

        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            importlib.import_module(info.name)
        _loaded = True
    return dict(sorted(_RULES.items()))


def get_rule(code_or_name: str) -> type[Rule] | None:
    rules = load_rules()
    key = code_or_name.strip()
    if key.upper() in rules:
        return rules[key.upper()]
    for rule in rules.values():
        if rule.name == key.lower():
            return rule
    return None


def is_known_selector(selector: str) -> bool:
    sel = selector.strip().upper()
    if sel == "ALL":
        return True
    return bool(re.match(r"^GL\d{0,3}$", sel)) and any(code.startswith(sel) for code in load_rules())


def select_codes(select: tuple[str, ...] | None, extend_select: tuple[str, ...], ignore: tuple[str, ...]) -> frozenset[str]:
    """Codes enabled by a selection. Like ruff: the most specific selector wins, and at equal
    specificity ignore beats select. `None` select means the defaults (every rule on)."""
    rules = load_rules()
    selected: set[str] = set()
    for code, rule in rules.items():
        best_on = _specificity(code, tuple(select) + tuple(extend_select)) if select is not None else max(
            _specificity(code, tuple(extend_select)), 0 if rule.default_enabled else -1
        )
        best_off = _specificity(code, ignore)
        if best_on >= 0 and best_on > best_off:
            selected.add(code)
    return frozenset(selected)


def _specificity(code: str, selectors: tuple[str, ...]) -> int:
    best = -1
    for sel in selectors:
        s = sel.strip().upper()
        if s == "ALL":
            best = max(best, 0)
        elif code.startswith(s):
            best = max(best, len(s))
    return best


def describe(codes: Iterable[str]) -> dict[str, RuleInfo]:
    """The reporters' metadata of each known rule among `codes` (an unknown code is left out: the
    reporters then describe it from its findings)."""
    out: dict[str, RuleInfo] = {}
    for code in codes:
        rule = get_rule(code)
        if rule is not None:
            out[code] = rule.info()
    return out
