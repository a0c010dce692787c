#!/bin/sh
# Long fuzz runs (the test suite runs bounded versions of the same fuzzers).
#   bench/fuzz.sh fix [COUNT] [--seed S] [--jobs N] [--out DIR]
#       --fix against odd line-break characters: COUNT generated fixable programs (default 2000)
#   bench/fuzz.sh source [COUNT] [--seed S] [--budget SECONDS]
#       hostile generated modules and damaged fixtures: no internal error, no hang, good file reported
#   bench/fuzz.sh onnx [COUNT] [--seed S] [--budget SECONDS]
#       damaged ONNX models, the same checks
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
what=${1:-fix}
[ $# -gt 0 ] && shift
case "$what" in
  fix) exec "$PY" bench/fuzz_fix.py "$@" ;;
  source|onnx) exec "$PY" bench/fuzz_robust.py "$what" "$@" ;;
  *) echo "usage: bench/fuzz.sh fix|source|onnx [COUNT] [options]" >&2; exit 2 ;;
esac
