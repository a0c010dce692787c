"""Whether checking a file grows linearly with its size: families of generated files, each at sizes
N, 2N, 4N, checked in this process (no cache, one process); prints the seconds and the ratio of
each doubling, and exits 1 when one is over 3.5 (linear is 2, quadratic 4).

Each family is a shape that once took super-linear time (found by a generated-module hunt):
- `accumulation`: a training loop of N scaled backwards, each with a clip and a scaler step
  under an accumulation `if` (GL203 asked each backward about every step: 1 606 lines, 10 s);
- `gate_loop`: `for _ in range(N): x = body(x); x = x * sigmoid(gate(x))` (each join compared
  the shared nodes of the path field by field; GL105 scanned each use of a layer against every
  other: 15 lines, 5.5 s at N = 512);
- `step_loop`: one loop of N full steps (zero_grad, backward, clip, step) of a recurrent model
  (GL208 and GL202 filtered every event of the loop for each step and each clip, and the bindings
  that reach a step scanned every statement of the file: 6 000 lines, 6 s of rules);
- `tuple_sampler`: N samplers whose value feeds two joins per step, returned in a tuple to a
  parent (choosing the main output walked the path unfolded: diffusers' CogVideoX, 4 minutes).

    python bench/scaling.py [--scale F] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradlint.api import check_paths  # noqa: E402
from gradlint.config import Config  # noqa: E402


def accumulation(n: int) -> str:
    out = ["import torch\n\n", "def train(model, opts, losses, loader, accum):\n",
           "    scaler = torch.cuda.amp.GradScaler()\n", "    for step, (x, y) in enumerate(loader):\n"]
    for i in range(n):
        out.append(f"        scaler.scale(losses[{i}](model(x), y)).backward()\n"
                   "        if (step + 1) % accum == 0:\n"
                   "            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n"
                   f"            scaler.step(opts[{i}])\n")
    out.append("        scaler.update()\n")
    return "".join(out)


def gate_loop(n: int) -> str:
    return (
        "import torch\nimport torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.body = nn.Sequential(*[m for _ in range(16) for m in (nn.Linear(8, 8), nn.ReLU())])\n"
        "        self.gate = nn.Linear(8, 8)\n\n    def forward(self, x):\n"
        f"        for _ in range({n}):\n            x = self.body(x)\n"
        "            x = x * torch.sigmoid(self.gate(x))\n        return x\n")


def step_loop(n: int) -> str:
    out = ["import torch\nfrom torch import nn\n\nmodel = nn.LSTM(8, 8)\n",
           "opt = torch.optim.SGD(model.parameters(), lr=0.1)\nfor x in loader:\n"]
    out += ["    opt.zero_grad()\n    model(x)[0].sum().backward()\n"
            "    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n    opt.step()\n"] * n
    return "".join(out)


def tuple_sampler(n: int) -> str:
    text = "import torch\nimport torch.nn as nn\n"
    for i in range(n):
        text += (f"\n\nclass Sampler{i}(nn.Module):\n    def __init__(self, steps=100):\n"
                 "        super().__init__()\n        self.steps = steps\n        self.lin = nn.Linear(8, 4)\n\n"
                 "    def forward(self, obs):\n        x = torch.zeros(4)\n        for t in range(self.steps):\n"
                 "            p = self.lin(torch.cat([x, obs], dim=-1))\n            x = 0.5 * (x - 0.1 * p)\n"
                 "        return x, p\n\n\n"
                 f"class Policy{i}(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                 f"        self.sampler = Sampler{i}()\n        self.head = nn.Linear(4, 2)\n\n"
                 "    def forward(self, obs):\n        x, p = self.sampler(obs)\n        y, q = self.sampler(x)\n"
                 "        return self.head(y), q\n")
    return text


FAMILIES = {"accumulation": (accumulation, 100), "gate_loop": (gate_loop, 128), "step_loop": (step_loop, 400), "tuple_sampler": (tuple_sampler, 4)}


def seconds(text: str, folder: Path, rounds: int) -> float:
    path = folder / "m.py"
    path.write_text(text)
    config = replace(Config(), root=str(folder))
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        check_paths([path], config, use_cache=False, jobs=1)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply each family's first size")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="gradlint-scaling-") as tmp:
        folder = Path(tmp)
        seconds(gate_loop(2), folder, 1)  # (imports and first-use costs out of the way)
        for name, (make, first) in FAMILIES.items():
            start = max(1, round(first * args.scale))
            sizes = [start, 2 * start, 4 * start]
            took = [seconds(make(n), folder, args.rounds) for n in sizes]
            ratios = [b / a for a, b in zip(took, took[1:])]
            worst = max(worst, *ratios)
            print(f"{name:14} " + "   ".join(f"N={n}: {t:6.2f} s" for n, t in zip(sizes, took))
                  + "   doubling: " + " ".join(f"{r:.2f}x" for r in ratios))
    print(f"worst doubling {worst:.2f}x (linear: 2x, quadratic: 4x; over 3.5x fails)")
    return 0 if worst <= 3.5 else 1


if __name__ == "__main__":
    sys.exit(main())
