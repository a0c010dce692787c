"""Fuzzing --fix against line-break characters: generated fixable programs, one odd character.

`str.splitlines()` breaks lines at \\v, \\f, \\x1c-\\x1e, \\x85, U+2028 and U+2029; libcst and
CPython do not. A program gets such a character inserted where Python allows it (a comment, a
string, or — a form feed — as whitespace), and its fix must be the fix of the same program
without it: `fix(with).replace(ch, "") == fix(without)`. Used bounded by
tests/test_fix_safety.py and for long runs by bench/fuzz_fix.py.
"""

from __future__ import annotations

import ast
import random
from dataclasses import dataclass

from gradlint.config import Config
from gradlint.fix import _rechecker, fix_text

CHARS = ("\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
CODES = ("GL202", "GL203", "GL301", "GL302", "GL306")
HEADER = ("import torch\nimport torch.nn.functional as F\nfrom torch import nn\n"
          "from torch.cuda.amp import GradScaler, autocast\n")


def _names(rng: random.Random) -> dict[str, str]:
    pick = lambda *xs: rng.choice(xs)  # noqa: E731
    return {"opt": pick("optimizer", "opt", "optim"), "model": pick("model", "net", "m"),
            "loader": pick("loader", "train_loader", "batches"), "x": pick("x", "inputs", "xb"),
            "y": pick("y", "target", "yb"), "crit": pick("criterion", "loss_fn"),
            "z": pick("logits", "z", "scores"), "scaler": pick("scaler", "grad_scaler")}


def _extra(rng: random.Random, indent: str) -> str:
    """Statements a step does not care about, to move lines around."""
    return "".join(f"{indent}{rng.choice(['seen += 1', 'k = 2 * 3', 'log = []', 'pass'])}\n"
                   for _ in range(rng.randint(0, 2)))


def _gl202_loop(rng, n) -> str:
    return (f"for {n['x']}, {n['y']} in {n['loader']}:\n"
            f"    {n['opt']}.zero_grad()\n{_extra(rng, '    ')}"
            f"    loss = {n['crit']}({n['model']}({n['x']}), {n['y']})\n"
            f"    loss.backward()\n{_extra(rng, '    ')}"
            f"    {n['opt']}.step()\n{_extra(rng, '    ')}"
            f"    torch.nn.utils.clip_grad_norm_({n['model']}.parameters(), 1.0)\n")


def _gl202_func(rng, n) -> str:
    return (f"def train_step_{rng.randint(0, 99)}({n['model']}, {n['opt']}, batch):\n"
            f"    {n['opt']}.zero_grad()\n"
            f"    {n['model']}(batch).loss.backward()\n{_extra(rng, '    ')}"
            f"    {n['opt']}.step()\n"
            f"    norm = torch.nn.utils.clip_grad_value_({n['model']}.parameters(), 0.5)\n"
            f"    return norm\n")


def _gl203_loop(rng, n) -> str:
    return (f"{n['scaler']} = GradScaler()\n"
            f"for {n['x']}, {n['y']} in {n['loader']}:\n"
            f"    {n['opt']}.zero_grad()\n"
            f"    with autocast():\n"
            f"        loss = {n['crit']}({n['model']}({n['x']}), {n['y']})\n{_extra(rng, '    ')}"
            f"    {n['scaler']}.scale(loss).backward()\n"
            f"    torch.nn.utils.clip_grad_norm_({n['model']}.parameters(), 1.0)\n"
            f"    {n['scaler']}.step({n['opt']})\n"
            f"    {n['scaler']}.update()\n")


def _numerics(rng, n) -> str:
    z = n["z"]
    body = rng.choice([
        f"torch.log(F.softmax({z}, dim=-1))", f"{z}.softmax(-1).log()", f"torch.log(torch.softmax({z}, 1))",
        f"torch.log(torch.sigmoid({z}))", f"torch.log(1 - torch.sigmoid({z}))",
        f"F.binary_cross_entropy(torch.sigmoid({z}), t)",
    ])
    return f"def f_{rng.randint(0, 999)}({z}, t):\n{_extra(rng, '    ')}    return {body}\n"


def _sqrt_module(rng, n) -> str:
    # GL306 flags a sqrt at zero only on values that carry gradient: a module's forward
    body = rng.choice(["torch.sqrt((x ** 2).sum(-1))", "x.pow(2).sum(dim=1).sqrt()"])
    return (f"class M{rng.randint(0, 999)}(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            f"        self.f = nn.Linear(8, 8)\n\n    def forward(self, a, b):\n{_extra(rng, '        ')}"
            f"        x = self.f(a) - b\n        return {body}\n")


def _filler(rng, n) -> str:
    if rng.random() < 0.06:
        return _table(rng)
    return rng.choice([
        "# a comment line\n", f"CONST_{rng.randint(0, 9)} = {rng.randint(0, 99)}\n",
        "def helper(a, b):\n    return a + b\n", "NAMES = ['a', 'b']\n", "\n",
    ])


def _table(rng) -> str:
    """A table of weights as timm writes one, long enough that the parser skips it
    (gradlint.source.skeleton): a fix after it must land where it does with the table parsed."""
    rows = "".join(f"    'm{i}.tag': _cfg(url='https://w/{i}.pth', size=(3, {i}, {i}), crop=-0.{i % 10}),\n"
                   for i in range(100 + rng.randint(0, 20)))
    return f"TABLE_{rng.randint(0, 99)} = generate({{\n{rows}}})\n"


_BLOCKS = (_gl202_loop, _gl202_func, _gl203_loop, _numerics, _sqrt_module)


def program(rng: random.Random) -> str:
    """A module with one to three fixable blocks between filler, indented with four spaces, two,
    eight or tabs (positions were once resolved with four whatever the file's indentation)."""
    parts = [HEADER]
    for _ in range(rng.randint(1, 3)):
        parts.extend(_filler(rng, {}) for _ in range(rng.randint(0, 2)))
        parts.append("\n" + rng.choice(_BLOCKS)(rng, _names(rng)))
    parts.extend(_filler(rng, {}) for _ in range(rng.randint(0, 2)))
    return _reindented("".join(parts), rng.choice(("    ", "    ", "  ", "        ", "\t")))


def _reindented(text: str, unit: str) -> str:
    """Each line's leading four-space steps as `unit`s."""
    out = []
    for line in text.split("\n"):
        body = line.lstrip(" ")
        steps, rest = divmod(len(line) - len(body), 4)
        out.append(unit * steps + " " * rest + body)
    return "\n".join(out)


@dataclass
class Sample:
    base: str  # the program with the scaffolding of each insertion, without the character
    odd: str  # the same with the character
    char: str
    kinds: tuple[str, ...]
    newline: str = "\n"


def _statement_lines(text: str) -> list[tuple[int, int]]:
    """(line, column) of every statement: where another statement may go before it."""
    out = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.stmt):
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            out.append((first, node.col_offset))
    return out


