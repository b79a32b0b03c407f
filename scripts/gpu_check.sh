#!/usr/bin/env bash
# One short GPU check: the CUDA tests, the benchmark, and a 6-job sweep sequential vs parallel on one GPU.
# Run from the repo root on a machine with a CUDA GPU and the project installed (pip install -e ".[dev]").
# On a machine that can fetch nothing, first run scripts/gpu_prepare.sh where the network is, and carry its
# .whl/ (wheels this script installs into /tmp/site) and data/ (Fashion-MNIST) along with the working tree.
#   DEVICE=cpu EPOCHS=1 STEPS=50 bash scripts/gpu_check.sh   # a dry run of the same steps on the CPU
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}; EPOCHS=${EPOCHS:-3}; STEPS=${STEPS:-400}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"

echo "== CUDA tests"
python3 -m pytest -q -m gpu tests/test_gpu.py

echo "== bench (default options, then bf16 autocast, then torch.compile)"
python3 -m lenet_exp.bench --device "$DEVICE" --repeats 3 --steps "$STEPS" --target-acc 0.75
python3 -m lenet_exp.bench --device "$DEVICE" --repeats 3 --steps "$STEPS" --target-acc 0 device.amp=true
python3 -m lenet_exp.bench --device "$DEVICE" --repeats 3 --steps "$STEPS" --target-acc 0 device.compile=true

echo "== one job, then a 6-job sweep sequential and parallel on one device ($EPOCHS epochs each)"
SWEEP="optimizer.lr=0.1,0.3,0.9 activation=sigmoid,relu device=$DEVICE trainer.epochs=$EPOCHS"
d=$(mktemp -d)
timed() { local label=$1; shift; local start; start=$(date +%s%N); "$@" >"$d/$label.log" 2>&1; echo "$label: exit $?, $(( ($(date +%s%N) - start) / 1000000 )) ms"; }
timed one_job python3 -m lenet_exp device="$DEVICE" trainer.epochs="$EPOCHS" hydra.run.dir="$d/one"
timed sequential_6_jobs python3 -m lenet_exp --multirun $SWEEP hydra.sweep.dir="$d/seq"
timed parallel_6_jobs python3 -m lenet_exp --multirun $SWEEP hydra/launcher=parallel hydra.launcher.n_jobs=6 hydra.sweep.dir="$d/par"
cat "$d/par/summary.md"
