#!/usr/bin/env bash
# gradlint probe on a GPU machine: the probe tests on CUDA, the overhead benchmark (CPU and
# CUDA), and one probe run of the sigmoid MLP on CUDA as JSON. Everything lands in one folder:
#
#   bench/probe_gpu.sh [OUT_DIR]      # default: $OUT if set, else ./probe-gpu-out
#
# Needs the project's Python environment (torch with CUDA, libcst, onnx, click, pytest,
# matplotlib); set PYTHON to choose the interpreter. No network access is needed.
set -u
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-probe-gpu-out}}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
  date -u
  nvidia-smi || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
} > "$OUT_DIR/env.txt" 2>&1
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA device visible to torch: see $OUT_DIR/env.txt" | tee "$OUT_DIR/summary.txt"
  exit 2
fi

GRADLINT_PROBE_TEST_DEVICE=cuda timeout 420 "$PY" -m pytest -q -p no:cacheprovider \
  tests/test_probe_*.py > "$OUT_DIR/tests_cuda.txt" 2>&1
tests_rc=$?

timeout 420 "$PY" bench/probe_overhead.py --device all --iters 10 --whole-iters 2 > "$OUT_DIR/overhead.txt" 2>&1
bench_rc=$?

timeout 120 "$PY" -m gradlint.cli probe fixtures/probe/sigmoid_mlp.py:make_model --device cuda \
  --format json -o "$OUT_DIR/sigmoid_mlp_probe.json" --plot "$OUT_DIR/sigmoid_mlp_probe.png" 2> "$OUT_DIR/sigmoid_mlp_probe.stderr"
probe_rc=$?  # 1 is expected: the chain's vanishing gradient is confirmed or found

{
  echo "tests on cuda: rc=$tests_rc ($(tail -n 1 "$OUT_DIR/tests_cuda.txt"))"
  echo "overhead benchmark: rc=$bench_rc"
  cat "$OUT_DIR/overhead.txt"
  echo "probe sigmoid_mlp on cuda: rc=$probe_rc (1 expected)"
} | tee "$OUT_DIR/summary.txt"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ] && [ "$probe_rc" -eq 1 ]
