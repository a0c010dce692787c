#!/usr/bin/env bash
# Fetch real PyTorch code to check gradlint against: the wheels of timm, torchvision, transformers, diffusers,
# accelerate and lightning (model code), and of speechbrain, torchrl, ultralytics, stable-baselines3,
# torchtune, pytorch-ignite, fairseq2, mosaicml (composer), pytorch-forecasting and skorch (training
# loops, clipping, AMP: what the training-loop rules read), and of kornia, monai, torch-geometric,
# torchmetrics, pytorch-metric-learning, lightly and segmentation-models-pytorch (geometry, losses,
# metrics, graphs, U-Nets) and of pyro, gpytorch, botorch, e3nn, torchdiffeq and zuko (probabilistic
# and equivariant models: what the numerics rules read), and of trl, peft, sentence-transformers,
# fastai, tsai, flair, espnet, pytorch-tabnet, neuralforecast and gluonts (trainers of their own), and
# of x-transformers, vector-quantize-pytorch, denoising-diffusion-pytorch, open-clip-torch, asteroid,
# piq, geomloss, entmax and torchsde (hand-written numerics: losses, metrics, quantizers) from PyPI (no torch needed: wheels are only
# unpacked, never installed), then run `gradlint check` over their sources and print the counts per rule.
#
#   bench/corpus.sh            # download (once), unpack, check; findings in bench/corpus/findings.json
#   bench/corpus.sh --no-check # only download and unpack
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
corpus="$here/corpus"
wheels="$corpus/wheels"
src="$corpus/src"
python="${PYTHON:-python3}"
mkdir -p "$wheels" "$src"
# Pinned: bench/judged.tsv names findings by file and line, so the corpus must not move.
for spec in timm==1.0.31 torchvision==0.29.1 transformers==5.24.0 diffusers==0.42.1 accelerate==1.15.0 \
    lightning==2.6.6 speechbrain==1.1.2 torchrl==0.14.1 ultralytics==8.4.190 stable-baselines3==2.9.2 \
    torchtune==0.6.1 pytorch-ignite==0.5.5 fairseq2==0.8.1 mosaicml==0.32.1 pytorch-forecasting==1.8.0 \
    skorch==1.4.0 kornia==0.9.0 monai==1.6.1 torch-geometric==2.8.1 torchmetrics==1.9.0 \
    pytorch-metric-learning==2.9.0 lightly==1.6.0 segmentation-models-pytorch==0.6.0 pyro-ppl==1.9.2 \
    gpytorch==1.15.2 botorch==0.18.1 e3nn==0.6.0 torchdiffeq==0.2.5 zuko==1.6.0 \
    trl==1.16.0 peft==0.21.2 sentence-transformers==6.3.0 fastai==2.8.12 tsai==1.0.1 flair==0.15.1 \
    espnet==202511 pytorch-tabnet==4.1.0 neuralforecast==3.3.0 gluonts==0.17.0 \
    x-transformers==2.31.10 vector-quantize-pytorch==1.32.0 denoising-diffusion-pytorch==2.3.4 \
    open-clip-torch==3.3.0 asteroid==0.7.0 piq==0.8.0 geomloss==0.3.1 entmax==1.3 torchsde==0.2.6; do
  pkg="${spec%%==*}"
  pkg="${pkg//-/_}"  # (a wheel's file name spells the project's dashes as underscores)
  if ! ls "$wheels"/"$pkg"-*.whl >/dev/null 2>&1; then
    "$python" -m pip download --quiet --no-deps --only-binary=:all: --dest "$wheels" "$spec" \
      || "$python" -m pip download --quiet --no-deps --dest "$wheels" "$spec"
  fi
  whl=$(ls "$wheels"/"$pkg"-*.whl | head -n 1)
  if [ ! -d "$src/$pkg" ]; then
    mkdir -p "$src/$pkg"
    "$python" -m zipfile -e "$whl" "$src/$pkg"
  fi
  # Each library is a project of its own, as its repository is: without a marker the project of a
  # corpus file is this repository, and every run over one library scanned all the others too
  # (callers, gradcheck mentions) and grew slower as the corpus grew.
  [ -e "$src/$pkg/pyproject.toml" ] || printf '# project marker (bench/corpus.sh)\n' > "$src/$pkg/pyproject.toml"
done
[ "${1:-}" = "--no-check" ] && exit 0
cd "$src"
start=$(date +%s)
set +e
"$python" -m gradlint.cli check . --config "$here/corpus.toml" --no-cache --exit-zero --format json --output-file "$corpus/findings.json"
rc=$?
set -e
end=$(date +%s)
echo "gradlint check over $(find . -name '*.py' | wc -l) files: exit $rc in $((end - start)) s"
"$python" - "$corpus/findings.json" <<'PY'
import collections, json, sys
findings = json.load(open(sys.argv[1]))
counts = collections.Counter(f["code"] for f in findings)
for code, n in sorted(counts.items()):
    print(f"{code} {n}")
print(f"total {sum(counts.values())}")
PY
