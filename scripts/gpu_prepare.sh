#!/usr/bin/env bash
# Packs, here, what scripts/gpu_run.sh needs on a GPU machine that has PyTorch and Lightning but
# no network: the missing packages as wheels (Python 3.12, x86-64), MNIST's four IDX files
# gzipped, and this machine's evaluation classifier and judge (so MNIST-FID and confidence there and here agree).
#   bash scripts/gpu_prepare.sh        # writes .gpu/ (git-ignored, ~15 MB)
# Then carry .gpu with the working tree and run `bash scripts/gpu_run.sh` there.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.gpu
mkdir -p "$DEST/wheels" "$DEST/mnist" "$DEST/classifier"
# Pure-Python packages the GPU image lacks (it has torch, lightning, torchmetrics, matplotlib,
# tensorboard, tqdm, scipy, huggingface-hub, safetensors, regex); diffusers for bench.diffusers=true.
WHEELS=(hydra-core==1.3.2 omegaconf==2.3.0 diffusers==0.42.1 importlib-metadata==8.7.0)
for package in "${WHEELS[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform any -d "$DEST/wheels" "$package" 2>&1 | { grep -v "is ignored" || true; }
done
# antlr4's runtime 4.9.3 (hydra-core's pin) ships as an sdist only: build its wheel here (pure Python)
python3 -m pip wheel -q --no-deps -w "$DEST/wheels" antlr4-python3-runtime==4.9.3 2>&1 | { grep -v "is ignored" || true; }
python3 -c "from ddpm_lit.data.mnist import ensure_mnist; ensure_mnist('data')"
for f in data/MNIST/raw/*-ubyte; do gzip -c "$f" > "$DEST/mnist/$(basename "$f").gz"; done
python3 -c "from ddpm_lit.evaluation.classifier import load_or_train; load_or_train('data'); load_or_train('data', judge=True)"
cp data/classifier/mnist_cnn.pt data/classifier/mnist_judge.pt "$DEST/classifier/"
ls -l "$DEST"/wheels "$DEST"/mnist "$DEST"/classifier
du -sh "$DEST"
