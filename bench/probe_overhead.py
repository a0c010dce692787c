"""Overhead of one `gradlint probe` step against a plain forward/backward step of the same model.

Two models, written here by hand (torchvision is not a dependency): a ResNet-18-sized CNN
(BasicBlocks [2, 2, 2, 2], 64..512 channels, 11.7 M parameters) and a small transformer
(4 pre-LN encoder layers, d_model 256, 4 heads, sequence 128, vocabulary 2000). The probe step
is `gradlint.probe.measure.run_steps` with one step: every hook, every reduction, the
parameter-norm batch and the host transfer, plus its per-call setup (hooks registered, weight
norms) — a pessimistic count. Probe and plain steps alternate, in the same process, so that load
from other processes hits both; the median of `--iters` pairs is reported.

Then the whole run, as `gradlint probe` does it (load the target, static pass, 3 measured steps,
the float64 gradient check, the join), with and without the gradient check, against three plain
steps of the same model (`--whole-iters` runs each, median).

    python bench/probe_overhead.py                   # cpu, and cuda when available
    python bench/probe_overhead.py --device cuda --iters 20

Goals: per step (issue 6) ratio <= 2.0 on CPU, <= 1.5 on GPU; whole run with the gradient check
(issue 11) <= 3x three plain steps for the ResNet-18-sized model on CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from gradlint.probe.measure import ProbeSetup, run_steps  # noqa: E402


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        skip = x if self.down is None else self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + skip)


class ResNet18(nn.Module):
    def __init__(self, classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class SmallTransformer(nn.Module):
    def __init__(self, vocab: int = 2000, d: int = 256, heads: int = 4, layers: int = 4, seq: int = 128):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq, d)
        self.blocks = nn.Sequential(*[Block(d, heads) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, ids):
        pos = torch.arange(ids.shape[1], device=ids.device)
        return self.head(self.ln(self.blocks(self.tok(ids) + self.pos(pos))))


def resnet_inputs() -> torch.Tensor:
    """The CPU case's batch, for the whole-run benchmark (`--inputs` of the probe)."""
    return torch.randn(8, 3, 64, 64)


def transformer_inputs() -> torch.Tensor:
    return torch.randint(0, 2000, (8, 128))


def cases(device: str):
    big = device.startswith("cuda")
    cnn_batch, cnn_res = (32, 224) if big else (8, 64)
    tf_batch = 32 if big else 8
    yield (f"resnet18 {cnn_batch}x3x{cnn_res}x{cnn_res}", ResNet18(),
           lambda: torch.randn(cnn_batch, 3, cnn_res, cnn_res, device=device),
           lambda out: F.cross_entropy(out, torch.zeros(out.shape[0], dtype=torch.long, device=device)))
    yield (f"transformer {tf_batch}x128 tokens", SmallTransformer(),
           lambda: torch.randint(0, 2000, (tf_batch, 128), device=device),
           lambda out: F.cross_entropy(out.reshape(-1, out.shape[-1]),
                                       torch.zeros(out.shape[0] * out.shape[1], dtype=torch.long, device=device)))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(device: str, iters: int) -> list[tuple[str, float, float]]:
    rows = []
    for name, model, make_x, loss_fn in cases(device):
        model.to(device).train()

        def plain() -> None:
            model.zero_grad(set_to_none=True)
            loss = loss_fn(model(make_x()))
            loss.backward()
            sync(device)

        def make_inputs(step: int):
            x = make_x()
            return (x,), {}, x

        setup = ProbeSetup(device=device, steps=1, seed=0, dtype="float32", make_inputs=make_inputs,
                           make_loss=lambda out, raw, step: loss_fn(out))

        def probe() -> None:
            run_steps(model, setup)
            sync(device)

        plain(), probe()  # warm-up: allocator, kernels, lazy init
        t_plain, t_probe = [], []
        for _ in range(iters):
            for fn, acc in ((plain, t_plain), (probe, t_probe)):
                start = time.perf_counter()
                fn()
                acc.append(time.perf_counter() - start)
        p, q = statistics.median(t_plain), statistics.median(t_probe)
        spread = (max(t_plain) - min(t_plain)) / p
        rows.append((name, p, q))
        print(f"{device:<6} {name:<32} plain {p * 1e3:8.1f} ms  probe {q * 1e3:8.1f} ms  "
              f"ratio {q / p:5.2f}  (plain spread {spread:.0%} over {iters})", flush=True)
        model.to("cpu")
    return rows


