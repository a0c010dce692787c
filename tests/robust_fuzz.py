"""Robustness fuzzers for `gradlint check`: generated PyTorch modules with hostile twists, mutated
real fixtures, and mutated ONNX models. A trial passes when gradlint reports every file (a
finding, a GL00x or a named skip), never an internal error, within its time budget.

Not a test module (no test_ prefix): tests/test_robust_fuzz.py runs a bounded number of trials,
bench/fuzz.sh source|onnx COUNT runs long ones.
"""

from __future__ import annotations

import random
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_SEEDS = sorted((ROOT / "fixtures").glob("*/*.py"))
ONNX_SEEDS = sorted((ROOT / "fixtures" / "onnx").glob("*.onnx.txt"))

_INTS = ["0", "1", "-1", "3", "512", "2**64", "9**9**9", "10**400", "1 << 100000", "True", "None", "'4'"]
_ACTS = ["nn.ReLU()", "nn.Tanh()", "nn.Sigmoid()", "nn.GELU()", "nn.Identity()", "nn.Dropout(0.1)"]
_EXPRS = ["x", "self.body(x)", "torch.cat([x, x], 1)", "x + self.body(x)", "self.forward(x)", "self(x)",
          "torch.log(torch.softmax(x, -1))", "torch.sqrt((x ** 2).sum(-1))", "x / x.norm()",
          "torch.where(x > 0, torch.log(x), x)", "F.cross_entropy(x.softmax(-1), x)", "x[0][0][0]"]


@dataclass
class Verdict:
    ok: bool
    why: str
    seconds: float
    files: dict


def module_program(rng: random.Random) -> str:
    """An nn.Module whose __init__ and forward mix real patterns with hostile ones: huge or
    self-referencing sizes, loops with large or unknown bounds, self-instantiation, deep nesting,
    squaring in a loop, division by zero."""
    n = rng.choice(_INTS)
    width = rng.choice(_INTS)
    lines = ["import torch", "import torch.nn as nn", "import torch.nn.functional as F", "",
             "", "class Net(nn.Module):", f"    def __init__(self, depth={n}, width={width}):",
             "        super().__init__()", "        layers = []"]
    for _ in range(rng.randint(1, 4)):
        pick = rng.randrange(8)
        if pick == 0:
            lines += ["        for i in range(depth):", f"            layers += [nn.Linear(width, width), {rng.choice(_ACTS)}]"]
        elif pick == 1:
            lines += ["        d = width", "        for _ in range(40):", "            d *= d"]
        elif pick == 2:
            lines += ["        if depth:", "            self.child = Net(depth - 1, width)"]
        elif pick == 3:
            lines += [f"        k = width // {rng.choice(['0', '2', 'depth'])}"]
        elif pick == 4:
            k = rng.randint(1, 80)
            lines += [f"        z = {'(' * k}1{')' * k}"]
        elif pick == 5:
            lines += ["        dims = [width] + [width] * depth", "        for a, b in zip(dims[:-1], dims[1:]):",
                      "            layers.append(nn.Linear(a, b))"]
        elif pick == 6:
            lines += [f"        self.extra = nn.ModuleList([Net(depth, width) for _ in range({rng.choice(['2', '4', 'depth'])})])"]
        else:
            lines += ["        x = 1" + " + 1" * rng.randint(1, 900)]
    lines += ["        self.body = nn.Sequential(*layers)", "", "    def forward(self, x):"]
    for _ in range(rng.randint(1, 4)):
        lines.append(f"        x = {rng.choice(_EXPRS)}")
    lines.append("        return x")
    return "\n".join(lines) + "\n"


def mutate_text(text: str, rng: random.Random) -> str:
    """Character-level damage: cut, duplicate or insert chunks, odd bytes and line breaks."""
    chars = list(text)
    for _ in range(rng.randint(1, 6)):
        if not chars:
            break
        i = rng.randrange(len(chars))
        op = rng.randrange(5)
        if op == 0:
            del chars[i:i + rng.randint(1, 40)]
        elif op == 1:
            j = rng.randrange(len(chars))
            chars[i:i] = chars[j:j + rng.randint(1, 80)]
        elif op == 2:
            chars.insert(i, rng.choice(["\0", "\f", "\t", "\r", "\x85", "\u2028", "(", "[", ":", "\\", "'", '"""']))
        elif op == 3:
            chars[i:i] = list("(" * rng.randint(1, 3000))
        else:
            chars.insert(i, "\n" + " " * rng.randint(0, 9))
    return "".join(chars)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not out:
            break
        i = rng.randrange(len(out))
        op = rng.randrange(4)
        if op == 0:
            out[i] = rng.randrange(256)
        elif op == 1:
            del out[i:]
        elif op == 2:
            out[i:i] = out[rng.randrange(len(out)):][: rng.randint(1, 64)]
        else:
            out[i:i + 4] = rng.randrange(1 << 32).to_bytes(4, "little")
    return bytes(out)


def onnx_model(rng: random.Random) -> bytes:
    """A fixture's ONNX text model as binary, then damaged (or the text itself, damaged)."""
    import onnx
    import onnx.parser

    seed = rng.choice(ONNX_SEEDS)
    text = seed.read_text(encoding="utf-8")
    try:
        data = onnx.parser.parse_model(text).SerializeToString()
    except Exception:  # a fixture that only the .txt reader takes: damage the text instead
        data = text.encode()
    return mutate_bytes(data, rng)


def sample(kind: str, rng: random.Random) -> dict:
    """{file name: content} for one trial, beside a good file whose finding must be reported."""
    good = "import torch\n\n\ndef f(z):\n    return torch.log(torch.softmax(z, -1))\n"
    if kind == "source":
        bad = module_program(rng) if rng.random() < 0.6 else mutate_text(rng.choice(SOURCE_SEEDS).read_text(
            encoding="utf-8"), rng)
        return {"good.py": good, "bad.py": bad}
    return {"good.py": good, "bad.onnx": onnx_model(rng)}


def trial(kind: str, rng: random.Random, *, budget_s: float = 10.0) -> Verdict:
    from gradlint.api import check_paths
    from gradlint.config import Config

    files = sample(kind, rng)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, content in files.items():
            (root / name).write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        start = time.perf_counter()
        try:
            result = check_paths([root], replace(Config(), root=str(root)), use_cache=False, jobs=1)
        except Exception as exc:  # the run itself must never raise
            return Verdict(False, f"check_paths raised {type(exc).__name__}: {exc}", time.perf_counter() - start, files)
        seconds = time.perf_counter() - start
    names = {Path(r.path).name: r for r in result.files}
    if set(names) != set(files):
        return Verdict(False, f"files reported: {sorted(names)}", seconds, files)
    for r in result.files:
        if r.internal_error:
            return Verdict(False, f"internal error on {Path(r.path).name}: {r.internal_error[-300:]}", seconds, files)
    if not any(f.code == "GL302" for f in names["good.py"].findings):
        return Verdict(False, "the good file's GL302 is missing", seconds, files)
    if seconds > budget_s:
        return Verdict(False, f"took {seconds:.1f} s (budget {budget_s} s)", seconds, files)
    return Verdict(True, "", seconds, files)
