#!/bin/sh
# Long fuzz runs (the test suite runs bounded versions of the same fuzzers).
#   bench/fuzz.sh fix [COUNT] [--seed S] [--jobs N] [--out DIR]
#       --fix against odd line-break characters: COUNT generated fixable programs (default 2000)
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
what=${1:-fix}
[ $# -gt 0 ] && shift
case "$what" in
  fix) exec "$PY" bench/fuzz_fix.py "$@" ;;
  *) echo "usage: bench/fuzz.sh fix [COUNT] [--seed S] [--jobs N] [--out DIR]" >&2; exit 2 ;;
esac
