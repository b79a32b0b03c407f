#!/usr/bin/env bash
# One short GPU check: the CUDA tests, the benchmark, and a 6-job sweep sequential vs parallel on one GPU.
# Run from the repo root on a machine with a CUDA GPU and the project installed (pip install -e ".[dev]").
# Where nothing can be installed, carry wheels in .whl/ (hydra-core, omegaconf, antlr4-python3-runtime,
# hydra-joblib-launcher) and this script puts them on PYTHONPATH first.
set -uo pipefail
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

echo "== CUDA tests"
python3 -m pytest -q -m gpu tests/test_gpu.py

echo "== bench (default options, then bf16 autocast, then torch.compile)"
python3 -m lenet_exp.bench --device cuda --repeats 3 --steps 400 --target-acc 0.75
python3 -m lenet_exp.bench --device cuda --repeats 3 --steps 400 --target-acc 0 device.amp=true
python3 -m lenet_exp.bench --device cuda --repeats 3 --steps 400 --target-acc 0 device.compile=true

echo "== one job, then a 6-job sweep sequential and parallel on one GPU (3 epochs each)"
SWEEP="optimizer.lr=0.1,0.3,0.9 activation=sigmoid,relu device=cuda trainer.epochs=3"
d=$(mktemp -d)
/usr/bin/env time -f "one job: %e s" python3 -m lenet_exp device=cuda trainer.epochs=3 hydra.run.dir=$d/one >/dev/null 2>&1 || true
start=$(date +%s.%N); python3 -m lenet_exp --multirun $SWEEP hydra.sweep.dir=$d/seq >/dev/null 2>&1
echo "sequential 6 jobs: $(echo "$(date +%s.%N) - $start" | bc) s"
start=$(date +%s.%N); python3 -m lenet_exp --multirun $SWEEP hydra/launcher=parallel hydra.launcher.n_jobs=6 hydra.sweep.dir=$d/par >/dev/null 2>&1
echo "parallel (6 at once) 6 jobs: $(echo "$(date +%s.%N) - $start" | bc) s"
cat $d/par/summary.md
