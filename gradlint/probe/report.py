"""Render a ProbeReport: the terminal table and verdicts, JSON, SARIF, and the gradient plot.

JSON and SARIF reuse the `gradlint check` reporters when they are present, so a probe finding
has exactly the keys of a check finding, plus `verdict`, `predicted` and `measured`.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from gradlint.findings import FileResult, Finding, RunResult


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    if not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return f"{x:.0%}" if pct else f"{x:.2e}"


def table_rows(report: Any) -> list[dict[str, Any]]:
    """One row per module call, in execution order: the numbers of the table and of JSON."""
    meas = report.measurements
    rows = []
    for s in meas.sites:
        if s.kind == "container":
            continue
        row = {
            "module": s.name,
            "type": s.type_name,
            "kind": s.kind,
            "activation_std": meas.mean(meas.act_std, s.name),
            "grad_norm": meas.mean(meas.grad_norm, s.name),
            "grad_weight_ratio": meas.module_ratio(s.module) if s.call == 0 else None,
        }
        if s.name in meas.dead:
            row["dead_fraction"] = meas.dead[s.name]
        if s.name in meas.saturated:
            row["saturated_fraction"] = meas.mean(meas.saturated, s.name)
        rows.append(row)
    return rows


def render_text(report: Any, *, color: bool = False) -> str:
    from gradlint.probe.join import CONFIRMED, FOUND, REFUTED

    meas = report.measurements
    out = [f"gradlint probe {report.target}: {meas.steps} step(s) on {report.device}, forward in {meas.dtype}"
           + (" (interrupted)" if getattr(report, "interrupted", False) else ""),
           f"  inputs: {report.inputs_from}", f"  loss: {report.loss_kind}", ""]
    rows = table_rows(report)
    width = max([len("module")] + [len(r["module"] or "(model)") for r in rows])
    twidth = max([len("type")] + [len(r["type"]) for r in rows])
    out.append(f"{'module':<{width}}  {'type':<{twidth}}  {'act std':>9}  {'grad norm':>9}  {'grad/weight':>11}  note")
    for r in rows:
        note = []
        if "dead_fraction" in r:
            note.append(f"dead {_fmt(r['dead_fraction'], True)}")
        if "saturated_fraction" in r:
            note.append(f"saturated {_fmt(r['saturated_fraction'], True)}")
        out.append(f"{r['module'] or '(model)':<{width}}  {r['type']:<{twidth}}  {_fmt(r['activation_std']):>9}  "
                   f"{_fmt(r['grad_norm']):>9}  {_fmt(r['grad_weight_ratio']):>11}  {', '.join(note)}".rstrip())
    out.append("")
    gc = report.gradcheck
    if gc is not None and gc.ran:
        state = "passed" if gc.passed else "inconclusive" if gc.passed is None else "FAILED"
        line = f"gradient check (float64, {len(gc.directions)} random directions): {state}"
        if gc.checked_functions or gc.deliberate:
            line += "; custom Functions: " + ", ".join(
                [f"{n} {'ok' if ok else 'FAILED'}" for n, ok in sorted(gc.checked_functions.items())]
                + [f"{n} {kind}" for n, kind in sorted(gc.deliberate.items())])
        out.append(line)
    for note in report.notes:
        out.append(f"note: {note}")
    out.append("")
    verdicts = sorted(report.verdicts, key=lambda v: v.finding.sort_key())
    marks = {CONFIRMED: "\x1b[31m", FOUND: "\x1b[31m", REFUTED: "\x1b[32m"}
    for v in verdicts:
        f = v.finding
        verdict = v.verdict
        if color and verdict in marks:
            verdict = f"{marks[verdict]}{verdict}\x1b[0m"
        out.append(f"{f.path}:{f.span.line}:{f.span.column}: {f.code} {f.message}")
        numbers = []
        if v.predicted is not None:
            numbers.append(f"predicted {_fmt(v.predicted)}")
        if v.measured is not None:
            numbers.append(f"measured {_fmt(v.measured)}")
        detail = f" ({', '.join(numbers)})" if numbers else ""
        # A confirmed verdict's detail repeats what was measured, unless it was measured on
        # fewer layers than the finding names.
        if v.detail and (v.verdict not in (CONFIRMED, FOUND) or v.extra.get("shortened")):
            detail += f": {v.detail}"
        out.append(f"    {verdict}{detail}")
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.verdict] = counts.get(v.verdict, 0) + 1
    if verdicts:
        order = ("confirmed", "found", "refuted", "inconclusive", "not measurable")
        out.append("Summary: " + ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k)) + ".")
    else:
        out.append("Summary: no static findings, and the probe found nothing.")
    return "\n".join(out) + "\n"


def _jsonable(value: Any) -> Any:
    try:
        from gradlint.report.json import jsonable  # the check reporter's, when present
    except ImportError:
        jsonable = None
    if jsonable is not None:
        return jsonable(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def finding_dict(f: Finding, cwd: str) -> dict[str, Any]:
    """The `gradlint check` JSON shape of a finding (its reporter's when present)."""
    try:
        from gradlint.report.json import finding_to_dict
    except ImportError:
        finding_to_dict = None
    from gradlint.registry import DOCS_URL, describe, get_rule

    if finding_to_dict is not None:
        return finding_to_dict(f, cwd, describe([f.code]))

    rule = get_rule(f.code)
    return {
        "code": f.code,
        "name": f.name,
        "severity": str(f.severity),
        "message": f.message,
        "filename": os.path.normpath(os.path.join(cwd, f.path)),
        "location": {"row": f.span.line, "column": f.span.column},
        "end_location": {"row": f.span.end_line, "column": f.span.end_column},
        "url": rule.url() if rule else DOCS_URL.format(name=f.name),
        "fix": None,
        "data": _jsonable(f.data_dict),
    }


def measurements_dict(report: Any) -> dict[str, Any]:
    meas = report.measurements
    gc = report.gradcheck
    params = []
    for name, owner in meas.param_owner.items():
        g = meas.mean(meas.param_grad_norm, name)
        w = meas.param_norm.get(name)
        params.append({"name": name, "module": owner, "grad_norm": g, "weight_norm": w,
                       "ratio": (g / w) if g is not None and w else None})
    return _jsonable({
        "target": report.target,
        "device": report.device,
        "steps": meas.steps,
        "dtype": meas.dtype,
        "seed": report.options.seed,
        "inputs": report.inputs_from,
        "loss": report.loss_kind,
        "loss_values": meas.loss,
        "modules": table_rows(report),
        "parameters": params,
        "nonfinite": meas.nonfinite,
        "without_gradient": getattr(meas, "without_grad", []),
        "cuts": [{"line": line, "what": what} for line, what in getattr(meas, "cuts", [])],
        "interrupted": getattr(report, "interrupted", False),
        "gradcheck": None if gc is None else {
            "ran": gc.ran, "passed": gc.passed, "directions": gc.directions,
            "functions": gc.checked_functions, "deliberate": gc.deliberate, "kink_crossings": gc.crossed,
            "failures": [{"kind": x.kind, "name": x.name, "type": x.type_name, "autograd": x.autograd,
                          "numeric": x.numeric} for x in gc.failures],
        },
        "notes": report.notes,
    })


def _sorted(report: Any) -> list[Any]:
    return sorted(report.verdicts, key=lambda v: v.finding.sort_key())


def render_json(report: Any, *, cwd: str | None = None) -> str:
    cwd = os.path.abspath(cwd or os.getcwd())
    findings = []
    for v in _sorted(report):
        d = finding_dict(v.finding, cwd)
        d.update({"verdict": v.verdict, "predicted": _jsonable(v.predicted), "measured": _jsonable(v.measured)})
        findings.append(d)
    payload = {"findings": findings, "measurements": measurements_dict(report)}
    return json.dumps(payload, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def render_sarif(report: Any, *, cwd: str | None = None) -> str:
    cwd = os.path.abspath(cwd or os.getcwd())
    verdicts = _sorted(report)
    result = RunResult(files=[FileResult(path=report.path, findings=tuple(v.finding for v in verdicts))])
    try:
        from gradlint.report.sarif import build_sarif
    except ImportError:
        build_sarif = None
    if build_sarif is not None:
        from gradlint.registry import describe

        doc = build_sarif(result, cwd=cwd, rules=describe({f.code for f in result.findings}))
    else:
        doc = _minimal_sarif(result, cwd)
    run = doc["runs"][0]
    # build_sarif lists results in RunResult order, which is the order of `verdicts`.
    for res, v in zip(run["results"], verdicts):
        props = res.setdefault("properties", {})
        props.update({"verdict": v.verdict, "predicted": _jsonable(v.predicted), "measured": _jsonable(v.measured)})
        res["message"]["text"] += f" [{v.verdict}]"
    run.setdefault("properties", {})["probe"] = measurements_dict(report)
    return json.dumps(doc, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def _minimal_sarif(result: RunResult, cwd: str) -> dict[str, Any]:
    from gradlint import __version__
    from gradlint.registry import get_rule

    levels = {"error": "error", "warning": "warning", "info": "note"}
    findings = result.findings
    codes = sorted({f.code for f in findings})
    rules = []
    for code in codes:
        rule = get_rule(code)
        example = next(f for f in findings if f.code == code)
        rules.append({"id": code, "name": example.name,
                      "shortDescription": {"text": rule.summary if rule else example.message},
                      "helpUri": rule.url() if rule else ""})
    results = []
    for f in findings:
        uri = os.path.relpath(os.path.join(cwd, f.path), cwd).replace(os.sep, "/")
        results.append({
            "ruleId": f.code, "ruleIndex": codes.index(f.code), "level": levels[str(f.severity)],
            "message": {"text": f.message},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri},
                                                "region": {"startLine": f.span.line, "startColumn": f.span.column}}}],
            "properties": {"data": _jsonable(f.data_dict)},
        })
    return {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
            "runs": [{"tool": {"driver": {"name": "gradlint", "version": __version__, "rules": rules}},
                      "results": results}]}


