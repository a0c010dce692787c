"""Peak memory of `gradlint check` on an ONNX model with >= 2 GB of weights, stored both ways:
as external data (`model.data` next to `model.onnx`) and inline (raw_data inside `model.onnx`).

The issue's bound, for both kinds: peak RSS below 1.5 x the largest tensor + 200 MB, i.e. the
weights are streamed tensor by tensor and never all held at once. The model (a chain of MatMul +
Relu with He-initialised weights, written chunk by chunk so this script stays small too) lives in
a temporary folder that is deleted afterwards. The inline file is written field by field (the
protobuf library cannot serialise a message over 2 GB).

    python bench/onnx_memory.py [--layers 8] [--width 8192] [--kind both|external|inline] [--keep]

Prints the sizes, the peak RSS of each child process (getrusage RUSAGE_CHILDREN of a fresh
child per kind) and the ratio peak / (1.5 x largest tensor + 200 MB); exits 1 when a ratio is >= 1.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parent.parent
MB = 1 << 20


def build(folder: Path, layers: int, width: int, seed: int = 0) -> tuple[Path, int, int]:
    """Write model.onnx + model.data; return (path, total weight bytes, largest tensor bytes)."""
    rng = np.random.default_rng(seed)
    std = np.sqrt(2.0 / width)
    nodes, inits, prev, offset = [], [], "x", 0
    rows_per_chunk = max(1, (16 * MB) // (4 * width))
    with open(folder / "model.data", "wb") as fh:
        for i in range(layers):
            name = f"layers.{i}.weight"
            for start in range(0, width, rows_per_chunk):
                rows = min(rows_per_chunk, width - start)
                block = rng.standard_normal((rows, width), dtype=np.float32)
                block *= np.float32(std)
                fh.write(block.tobytes())
            nbytes = 4 * width * width
            tensor = onnx.TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[width, width],
                                      data_location=TensorProto.EXTERNAL)
            for k, v in (("location", "model.data"), ("offset", str(offset)), ("length", str(nbytes))):
                e = tensor.external_data.add()
                e.key, e.value = k, v
            inits.append(tensor)
            offset += nbytes
            nodes.append(helper.make_node("MatMul", [prev, name], [f"/layers.{i}/mm"], name=f"/layers.{i}/MatMul"))
            nodes.append(helper.make_node("Relu", [f"/layers.{i}/mm"], [f"/layers.{i}/relu"], name=f"/layers.{i}/Relu"))
            prev = f"/layers.{i}/relu"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path, offset, 4 * width * width


def build_inline(folder: Path, layers: int, width: int, seed: int = 0) -> tuple[Path, int, int]:
    """The same model with its weights inline: ModelProto bytes written field by field."""
    ext, total, largest = build(folder, layers, width, seed)
    model = onnx.load(str(ext), load_external_data=False)
    tensors = list(model.graph.initializer)
    model.graph.ClearField("initializer")
    data = folder / "model.data"
    graph_head = model.graph.SerializeToString()
    model.ClearField("graph")
    heads = []
    for t in tensors:
        info = {e.key: e.value for e in t.external_data}
        bare = onnx.TensorProto(name=t.name, data_type=t.data_type, dims=t.dims).SerializeToString()
        heads.append((bare, int(info["offset"]), int(info["length"])))
    tensor_len = [len(b) + len(_key(9)) + len(_varint(n)) + n for b, _, n in heads]
    graph_len = len(graph_head) + sum(len(_key(5)) + len(_varint(n)) + n for n in tensor_len)
    path = folder / "inline.onnx"
    with open(path, "wb") as out, open(data, "rb") as src:
        out.write(model.SerializeToString())
        out.write(_key(7) + _varint(graph_len) + graph_head)
        for (bare, offset, length), n in zip(heads, tensor_len):
            out.write(_key(5) + _varint(n) + bare + _key(9) + _varint(length))
            src.seek(offset)
            left = length
            while left:
                chunk = src.read(min(left, 16 * MB))
                out.write(chunk)
                left -= len(chunk)
    ext.unlink()
    data.unlink()
    return path, total, largest


def _key(field: int) -> bytes:
    return _varint((field << 3) | 2)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b, value = value & 0x7F, value >> 7
        out.append(b | (0x80 if value else 0))
        if not value:
            return bytes(out)


def run_check(path: Path) -> tuple[int, float, str]:
    """(peak RSS of the child in bytes, seconds, stdout) of `gradlint check`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "gradlint.cli", "check", str(path), "--no-cache"],
                          env=env, cwd=path.parent, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1) or "Traceback" in proc.stderr:
        raise SystemExit(f"gradlint check failed ({proc.returncode}):\n{proc.stderr}")
    # ru_maxrss is in KiB on Linux (bytes on macOS); only this one child has been waited for.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    peak *= 1 if sys.platform == "darwin" else 1024
    return peak, elapsed, proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--width", type=int, default=8192)
    parser.add_argument("--dir", default=None, help="where to write the model (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the model afterwards")
    parser.add_argument("--kind", choices=("both", "external", "inline"), default="both")
    args = parser.parse_args()
    need = args.layers * 4 * args.width * args.width
    base = Path(args.dir) if args.dir else Path(tempfile.gettempdir())
    free = shutil.disk_usage(base).free
    if free < 2 * need + 512 * MB:  # the inline kind is converted from the external one
        raise SystemExit(f"not enough disk in {base}: need {need / MB:.0f} MB, {free / MB:.0f} MB free")
    worst = 0.0
    for kind in (("external", "inline") if args.kind == "both" else (args.kind,)):
        worst = max(worst, measure(kind, base, args))
    return 0 if worst < 1 else 1


def measure(kind: str, base: Path, args) -> float:
    """Build one kind of model, check it in a fresh child process, print and return the ratio."""
    folder = Path(tempfile.mkdtemp(prefix="gradlint-onnx-memory-", dir=base))
    try:
        t0 = time.perf_counter()
        builder = build if kind == "external" else build_inline
        path, total, largest = builder(folder, args.layers, args.width)
        print(f"{kind} model: {args.layers} x MatMul[{args.width}, {args.width}] float32, weights "
              f"{total / MB:.0f} MB ({total / 1e9:.2f} GB), largest tensor {largest / MB:.0f} MB "
              f"(written in {time.perf_counter() - t0:.1f} s)")
        peak, elapsed, out = run_check_child(path)
        codes = sorted(set(re.findall(r"\bGL\d{3}\b", out)))
        bound = 1.5 * largest + 200 * MB
        ratio = peak / bound
        print(f"  gradlint check: {elapsed:.1f} s, findings {codes}")
        print(f"  peak RSS {peak / MB:.0f} MB; bound 1.5 x largest + 200 MB = {bound / MB:.0f} MB; "
              f"ratio {ratio:.3f} (peak / whole model = {peak / total:.3f})")
        return ratio
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"  kept {folder}")


def run_check_child(path: Path) -> tuple[int, float, str]:
    """run_check in a child of its own: RUSAGE_CHILDREN keeps the largest child's peak, so each
    kind is measured by a fresh intermediate process."""
    import json

    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from bench.onnx_memory import run_check; "
            "from pathlib import Path; print(json.dumps(run_check(Path(sys.argv[2]))))")
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT), str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    peak, elapsed, out = json.loads(proc.stdout.strip().splitlines()[-1])
    return int(peak), float(elapsed), out

if __name__ == "__main__":
    sys.exit(main())
