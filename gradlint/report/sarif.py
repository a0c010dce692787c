"""SARIF 2.1.0 reporter, for GitHub code scanning and other static-analysis dashboards."""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from gradlint import __version__
from gradlint.findings import DOCS_URL, Finding, RunResult, Severity, SourceSpan
from gradlint.report.json import Rules, jsonable

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = DOCS_URL.split("/rules/")[0]
LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def _artifact(path: str, cwd: str) -> dict[str, Any]:
    """A URI relative to %SRCROOT% (the folder gradlint ran in) when the file lies below it,
    so the report is the same on every machine; otherwise an absolute file URI."""
    absolute = Path(os.path.normpath(os.path.join(cwd, path)))
    try:
        rel = absolute.relative_to(Path(cwd))
    except ValueError:
        return {"uri": absolute.as_uri()}
    # surrogateescape: a name with undecodable bytes is percent-encoded as the bytes it really has.
    return {"uri": quote(PurePosixPath(*rel.parts).as_posix(), errors="surrogateescape"), "uriBaseId": "%SRCROOT%"}


def _region(span: SourceSpan) -> dict[str, int]:
    # SARIF columns are 1-based and endColumn is exclusive, as ours are.
    return {"startLine": span.line, "startColumn": span.column, "endLine": span.end_line, "endColumn": span.end_column}


def _rule_descriptor(code: str, findings: list[Finding], rules: Rules) -> dict[str, Any]:
    rule = rules.get(code)
    if rule is None:
        # A finding of a rule this process does not know (hand-made, or from a newer probe).
        name = findings[0].name
        return {
            "id": code,
            "name": name,
            "shortDescription": {"text": findings[0].message},
            "helpUri": DOCS_URL.format(name=name),
            "defaultConfiguration": {"level": LEVELS[findings[0].severity]},
        }
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.description},
        "help": {"text": rule.doc, "markdown": rule.doc},
        "helpUri": rule.url,
        "defaultConfiguration": {"level": LEVELS[rule.severity]},
        "properties": {"tags": list(rule.tags)},
    }


def _result(f: Finding, rule_index: int, cwd: str) -> dict[str, Any]:
    artifact = _artifact(f.path, cwd)
    location: dict[str, Any] = {"physicalLocation": {"artifactLocation": artifact, "region": _region(f.span)}}
    if f.cell is not None:
        # The region's lines count within the cell; the notebook stays the artifact.
        location["properties"] = {"cell": f.cell}
        location["logicalLocations"] = [{"name": f"cell {f.cell}", "kind": "module"}]
    if f.node is not None:
        graph = str(f.data_dict.get("graph") or PurePosixPath(f.path.replace(os.sep, "/")).stem)
        location["logicalLocations"] = [{
            "name": f.node.name,
            "fullyQualifiedName": f"{graph}/{f.node.name}",
            "kind": "function",
            "properties": {"opType": f.node.op_type, "nodeIndex": f.node.index},
        }]
    out: dict[str, Any] = {
        "ruleId": f.code,
        "ruleIndex": rule_index,
        "level": LEVELS[f.severity],
        "message": {"text": f.message},
        "locations": [location],
    }
    if f.fix is not None:
        out["fixes"] = [{
            "description": {"text": f.fix.title + ("" if f.fix.safe else " (unsafe)")},
            "artifactChanges": [{
                "artifactLocation": artifact,
                "replacements": [
                    {"deletedRegion": _region(e.span), "insertedContent": {"text": e.content}} for e in f.fix.edits
                ],
            }],
        }]
    props: dict[str, Any] = {"name": f.name, "severity": str(f.severity)}
    if f.cell is not None:
        props["cell"] = f.cell
    if f.data:
        props["data"] = jsonable(f.data_dict)
    out["properties"] = props
    return out


def _notifications(result: RunResult, cwd: str) -> list[dict[str, Any]]:
    out = []
    for r in result.files:
        if r.internal_error:
            level, text = "error", f"internal error while checking {r.path}: {r.internal_error}"
        elif r.skipped:
            level = "error" if r.error else "warning"
            text = f"{r.path}: {'skipped: ' if level == 'warning' else ''}{r.skipped}"
        elif r.partial:
            level, text = "warning", f"{r.path}: {r.partial}"
        else:
            continue
        out.append({
            "level": level,
            "message": {"text": text},
            "locations": [{"physicalLocation": {"artifactLocation": _artifact(r.path, cwd)}}],
        })
    return out


def build_sarif(result: RunResult, *, cwd: str | None = None, rules: Rules | None = None) -> dict[str, Any]:
    cwd = os.path.abspath(cwd if cwd is not None else os.getcwd())
    findings = result.findings
    by_code: dict[str, list[Finding]] = {}
    for f in findings:
        by_code.setdefault(f.code, []).append(f)
    codes = sorted(by_code)
    index = {code: i for i, code in enumerate(codes)}
    notifications = _notifications(result, cwd)
    invocation: dict[str, Any] = {
        "executionSuccessful": not any(n["level"] == "error" for n in notifications),
    }
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    run = {
        "tool": {
            "driver": {
                "name": "gradlint",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": INFORMATION_URI,
                "rules": [_rule_descriptor(code, by_code[code], rules or {}) for code in codes],
            }
        },
        "originalUriBaseIds": {"%SRCROOT%": {"uri": Path(cwd).as_uri().rstrip("/") + "/"}},
        "invocations": [invocation],
        "columnKind": "unicodeCodePoints",
        "results": [_result(f, index[f.code], cwd) for f in findings],
    }
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def render_sarif(result: RunResult, *, cwd: str | None = None, rules: Rules | None = None) -> str:
    return json.dumps(build_sarif(result, cwd=cwd, rules=rules), indent=2, allow_nan=False, ensure_ascii=False) + "\n"
