"""JSON reporter: a list of findings shaped like ruff's `--output-format json`, plus gradlint's fields.

Tools that read ruff's JSON (code, message, filename, location, end_location, url, fix,
noqa_row) read ours unchanged; `name`, `severity`, `node` and `data` are additions.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

from gradlint.findings import DOCS_URL, Finding, RuleInfo, RunResult

# What the reporters know of each rule: given by the caller (registry.describe), never looked up.
Rules = Mapping[str, RuleInfo]


def rule_url(finding: Finding, rules: Rules | None = None) -> str:
    info = (rules or {}).get(finding.code)
    return info.url if info is not None else DOCS_URL.format(name=finding.name)


def jsonable(value: Any) -> Any:
    """Make Finding.data printable as strict JSON: inf/nan become strings, tuples lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return jsonable(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _position(line: int, column: int) -> dict[str, int]:
    return {"row": line, "column": column}


def finding_to_dict(f: Finding, cwd: str, rules: Rules | None = None) -> dict[str, Any]:
    fix = None
    if f.fix is not None:
        fix = {
            "applicability": "safe" if f.fix.safe else "unsafe",
            "message": f.fix.title,
            "edits": [
                {
                    "content": e.content,
                    "location": _position(e.span.line, e.span.column),
                    "end_location": _position(e.span.end_line, e.span.end_column),
                }
                for e in f.fix.edits
            ],
        }
    graph = f.node is not None or f.path.endswith(".onnx")
    return {
        # ruff's key: the notebook cell (1-based, among all cells) the location is relative to.
        "cell": f.cell,
        "code": f.code,
        "name": f.name,
        "severity": str(f.severity),
        "message": f.message,
        "filename": os.path.normpath(os.path.join(cwd, f.path)),
        "location": _position(f.span.line, f.span.column),
        "end_location": _position(f.span.end_line, f.span.end_column),
        "url": rule_url(f, rules),
        "fix": fix,
        # A binary model has no line to put a `# noqa` on.
        "noqa_row": None if graph else f.span.line,
        "node": None if f.node is None else {"name": f.node.name, "op_type": f.node.op_type, "index": f.node.index,
                                             **({"source": f.node.source} if f.node.source else {})},
        "data": jsonable(f.data_dict),
    }


def render_json(result: RunResult, *, cwd: str | None = None, rules: Rules | None = None) -> str:
    cwd = cwd if cwd is not None else os.getcwd()
    items = [finding_to_dict(f, cwd, rules) for f in result.findings]
    return json.dumps(items, indent=2, sort_keys=True, allow_nan=False, ensure_ascii=False) + "\n"
