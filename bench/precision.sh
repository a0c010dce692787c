#!/usr/bin/env bash
# Precision on the released-library corpus: fetch it (bench/corpus.sh), run `gradlint check` over
# it with the default rule selection, then compare every finding with the judged list
# bench/judged.tsv (bench/precision.py). Extra arguments go to `gradlint check` (e.g. --select GL306).
#
#   bench/precision.sh                  # default rules
#   bench/precision.sh --select GL3,GL4 # a family, including rules that are off by default
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
PYTHON="$python" bash "$here/corpus.sh" --no-check
out="$here/corpus/precision_findings.json"
cd "$here/.."
"$python" -m gradlint.cli check "$here/corpus/src" --config "$here/corpus.toml" --no-cache --exit-zero --format json --output-file "$out" "$@"
"$python" "$here/precision.py" "$out" --corpus "$here/corpus/src"