def insert(rng: random.Random, text: str, char: str) -> Sample:
    """One to three insertions of `char`, each in a comment, a string or (\\f) whitespace."""
    base_lines = text.split("\n")
    odd_lines = list(base_lines)
    kinds = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(("trailing-comment", "comment-line", "string") + (("line-start", "between") if char == "\f" else ()))
        current = "\n".join(base_lines)
        if kind == "trailing-comment":
            i = rng.choice([k for k, line in enumerate(base_lines) if line.strip() and "#" not in line])
            base_lines[i] += "  # note"
            odd_lines[i] += f"  # no{char}te"
        elif kind in ("comment-line", "string"):
            line, col = rng.choice(_statement_lines(current))
            i = line - 1
            stmt = "# page" if kind == "comment-line" else "_note = 'pa' \"ge\""
            odd = "# pa" + char + "ge" if kind == "comment-line" else f"_note = 'pa{char}' \"ge\""
            indent = base_lines[i][:col]
            base_lines.insert(i, indent + stmt)
            odd_lines.insert(i, indent + odd)
        elif kind == "line-start":
            i = rng.randrange(len(base_lines))
            odd_lines[i] = char + odd_lines[i]
        else:  # a form feed after a space that follows code: whitespace between tokens
            spots = [(k, j) for k, line in enumerate(base_lines) for j in range(1, len(line))
                     if line[j] == " " and line[:j].strip()]
            if not spots:
                continue
            k, j = rng.choice(spots)
            pos = _odd_index(odd_lines[k], j + 1, char)
            odd_lines[k] = odd_lines[k][:pos] + char + odd_lines[k][pos:]
        kinds.append(kind)
    return Sample(base="\n".join(base_lines), odd="\n".join(odd_lines), char=char, kinds=tuple(kinds))


def _odd_index(odd: str, index: int, char: str) -> int:
    """Where position `index` of the base line is in the odd line (which only adds `char`s)."""
    seen = 0
    for i, c in enumerate(odd):
        if seen == index:
            return i
        if c != char:
            seen += 1
    return len(odd)


_CONFIG = Config(select=CODES)


def fix(text: str) -> tuple[str, int, list[str]]:
    """The fix --fix writes for this text (in memory; unsafe fixes included, rounds until stable)."""
    recheck = _rechecker("fuzz.py", _CONFIG)
    return fix_text(text, recheck(text), unsafe=True, recheck=recheck)


@dataclass
class Verdict:
    ok: bool
    sample: Sample
    expected: str = ""
    got: str = ""
    applied: int = 0
    why: str = ""


def trial(rng: random.Random, char: str | None = None) -> Verdict:
    """One generated program: its fix with the odd character must be its fix without it."""
    text = program(rng)
    newline = rng.choices(["\n", "\r\n", "\r"], weights=[6, 3, 1])[0]
    # the form feed more often: it alone may also stand as whitespace between tokens
    sample = insert(rng, text, char or ("\f" if rng.random() < 0.3 else rng.choice(CHARS)))
    sample.base = sample.base.replace("\n", newline)
    sample.odd = sample.odd.replace("\n", newline)
    sample.newline = newline
    expected, applied, _ = fix(sample.base)
    if applied == 0:
        return Verdict(False, sample, why="the program without the character got no fix: generator broken")
    mixed = expected.replace(newline, "")
    if "\n" in mixed or "\r" in mixed:
        return Verdict(False, sample, expected, why=f"the fix mixed other line breaks into a file of {newline!r}")
    got, applied_odd, _ = fix(sample.odd)
    if got.replace(sample.char, "") != expected or applied_odd != applied:
        return Verdict(False, sample, expected, got, applied, why=f"fixes differ ({applied_odd} against {applied})")
    kept = got.count(sample.char)
    if "between" not in sample.kinds and kept != sample.odd.count(sample.char):
        return Verdict(False, sample, expected, got, applied, why=f"the character was kept {kept} times")
    return Verdict(True, sample, expected, got, applied)
