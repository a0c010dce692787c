"""Suppression comments: which comment silences which code, read from real comments only."""

from __future__ import annotations

import pytest

from gradlint import suppress
from gradlint.api import check_source
from gradlint.config import Config
from gradlint.findings import Finding, Severity, SourceSpan


def finding(code: str, line: int) -> Finding:
    return Finding(code=code, name="x", message="m", severity=Severity.ERROR, path="a.py", span=SourceSpan.point(line, 1))


@pytest.mark.parametrize("comment,codes", [
    ("# noqa", {"*"}),
    ("#noqa", {"*"}),
    ("# NOQA", {"*"}),
    ("# noqa: GL101", {"GL101"}),
    ("# noqa:GL101,GL102", {"GL101", "GL102"}),
    ("# noqa: GL101, GL102", {"GL101", "GL102"}),
    ("# noqa: gl101", {"GL101"}),
    ("# noqa: E501", {"E501"}),
    ("# gradlint: ignore[GL101]", {"GL101"}),
    ("# gradlint: ignore[GL101, GL203]", {"GL101", "GL203"}),
    ("# gradlint: ignore", {"*"}),
    ("# type: ignore  # noqa: GL101", {"GL101"}),
    ("# a plain comment", None),
    ("# noqa-ish: not a directive", None),
    ("# noqanything", None),
])
def test_parse_comment(comment, codes):
    got = suppress.parse_comment(comment)
    assert (None if got is None else set(got)) == codes


def test_suppression_is_per_line_and_per_code():
    source = "a = 1  # noqa: GL101\nb = 2  # noqa: E501\nc = 3  # noqa\nd = 4\n"
    kept = suppress.apply([finding("GL101", 1), finding("GL102", 1), finding("GL101", 2),
                           finding("GL101", 3), finding("GL101", 4)], source)
    assert [(f.code, f.span.line) for f in kept] == [("GL102", 1), ("GL101", 2), ("GL101", 4)]


def test_noqa_inside_a_string_is_not_a_comment():
    source = 's = "# noqa"\nt = """\n# noqa\n"""\n'
    assert suppress.suppressions(source) == {}


def test_file_that_does_not_tokenize_still_honours_noqa():
    source = "import torch\ndef f(x)  # noqa: GL001\n    return (\n"
    table = suppress.suppressions(source)
    assert table.get(2) == frozenset({"GL001"})


@pytest.mark.parametrize("comment,codes", [
    ("# noqa: GL101 because the head is sigmoid", {"GL101"}),
    ("# gradlint: ignored by nobody", None),
])
def test_directive_boundaries(comment, codes):
    got = suppress.parse_comment(comment)
    assert (None if got is None else set(got)) == codes


@pytest.mark.parametrize("line, expected", [
    ('    tag = "# noqa: E501"; return torch.log(torch.softmax(z, -1))',
     '    tag = "# noqa: E501"; return torch.log(torch.softmax(z, -1))  # noqa: GL302'),
    ("    return torch.log(torch.softmax(z, -1)), f\"{'#noqa:X1'}\"",
     "    return torch.log(torch.softmax(z, -1)), f\"{'#noqa:X1'}\"  # noqa: GL302"),
    ('    return torch.log(torch.softmax(z, -1)), "# noqa: E501"  # noqa: E501',
     '    return torch.log(torch.softmax(z, -1)), "# noqa: E501"  # noqa: E501, GL302'),
], ids=["string before", "f-string after", "string and comment"])
def test_add_noqa_extends_only_a_noqa_of_the_lines_comment(line, expected):
    """A `# noqa: E501` inside a string on the finding's line was extended: the string changed and
    nothing was suppressed."""
    from gradlint.suppress import add_noqa

    src = f"import torch\n\n\ndef f(z):\n{line}\n"
    findings = check_source(src, Config(select=("GL302",)))
    new, added, left = add_noqa(src, findings)
    assert (added, left) == (1, [])
    assert new == src.replace(line, expected)
    assert check_source(new, Config(select=("GL302",))) == []
