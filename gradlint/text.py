"""Source text by line, counted as libcst and CPython count lines: only \\n, \\r\\n and \\r end one.

`str.splitlines()` also breaks at \\v, \\f, \\x1c-\\x1e, \\x85, U+2028 and U+2029. Python source may
hold those (a form feed page break, any of them in a comment or a string), and then every line
number from libcst or `ast` points one line further down than the `splitlines()` list: an edit
lands on the wrong line. Everything that turns a line number from the parser into text or an
offset goes through this module.
"""

from __future__ import annotations

import itertools
import re

_BREAK = re.compile(r"\r\n|\r|\n")
# The characters str.splitlines() breaks at and the parser does not. A file without any of them
# (nearly all) takes str.splitlines(), which is C code.
_OTHER_BREAKS = re.compile("[\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def split_lines(text: str, keepends: bool = False) -> list[str]:
    """`text.splitlines(keepends)` with the parser's line breaks only.

    As with `splitlines()`, a final line break does not start an empty last line.
    """
    if not _OTHER_BREAKS.search(text):
        return text.splitlines(keepends)
    out: list[str] = []
    pos = 0
    for m in _BREAK.finditer(text):
        out.append(text[pos:m.end() if keepends else m.start()])
        pos = m.end()
    if pos < len(text):
        out.append(text[pos:])
    return out


def line_starts(text: str) -> list[int]:
    """Offset of the start of each line, then the length of the text: line n (1-based) is
    text[starts[n - 1]:starts[n]], its line break included."""
    return list(itertools.accumulate(map(len, split_lines(text, keepends=True)), initial=0))


def offset(starts: list[int], line: int, column: int) -> int:
    """The offset of a 1-based (line, column) position, the column counted in characters;
    the line just past the end is allowed (an edit that ends the file). ValueError if outside."""
    if not 1 <= line <= len(starts) or column < 1:
        raise ValueError(f"position {line}:{column} is outside the file")
    at = starts[line - 1] + column - 1
    if at > starts[-1]:
        raise ValueError(f"position {line}:{column} is outside the file")
    return at


def lines_between(text: str, first: int, last: int) -> str:
    """Lines first..last (1-based, inclusive), with their line breaks."""
    return "".join(split_lines(text, keepends=True)[first - 1:last])


def indentation(line: str) -> str:
    """The leading whitespace that indents a line, as the tokenizer reads it: a form feed
    resets the indentation, so only what follows the last one counts."""
    lead = line[:len(line) - len(line.lstrip(" \t\f"))]
    return lead.rsplit("\f", 1)[-1]


# CPython's re finds a pattern that starts with a literal (`self`, a name) by a fast scan for that
# literal; a leading `\b` or `^` hides it, and every position of the text is tried: 15 ms against
# 0.5 ms over timm's vision_transformer.py (230 kB). These take the pattern without its leading
# anchor and test the anchor at each match instead.
_WORD_CHAR = re.compile(r"\w")
_LINE_INDENT = re.compile(r"[ \t]*")


def search_word_start(pattern: re.Pattern, text: str) -> re.Match | None:
    """The first match of `pattern` that starts where a `\\b` before it would hold (`pattern` starts
    with a word character): as `re.search(r"\\b" + pattern, text)`, matching from the word."""
    pos = 0
    while True:
        found = pattern.search(text, pos)
        if found is None or found.start() == 0 or not _WORD_CHAR.match(text, found.start() - 1):
            return found
        pos = found.start() + 1


def count_line_starts(pattern: re.Pattern, text: str, most: int) -> int:
    """How many matches of `pattern` start a line after its indentation (spaces and tabs), as
    `len(re.findall("^[ \\t]*" + pattern, text, re.M))` counts them (`pattern` starts with a word
    character), counting up to `most`."""
    count = pos = 0
    while count < most:
        found = pattern.search(text, pos)
        if found is None:
            break
        start = found.start()
        line = text.rfind("\n", 0, start) + 1
        if _LINE_INDENT.match(text, line).end() == start:
            count += 1
            pos = found.end()
        else:
            pos = start + 1
    return count
