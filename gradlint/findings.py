"""Records every stage shares: findings, their locations and fixes, and per-file results."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping


class Severity(enum.IntEnum):
    """Ordered so that `severity >= fail_on` decides the exit code."""

    INFO = 1
    WARNING = 2
    ERROR = 3

    @classmethod
    def parse(cls, text: str) -> "Severity":
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r} (expected error, warning or info)") from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, order=True)
class SourceSpan:
    """1-based lines, 1-based columns (as ruff prints them); end is exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def point(cls, line: int, column: int = 1) -> "SourceSpan":
        return cls(line, column, line, column)


@dataclass(frozen=True)
class GraphNode:
    """An ONNX node a finding points at: its name, op type and index in the graph."""

    name: str
    op_type: str
    index: int
    # "model.py:12": the source line the exporter recorded for the node (torch's dynamo exporter
    # stores a stack trace), when there is one.
    source: str = ""


@dataclass(frozen=True)
class Edit:
    """Replace the text between two (line, column) positions, both 1-based, end exclusive."""

    span: SourceSpan
    content: str


@dataclass(frozen=True)
class Fix:
    title: str
    edits: tuple[Edit, ...]
    safe: bool = True


@dataclass(frozen=True)
class Finding:
    code: str
    name: str
    message: str
    severity: Severity
    path: str
    span: SourceSpan
    node: GraphNode | None = None
    fix_title: str | None = None
    fix: Fix | None = None
    # Numbers a finding carries for machines (predicted gain, depth, module names...): the
    # probe joins on them, JSON prints them. A tuple of pairs keeps the record hashable.
    data: tuple[tuple[str, Any], ...] = ()
    # A Jupyter notebook's code cell (1-based index among all the notebook's cells); the span's
    # lines and the fix's edits are then relative to that cell (gradlint/notebook.py).
    cell: int | None = None

    @property
    def data_dict(self) -> dict[str, Any]:
        return dict(self.data)

    def sort_key(self) -> tuple:
        return (self.path, self.cell or 0, self.span.line, self.span.column, self.code, self.message)


def make_data(values: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Freeze a mapping for Finding.data; lists become tuples so the finding stays hashable."""
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in values.items())


@dataclass(frozen=True)
class InputError:
    """A front-end's report that a file cannot be checked; the input rules (GL00x) select them by
    kind: 'unreadable_source' (Python that cannot be read, decoded or parsed), 'unreadable_model'
    (ONNX), 'unsafe_external_data' (external data refused)."""

    kind: str
    message: str
    span: SourceSpan = SourceSpan(1, 1, 1, 1)
    node: GraphNode | None = None


# Where a rule's documentation lives; the registry and the reporters share it.
DOCS_URL = "https://gradlint.dev/rules/{name}"


@dataclass(frozen=True)
class RuleInfo:
    """What a report says about a rule besides its findings (SARIF's rule descriptors, the JSON
    `url`): taken from the registry by the command line and passed to the reporters as data, so
    that a reporter stays a pure function of what it is given."""

    code: str
    name: str
    summary: str
    description: str  # the doc's "What it does"
    doc: str
    url: str
    severity: "Severity"
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileResult:
    path: str
    findings: tuple[Finding, ...] = ()
    # A failure of gradlint itself on this file (not a finding about the user's code): reported,
    # and it makes the run end with exit 2, but the other files are still checked.
    internal_error: str | None = None
    skipped: str | None = None
    # Checked in part, and why (FileFacts.partial): a warning beside the findings.
    partial: str | None = None
    fixed: int = 0
    # The skip is an error (a missing or unreadable path, a FIFO named on the command line):
    # the run ends with exit 2. Otherwise a skip is a warning (a FIFO met in a folder walk).
    error: bool = False
    # Digest of the text the findings were computed from (gradlint.files.text_digest): --fix
    # writes only a file that still holds it, and checks any other content again first.
    analysed: str | None = None


@dataclass
class RunResult:
    files: list[FileResult] = field(default_factory=list)
    # Run-wide problems that cost nothing but a warning (a bad .gitignore line, an unusable
    # cache folder): printed on stderr, never in the report.
    warnings: list[str] = field(default_factory=list)
    # Folders of the walk that hold their own configuration, left to a run of their own
    # (gradlint.projects runs them); empty unless the run was asked to split them off.
    projects: list[str] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        out = [f for r in self.files for f in r.findings]
        out.sort(key=Finding.sort_key)
        return out

    @property
    def internal_errors(self) -> list[FileResult]:
        return [r for r in self.files if r.internal_error]

    @property
    def has_errors(self) -> bool:
        """An error that makes the run exit 2: an internal failure, or a path missing or refused
        (a nested project's broken configuration among them)."""
        return bool(self.internal_errors) or any(r.error for r in self.files)
