"""GitHub Actions reporter: one `::error file=..,line=..::message` workflow command per finding."""

from __future__ import annotations

from gradlint.findings import Finding, RunResult, Severity

COMMANDS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def escape_data(text: str) -> str:
    """The message part: GitHub's runner decodes %25, %0D and %0A there."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A property value: as data, plus ':' and ',' which would end the value early."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(f: Finding) -> str:
    props = [("file", f.path.replace("\\", "/"))]
    # Annotations have no cells: a notebook's finding goes on the file, the cell named in the message.
    if f.node is None and f.cell is None:
        props += [("line", str(f.span.line)), ("col", str(f.span.column)),
                  ("endLine", str(f.span.end_line)), ("endColumn", str(f.span.end_column))]
    props.append(("title", f"{f.code} ({f.name})"))
    message = f.message if f.cell is None else f"cell {f.cell}, line {f.span.line}: {f.message}"
    if f.node is not None:
        # A binary model has no lines: say which node the finding is about instead.
        message += f" [node {f.node.name!r}, {f.node.op_type} #{f.node.index}]"
    head = ",".join(f"{k}={escape_property(v)}" for k, v in props)
    return f"::{COMMANDS[f.severity]} {head}::{escape_data(message)}"


def render_github(result: RunResult) -> str:
    return "".join(annotation(f) + "\n" for f in result.findings)