def whole(device: str, iters: int) -> list[tuple[str, float, float, float]]:
    """Median seconds of three plain steps, a whole probe run without and with the gradient check."""
    from gradlint.probe.run import ProbeOptions, run_probe

    here = Path(__file__).resolve()
    rows = []
    for name, factory, inputs, loss_fn in (
            ("resnet18 8x3x64x64", ResNet18, resnet_inputs,
             lambda out: F.cross_entropy(out, torch.randint(0, out.shape[1], (out.shape[0],), device=out.device))),
            ("transformer 8x128 tokens", SmallTransformer, transformer_inputs,
             lambda out: F.cross_entropy(out.reshape(-1, out.shape[-1]),
                                         torch.randint(0, out.shape[-1], (out.shape[0] * out.shape[1],),
                                                       device=out.device)))):
        model = factory().to(device).train()

        def plain3() -> None:
            for _ in range(3):
                model.zero_grad(set_to_none=True)
                loss_fn(model(inputs().to(device))).backward()
            sync(device)

        def probe(check: bool) -> None:
            run_probe(ProbeOptions(target=f"{here}:{factory.__name__}", inputs=f"{here}:{inputs.__name__}",
                                   device=device, steps=3, gradcheck=check), findings=None)
            sync(device)

        plain3()
        # Wall time, and this process's CPU time: on a shared machine the second is the steadier
        # measure of the work done (both ratios are printed).
        times: dict[str, list[tuple[float, float]]] = {"plain": [], "probe": [], "check": []}
        for _ in range(iters):
            for key, fn in (("plain", plain3), ("probe", lambda: probe(False)), ("check", lambda: probe(True))):
                start, cpu = time.perf_counter(), time.process_time()
                fn()
                times[key].append((time.perf_counter() - start, time.process_time() - cpu))
        (p, pc), (q, qc), (c, cc) = ((statistics.median(t for t, _ in times[k]), statistics.median(u for _, u in times[k]))
                                     for k in ("plain", "probe", "check"))
        rows.append((name, pc, qc, cc))
        print(f"{device:<6} {name:<26} 3 plain steps {p:6.2f} s  whole probe {q:6.2f} s ({q / p:4.2f}x wall, "
              f"{qc / pc:4.2f}x cpu)  with gradient check {c:6.2f} s ({c / p:4.2f}x wall, {cc / pc:4.2f}x cpu)",
              flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="all", help="cpu, cuda, or all (cpu, then cuda when available)")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the CPU runs")
    parser.add_argument("--whole-iters", type=int, default=3, help="runs of each whole-probe measurement (0: skip)")
    parser.add_argument("--whole-only", action="store_true", help="skip the per-step measurement")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if not d.startswith("cuda") or torch.cuda.is_available()]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no CUDA"))
    torch.manual_seed(0)
    worst = {}
    for device in devices if not args.whole_only else []:
        for _, p, q in bench(device, args.iters):
            kind = "gpu" if device.startswith("cuda") else "cpu"
            worst[kind] = max(worst.get(kind, 0.0), q / p)
    goals = {"cpu": 2.0, "gpu": 1.5}
    for kind, ratio in worst.items():
        print(f"worst {kind} ratio {ratio:.2f} (goal <= {goals[kind]}): {'met' if ratio <= goals[kind] else 'NOT met'}")
    if args.whole_iters > 0:
        for device in devices:
            rows = whole(device, args.whole_iters)
            if device == "cpu":
                _, p, _, c = rows[0]
                print(f"whole resnet18 probe with gradient check on cpu: {c / p:.2f}x three plain steps in CPU "
                      f"time (goal <= 3): {'met' if c / p <= 3 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