def plot_path_problem(path: str) -> str | None:
    """What makes `path` unwritable for plot(), found before the run (matplotlib imported): a
    format matplotlib cannot write (by the extension, as savefig reads it; none means png), a
    folder that does not exist. Found after the run, it would cost the run."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    suffix = os.path.splitext(path)[1][1:].lower()
    formats = FigureCanvasAgg.get_supported_filetypes()
    if suffix and suffix not in formats:
        return f"--plot {path}: matplotlib cannot write .{suffix} files; use one of {', '.join(sorted(formats))}"
    folder = os.path.dirname(path)
    if folder and not os.path.isdir(folder):
        return f"--plot {path}: no such folder {folder}"
    return None


def plot(report: Any, path: str) -> None:
    """Per-layer gradient norms (parametric layers, execution order) on a log scale. Layers whose
    gradient is exactly zero (or missing) are drawn as red crosses at the bottom; each predicted
    chain (GL101/GL102) is drawn over the measurements, anchored at its last layer and spread as
    a constant factor per layer; every finding that names layers marks them, with its code."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gradlint.probe.join import GAINS, probe_measure

    meas = report.measurements
    sites = [s.name for s in meas.sites if s.kind in ("param", "conv")]
    values = [meas.mean(meas.grad_norm, s) for s in sites]
    xs = [i for i, v in enumerate(values) if v is not None and v > 0 and math.isfinite(v)]
    zeros = [i for i, v in enumerate(values) if v is None or v == 0]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * len(sites) + 3), 4.5))
    ax.plot(xs, [values[i] for i in xs], marker="o", label="measured ||∂L/∂z||")
    positive = [values[i] for i in xs]
    floor = min(positive) / 10 if positive else 1e-12
    if zeros:
        ax.scatter(zeros, [floor] * len(zeros), marker="x", color="red", zorder=3, label="zero or no gradient")
    index = {s: i for i, s in enumerate(sites)}
    for v in report.verdicts:
        if v.predicted is None or not v.sites or probe_measure(v.finding.code) not in GAINS:
            continue
        chain = [s for s in v.sites if s in index]
        last = meas.mean(meas.grad_norm, chain[-1]) if chain else None
        if len(chain) < 2 or not last or v.predicted <= 0:
            continue
        n = len(chain)
        ys = [last * v.predicted ** ((n - 1 - k) / (n - 1)) for k in range(n)]
        ax.plot([index[s] for s in chain], ys, linestyle="--",
                label=f"predicted {v.finding.code} ({v.verdict}): gain {v.predicted:.1e}")
    modules = {meas.site(s).module if meas.site(s) else s: i for s, i in index.items()}
    marked: dict[int, list[str]] = {}
    for v in report.verdicts:
        names = list(v.sites) + list(v.finding.data_dict.get("modules") or ())
        for name in names:
            i = index.get(str(name), modules.get(str(name)))
            if i is not None and v.finding.code not in marked.setdefault(i, []):
                marked[i].append(v.finding.code)
    for i, codes in sorted(marked.items()):
        ax.axvline(i, color="grey", alpha=0.25, linewidth=4)
        ax.annotate(" ".join(codes), (i, 1.0), xycoords=("data", "axes fraction"), rotation=90, fontsize=6,
                    ha="center", va="top")
    ax.set_yscale("log")
    ax.set_xticks(range(len(sites)))
    ax.set_xticklabels(sites, rotation=90, fontsize=7)
    ax.set_xlabel("parametric layer (execution order)")
    ax.set_ylabel("gradient norm w.r.t. the layer's output")
    ax.set_title(f"gradlint probe {report.target}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
