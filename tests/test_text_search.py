"""gradlint.text's searches anchored after the match (a word's start, a line's indentation), the
count of a model table's rows read from each occurrence of its name, and the skeleton's search for
whole words, find what the anchored regular expressions find: compared on random texts over a
small alphabet."""

from __future__ import annotations

import random
import re

from gradlint.text import count_line_starts, search_word_start

_ALPHABET = ["ACT", "xACT", "ACT_", " ", "\t", "\n", "\r", "=", "==", ":", "del ", "global ", "[1]", ".update",
             "self", ".", "requires_grad", "_", "a", "("]
_ASSIGNED = r"ACT\s*(?::[^=\n]*)?=(?!=)"
_CHANGED = (r"ACT\s*(\[[^\]\n]*\]\s*(=(?!=)|[-+*/|&^@%]=)|\|=|\.(update|setdefault|pop)\b)", r"del\s+ACT\b",
            r"global\s+ACT\b", r"self\s*\.\s*requires_grad\b")


def _texts(n: int = 4000):
    rng = random.Random(9)
    for _ in range(n):
        yield "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 16)))


def test_search_word_start_is_a_leading_word_boundary():
    for text in _texts():
        for pattern in _CHANGED:
            anchored = re.search(r"\b" + pattern, text)
            found = search_word_start(re.compile(pattern), text)
            assert (found and found.span()) == (anchored and anchored.span()), (text, pattern)


def test_count_line_starts_is_a_multiline_caret_with_indentation():
    for text in _texts():
        expected = len(re.findall(r"^[ \t]*" + _ASSIGNED, text, re.M))
        assert count_line_starts(re.compile(_ASSIGNED), text, 99) == expected, text
        assert count_line_starts(re.compile(_ASSIGNED), text, 2) == min(expected, 2)


def test_examples():
    assert count_line_starts(re.compile(_ASSIGNED), "ACT = 1\n  ACT: dict = {}\nx.ACT = 2\nfoo(ACT=3)\n", 9) == 2
    assert search_word_start(re.compile(r"del\s+ACT\b"), "model ACT") is None  # `model` ends in `del`, is none
    assert search_word_start(re.compile(r"del\s+ACT\b"), "model\n del ACT").start() == 7


def test_rows_only_passed_counts_what_its_regular_expressions_find():
    from gradlint.source.models import _rows_only_passed

    rng = random.Random(5)
    alphabet = ["cfgs", "cfgs", "xcfgs", ".cfgs", "(", ",", ")", "[", "]", "['D']", " ", "\n", "\t", "f", "=", "_", "é"]
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        uses = len(re.findall(r"(?<![\w.])cfgs\b", text))
        passed = len(re.findall(r"[(,]\s*(?<![\w.])cfgs\s*\[[^\[\]\n]*\]\s*[,)]", text))
        assert _rows_only_passed("cfgs", text) == (uses - 1 == passed), text
    assert _rows_only_passed("cfgs", "cfgs = {}\nf(cfgs['A'], x)\ng(1, cfgs[k])\n")
    assert not _rows_only_passed("cfgs", "cfgs = {}\nrow = cfgs['A']\n")


def test_skeleton_word_search_is_a_word_boundary_on_both_sides():
    from gradlint.source.skeleton import _words

    rng = random.Random(6)
    names = {"c", "n", "cfgs", "_cfg", "é_t"}
    alphabet = ["c", "n", "cfgs", "_cfg", "é_t", "x", "_", ".", " ", "\n", "(", "é", "0", "cn"]
    plain = re.compile(r"\b(?:" + "|".join(re.escape(n) for n in sorted(names)) + r")\b")
    fast = _words(names)
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        pos = rng.randint(0, len(text))
        end = rng.randint(pos, len(text))
        want, got = plain.search(text, pos, end), fast.search(text, pos, end)
        assert (want and want.span()) == (got and got.span()), (text, pos, end)


def test_searches_led_by_their_literal_find_what_the_word_bounded_ones_find():
    from gradlint.source.constants import _GLOBAL
    from gradlint.source.model_eval import _SET_ANY, _attribute_set

    rng = random.Random(3)
    alphabet = ["self", ".", " ", "\n", "\t", "x", "_", "depth", "setattr", "(", "__dict__", "vars", "=", "==", "+=",
                "é", "a", "1", "s", "elf", "global", "-"]
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        for attr in ("depth", "x"):
            old = re.search(rf"(?<!self)\.\s*{attr}\s*(=(?!=)|[-+*/|&^@%]=)|\bsetattr\s*\(|\b__dict__\b|\bvars\s*\(", text)
            assert bool(old) == (bool(_SET_ANY.search(text)) or bool(_attribute_set(attr).search(text))), (text, attr)
        data = text.encode()
        old = re.search(rb"\bglobal\s+[A-Za-z_]", data)
        assert (old and old.span()) == ((found := _GLOBAL.search(data)) and found.span()), text
