#!/usr/bin/env bash
# Prepare a GPU check on this (networked) machine for a GPU machine that can fetch nothing:
#   .whl/  the pure-Python packages its image lacks (hydra-core, omegaconf, antlr4 runtime, joblib launcher),
#          at the versions installed here, built as wheels;
#   data/FashionMNIST/raw/  the four Fashion-MNIST files, from the system package.
# Both are git-ignored; carry them to the GPU machine with the working tree and run scripts/gpu_check.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=$(python3 -c 'from importlib.metadata import version as v
print(" ".join(f"{n}=={v(n)}" for n in ("hydra-core", "omegaconf", "antlr4-python3-runtime", "hydra-joblib-launcher")))')
rm -rf .whl
python3 -m pip wheel -q --no-deps -w .whl $pkgs
src=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
mkdir -p data/FashionMNIST/raw
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [ -e "data/FashionMNIST/raw/$f" ] || [ -e "data/FashionMNIST/raw/$f.gz" ] || cp "$src/$f.gz" data/FashionMNIST/raw/
done
ls .whl
du -sh .whl data | sed 's/^/carry: /'
