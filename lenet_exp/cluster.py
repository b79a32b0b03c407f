"""A job on a Slurm cluster (hydra/launcher=slurm, through submitit): the CPUs it was given, and a pre-emption or a
time limit survived by requeuing itself after its checkpoint, unless its own sweep cancelled it."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

REQUEUE_FROM = ("RUNNING ", "PREEMPTED ")  # job states in which a stopped job goes back in the queue
CANCELLED = ".slurm_cancelled"  # in the sweep folder while its sweep cancels its jobs: they stop without requeuing


def on_slurm() -> bool:
    """Running as a job submitit submitted to Slurm (not merely inside an allocation, such as salloc's shell)."""
    return os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and "SLURM_JOB_ID" in os.environ


def cpus_given() -> int | None:
    """The CPUs Slurm gave the job (--cpus-per-task), for torch's threads when device.threads is null."""
    value = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def stop_signals() -> tuple[int, ...]:
    """The signals that stop training after a checkpoint: Ctrl-C and SIGTERM; on Slurm also SIGUSR2, which submitit
    asks for shortly before the time limit."""
    return (signal.SIGINT, signal.SIGTERM, *((signal.SIGUSR2,) if on_slurm() else ()))


def requeue(sweep_dir: Path | None, signum: int) -> bool:
    """After the checkpoint a SIGTERM or SIGUSR2 left (pre-emption, `scancel --signal=TERM`, the time limit): put this
    job back in Slurm's queue, to continue from its checkpoint. Not for Ctrl-C, nor a job its sweep is cancelling."""
    if not on_slurm() or signum == signal.SIGINT or sweep_dir is None or (sweep_dir / CANCELLED).exists():
        return False
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array}_{task}" if array and task else os.environ["SLURM_JOB_ID"]
    try:  # a signal alone leaves the job RUNNING; `scancel` (a user's cancel) has made it COMPLETING: no requeue
        shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, timeout=60).stdout
        if not any(f"JobState={state}" in shown for state in REQUEUE_FROM):
            return False
        return subprocess.run(["scontrol", "requeue", job], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
