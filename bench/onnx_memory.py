"""Peak memory of `gradlint check` on an ONNX model with >= 2 GB of external weights.

The issue's bound: peak RSS below 1.5 x the largest tensor + 200 MB, i.e. the weights are
streamed tensor by tensor and never all held at once. The model (a chain of MatMul + Relu
with He-initialised weights, written chunk by chunk so this script stays small too) lives in
a temporary folder that is deleted afterwards.

    python bench/onnx_memory.py [--layers 8] [--width 8192] [--keep]

Prints the sizes, the peak RSS of the child process (getrusage RUSAGE_CHILDREN) and the ratio
peak / (1.5 x largest tensor + 200 MB); exits 1 when the ratio is >= 1.
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
    args = parser.parse_args()
    need = args.layers * 4 * args.width * args.width
    base = Path(args.dir) if args.dir else Path(tempfile.gettempdir())
    free = shutil.disk_usage(base).free
    if free < need + 512 * MB:
        raise SystemExit(f"not enough disk in {base}: need {need / MB:.0f} MB, {free / MB:.0f} MB free")
    folder = Path(tempfile.mkdtemp(prefix="gradlint-onnx-memory-", dir=base))
    try:
        t0 = time.perf_counter()
        path, total, largest = build(folder, args.layers, args.width)
        print(f"model: {args.layers} x MatMul[{args.width}, {args.width}] float32, external weights "
              f"{total / MB:.0f} MB ({total / 1e9:.2f} GB), largest tensor {largest / MB:.0f} MB "
              f"(written in {time.perf_counter() - t0:.1f} s)")
        peak, elapsed, out = run_check(path)
        codes = sorted(set(re.findall(r"\bGL\d{3}\b", out)))
        bound = 1.5 * largest + 200 * MB
        ratio = peak / bound
        print(f"gradlint check: {elapsed:.1f} s, findings {codes}")
        print(f"peak RSS {peak / MB:.0f} MB; bound 1.5 x largest + 200 MB = {bound / MB:.0f} MB; "
              f"ratio {ratio:.3f} (peak / whole model = {peak / total:.3f})")
        return 0 if ratio < 1 else 1
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"kept {folder}")


if __name__ == "__main__":
    sys.exit(main())
