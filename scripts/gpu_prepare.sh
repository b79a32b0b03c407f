#!/usr/bin/env bash
# Prepare a GPU check on this (networked) machine for a GPU machine that can fetch nothing:
#   .whl/  wheels of the pure-Python packages the GPU image lacks, at the versions the project is tested with;
#   data/FashionMNIST/raw/  the four Fashion-MNIST files, from the system package.
# Both are git-ignored; carry them to the GPU machine with the working tree and run scripts/gpu_check.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
# Tested together (the test suite passed with exactly these); antlr4 4.9.3 is the runtime Hydra 1.3's parser needs.
PACKAGES="hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3 hydra-joblib-launcher==1.2.0"
rm -rf .whl
python3 -m pip wheel -q --no-deps -w .whl $PACKAGES  # from the package index, whatever python3 has installed
src=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
mkdir -p data/FashionMNIST/raw
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [ -e "data/FashionMNIST/raw/$f" ] || [ -e "data/FashionMNIST/raw/$f.gz" ] || cp "$src/$f.gz" data/FashionMNIST/raw/
done
ls .whl
du -sh .whl data | sed 's/^/carry: /'
