"""GitHub Actions workflow-command annotations, with the runner's escaping rules."""

from __future__ import annotations

from gradlint.findings import Finding, RunResult, FileResult, Severity, SourceSpan
from gradlint.report.github import escape_data, escape_property, render_github
from tests.report_samples import empty_result, sample_result


def test_escaping():
    assert escape_data("50% a\r\nb") == "50%25 a%0D%0Ab"
    assert escape_data("a: b, c") == "a: b, c"
    assert escape_property("C:\\x,y%") == "C%3A\\x%2Cy%25"


def test_one_line_per_finding_with_level_by_severity():
    lines = render_github(sample_result()).splitlines()
    assert len(lines) == 4
    assert [line.split(" ", 1)[0] for line in lines] == ["::notice", "::warning", "::error", "::warning"]
    assert lines[2] == "::error file=pkg/model.py,line=3,col=21,endLine=3,endColumn=22,title=GL001 (syntax-error)::syntax error: expected ':'"


def test_message_and_properties_are_escaped():
    line = render_github(sample_result()).splitlines()[0]
    assert line == ("::notice file=models/my net é.py,line=7,col=5,endLine=8,endColumn=2,title=GL001 (syntax-error)"
                    "::50%25 of layers: saturated, at depth 12%0Asecond line")


def test_property_with_comma_and_colon_in_path():
    f = Finding(code="GL001", name="syntax-error", message="m", severity=Severity.ERROR,
                path="a,b:c.py", span=SourceSpan.point(1, 1))
    out = render_github(RunResult(files=[FileResult(path="a,b:c.py", findings=(f,))]))
    assert out.startswith("::error file=a%2Cb%3Ac.py,line=1,")


def test_graph_finding_names_the_node_instead_of_a_line():
    line = render_github(sample_result()).splitlines()[1]
    assert line == ("::warning file=models/net.onnx,title=GL002 (unreadable-model)::predicted gradient gain 3e-9 "
                    "across 10 nodes [node '/body/Sigmoid_3', Sigmoid #14]")


def test_nothing_when_clean():
    assert render_github(empty_result()) == ""
