"""The plain values of the engine: what a number is, literals read fast, and Python's truth value.

The interpreters' own value types (a module being built, a tensor with properties, a list of
layers) sit on top of these; whatever is not a plain value here is theirs to judge.
"""

from __future__ import annotations

from typing import Any

import libcst as cst


class Unknown:
    """Nothing is known about the value: an operation on it gives it again, and it never becomes
    a finding. One object (`UNKNOWN`), whichever interpreter made it."""

    _inst = None

    def __new__(cls):
        if cls._inst is None:
            cls._inst = super().__new__(cls)
        return cls._inst

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = Unknown()


def is_number(v: Any) -> bool:
    """An int or float the folder may compute with (bools are flags, not numbers)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def int_literal(e: cst.Integer) -> int:
    """The value of an integer literal; ValueError past Python's int_max_str_digits."""
    # libcst's evaluated_value compiles the literal with ast.literal_eval: a compile per number.
    text = e.value.replace("_", "")
    return int(text, 0) if not (len(text) > 1 and text[0] == "0" and text[1].isdigit()) else int(e.evaluated_value)


def float_literal(e: cst.Float) -> float:
    """The value of a float literal (inf when it is too large: `1e400`)."""
    return float(e.value.replace("_", ""))


_TRIPLE = ("\"" * 3, "'" * 3)


def str_literal(e: cst.SimpleString) -> Any:
    """The value of a string literal (bytes for a bytes literal), without a compile when it has
    no escapes and no prefix."""
    v = e.value
    if "\\" not in v and v[:1] in ("'", '"'):
        q = 3 if v[:3] in _TRIPLE else 1
        return v[q:-q]
    return e.evaluated_value


def truth(v: Any) -> bool | None:
    """Python's truth value of a plain value (None, a bool, a number, a string); None when `v` is
    not one: an interpreter's own values are judged by the interpreter."""
    if v is None or isinstance(v, bool):
        return bool(v)
    if is_number(v) or isinstance(v, (str, bytes)):
        return bool(v)
    return None
