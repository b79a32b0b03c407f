#!/usr/bin/env bash
# One short GPU check: the CUDA tests, the benchmark (default, bf16 autocast, torch.compile), one job against a
# 6-job sweep run sequentially, in parallel and fused on one GPU, the sweep arrangements' aggregate speed for 6 and 48
# settings, and a fused halving search. Each step prints its figures and exit status; a failing
# step prints the end of its log, and every log is kept (under $OUT when set, so it comes back from the GPU machine).
# Run from the repo root on a machine with a CUDA GPU and the project's packages. On a machine that can fetch nothing,
# first run scripts/gpu_prepare.sh where the network is, and carry its .whl/ and data/ along with the working tree.
#   DEVICE=cpu EPOCHS=1 STEPS=30 SWEEP_STEPS=10 bash scripts/gpu_check.sh   # a dry run of the same steps on the CPU
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}; EPOCHS=${EPOCHS:-3}; STEPS=${STEPS:-400}; SWEEP_STEPS=${SWEEP_STEPS:-100}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1
LOGS=$(mktemp -d); RUNS=$(mktemp -d); FAILED=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"

# step NAME SHOW COMMAND...: run COMMAND, its output in $LOGS/NAME.log; SHOW=all prints the output, SHOW=tail its last
# lines; on failure the last 30 lines are printed whatever SHOW says.
step() {
  local name=$1 show=$2; shift 2
  local start rc ms; start=$(date +%s%N)
  "$@" >"$LOGS/$name.log" 2>&1; rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  echo "== $name: exit $rc, $ms ms"
  if [ "$rc" -ne 0 ]; then FAILED=$((FAILED + 1)); tail -n 30 "$LOGS/$name.log"
  elif [ "$show" = all ]; then cat "$LOGS/$name.log"
  elif [ "$show" = tail ]; then tail -n 4 "$LOGS/$name.log"; fi
}

step cuda_tests tail python3 -m pytest -q -m gpu tests/test_gpu.py
step bench_default all python3 -m lenet_exp.bench --device "$DEVICE" --repeats 3 --steps "$STEPS" --target-acc 0.75
step bench_amp all python3 -m lenet_exp.bench --device "$DEVICE" --repeats 3 --steps "$STEPS" --target-acc 0 device.amp=true
step bench_compile all python3 -m lenet_exp.bench --device "$DEVICE" --repeats 3 --steps "$STEPS" --target-acc 0 device.compile=true

SWEEP="optimizer.lr=0.1,0.3,0.9 activation=sigmoid,relu device=$DEVICE trainer.epochs=$EPOCHS"
step one_job tail python3 -m lenet_exp device="$DEVICE" trainer.epochs="$EPOCHS" trainer.progress=false hydra.run.dir="$RUNS/one"
# The next chapter's knobs on the device: batch norm, dropout and augmentation (done on the data's device), in bf16.
step next_chapter tail python3 -m lenet_exp device="$DEVICE" trainer.epochs="$EPOCHS" trainer.progress=false model.norm=batch model.dropout=0.3 data.augment=true device.amp=true hydra.run.dir="$RUNS/next"
step bench_best all python3 -m lenet_exp.bench --device "$DEVICE" --repeats 3 --steps "$STEPS" hparams_search=lenet_best optimizer.lr=0.003 device.threads=null
step sequential_6_jobs none python3 -m lenet_exp --multirun $SWEEP hydra.sweep.dir="$RUNS/seq"
step parallel_6_jobs none python3 -m lenet_exp --multirun $SWEEP hydra/launcher=parallel hydra.launcher.n_jobs=6 hydra.sweep.dir="$RUNS/par"
step fused_6_jobs none python3 -m lenet_exp --multirun $SWEEP hydra/launcher=fused hydra.sweep.dir="$RUNS/fused"
[ -f "$RUNS/fused/summary.md" ] && sed -n '1,20p' "$RUNS/fused/summary.md"
# Aggregate examples/sec of K settings one after another, side by side (parallel's arrangement) and fused.
step bench_sweep_6 all python3 -m lenet_exp.bench --device "$DEVICE" --sweep 6 --steps "$SWEEP_STEPS" --jobs 6
step bench_sweep_48 all python3 -m lenet_exp.bench --device "$DEVICE" --sweep 48 --steps "$SWEEP_STEPS" --jobs 8
step fused_halving tail python3 -m lenet_exp --multirun hparams_search=halving $SWEEP model.norm=batch data.augment=true hydra/launcher=fused hydra.sweep.dir="$RUNS/halving"
[ -f "$RUNS/halving/summary.md" ] && sed -n '1,12p' "$RUNS/halving/summary.md"

if [ -n "${OUT:-}" ]; then tar czf "$OUT/gpu_check_logs.tgz" -C "$LOGS" . && echo "logs: \$OUT/gpu_check_logs.tgz"; else echo "logs: $LOGS"; fi
echo "== $FAILED step(s) failed"
exit "$FAILED"
