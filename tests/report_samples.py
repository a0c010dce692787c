"""Hand-built findings for the reporter tests: every field a reporter must render, no real rule."""

from __future__ import annotations

from gradlint.findings import Edit, FileResult, Finding, Fix, GraphNode, RunResult, Severity, SourceSpan, make_data

CWD = "/project"


def sample_rules():
    """What the command line passes the reporters for the sample's codes (registry.describe)."""
    from gradlint.registry import describe

    return describe(["GL001", "GL002"])


def sample_result() -> RunResult:
    python_finding = Finding(
        code="GL001", name="syntax-error", severity=Severity.ERROR,
        message="syntax error: expected ':'", path="pkg/model.py", span=SourceSpan(3, 21, 3, 22),
    )
    with_fix = Finding(
        code="GL001", name="syntax-error", severity=Severity.INFO,
        message="50% of layers: saturated, at depth 12\nsecond line", path="models/my net é.py",
        span=SourceSpan(7, 5, 8, 2),
        fix=Fix(title="Add the missing colon", edits=(Edit(SourceSpan(7, 25, 7, 25), ":"),), safe=False),
        fix_title="Add the missing colon",
        data=make_data({"gain": 4.1e-10, "depth": 12, "layers": ["body.0", "body.2"], "ratio": float("inf")}),
    )
    safe_fix = Finding(
        code="GL001", name="syntax-error", severity=Severity.WARNING,
        message="fixable", path="pkg/model.py", span=SourceSpan(10, 1, 10, 4),
        fix=Fix(title="Replace it", edits=(Edit(SourceSpan(10, 1, 10, 4), "new"),), safe=True),
    )
    graph_finding = Finding(
        code="GL002", name="unreadable-model", severity=Severity.WARNING,
        message="predicted gradient gain 3e-9 across 10 nodes", path="models/net.onnx",
        span=SourceSpan.point(1, 1), node=GraphNode(name="/body/Sigmoid_3", op_type="Sigmoid", index=14),
        data=make_data({"graph": "main_graph", "gain": 3e-9}),
    )
    return RunResult(files=[
        FileResult(path="pkg/model.py", findings=(python_finding, safe_fix)),
        FileResult(path="models/my net é.py", findings=(with_fix,)),
        FileResult(path="models/net.onnx", findings=(graph_finding,)),
        FileResult(path="models/big.onnx", skipped="ONNX models are not supported yet"),
        FileResult(path="pkg/clean.py"),
    ])


def empty_result() -> RunResult:
    return RunResult(files=[FileResult(path="pkg/clean.py")])
