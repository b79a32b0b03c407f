"""Slurm, from lenet_exp's side (hydra/launcher=slurm, through submitit): what the cluster can run, checked before any
job is submitted; and a job on it: the CPUs it was given, and a pre-emption or a time limit survived by requeuing
itself after its checkpoint, unless its own sweep cancelled it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from lenet_exp.errors import ConfigError

REQUEUE_FROM = ("RUNNING ", "PREEMPTED ")  # job states in which a stopped job goes back in the queue
CANCELLED = ".slurm_cancelled"  # in the sweep folder while its sweep cancels its jobs: they stop without requeuing
ARRAYS = ".slurm_arrays"  # in the sweep folder: the job arrays its sweep submitted, one id a line


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
        shown = slurm("scontrol", "show", "job", job).stdout
        if not any(f"JobState={state}" in shown for state in REQUEUE_FROM):
            return False
        return slurm("scontrol", "requeue", job).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def slurm(*args: str) -> subprocess.CompletedProcess:
    """One of Slurm's commands, its output as text (a minute at most)."""
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


def gpus_of(params: dict, device: str) -> int:
    """GPUs a job asks for: hydra.launcher.gpus_per_node when given, else 1 with device=cuda and none otherwise."""
    given = params.get("gpus_per_node")
    return (1 if device == "cuda" else 0) if given is None else int(given)


def check_cluster(params: dict, device: str) -> None:
    """Refuse, in one line naming the key to change, jobs this cluster cannot run: Slurm's commands or its accounting
    (sacct, which submitit follows jobs with) missing, an unknown partition, more CPUs, memory or GPUs than any of its
    nodes has, or device=cuda without a GPU. `params`: the launcher's keys."""
    _check_tools()
    _check_time_limit(params)
    partition = _partition(params.get("partition"))
    nodes = [line.split("|") for line in slurm("sinfo", "-h", "-N", "-p", partition, "-o", "%c|%m|%G").stdout.split()]
    _check_size(params, partition, nodes)
    _check_gpus(params, device, partition, nodes)


def _check_tools() -> None:
    """Slurm's commands are here, and its accounting answers."""
    for tool in ("sbatch", "squeue", "scancel", "sinfo", "sacct"):
        if not shutil.which(tool):
            raise ConfigError(
                f"hydra/launcher=slurm needs Slurm's {tool}, which is not found here; use hydra/launcher=parallel "
                "on this machine"
            )
    accounting = slurm("sacct", "-n", "-X", "-j", "1")
    if accounting.returncode:
        said = (accounting.stderr or accounting.stdout).strip().splitlines()
        raise ConfigError(
            f"hydra/launcher=slurm follows its jobs with sacct, which fails here ({said[0] if said else 'no answer'}); "
            "enable Slurm's accounting (slurmdbd), or use hydra/launcher=parallel"
        )


def _check_time_limit(params: dict) -> None:
    """A try must outlast the warning before its time limit, or it would stop before doing work."""
    warned = int(params.get("signal_delay_s") or 120)  # submitit's SIGUSR2 this long before the limit: a checkpoint
    if params.get("timeout_min") and params["timeout_min"] * 60 < 2 * warned:
        raise ConfigError(
            f"hydra.launcher.timeout_min={params['timeout_min']}: each try is warned {warned} s before its limit "
            f"(hydra.launcher.signal_delay_s) and requeued, so it would stop before doing work; give "
            f"hydra.launcher.timeout_min={-(-2 * warned // 60)} or more"
        )


def _partition(given: str | None) -> str:
    """The partition the jobs go to: the one given, else the cluster's default; refused when it has none such."""
    listed = slurm("sinfo", "-h", "-o", "%P").stdout.split()
    names = [p.rstrip("*") for p in listed]
    partition = given or next((p.rstrip("*") for p in listed if p.endswith("*")), None)
    if partition not in names:
        raise ConfigError(
            f"hydra.launcher.partition={given or 'null'}: "
            f"{'no such partition on this cluster' if given else 'this cluster has no default partition'}; "
            f"choose one of {', '.join(names) or '(none listed by sinfo)'}"
        )
    return partition


def _check_size(params: dict, partition: str, nodes: list[list[str]]) -> None:
    """No more CPUs or memory a job than the partition's largest node has."""
    cpus = max((int(c.rstrip("+")) for c, _, _ in nodes), default=0)
    memory_gb = max((int(m.rstrip("+")) for _, m, _ in nodes), default=0) // 1024
    tasks = int(params.get("tasks_per_node") or 1)
    if (params.get("cpus_per_task") or 1) * tasks > cpus:
        raise ConfigError(
            f"hydra.launcher.cpus_per_task={params.get('cpus_per_task')}: the nodes of partition {partition} have "
            f"{cpus} CPUs at most; give hydra.launcher.cpus_per_task={max(cpus // tasks, 1)} or less"
        )
    if params.get("mem_gb") and params["mem_gb"] > memory_gb:
        raise ConfigError(
            f"hydra.launcher.mem_gb={params['mem_gb']}: the nodes of partition {partition} have {memory_gb} GB at "
            f"most; give hydra.launcher.mem_gb={memory_gb} or less"
        )


def _check_gpus(params: dict, device: str, partition: str, nodes: list[list[str]]) -> None:
    """GPUs asked for where the partition has them, and one a job on the GPU."""
    gpus = gpus_of(params, device)
    if gpus and not any("gpu" in gres for *_, gres in nodes):
        given = params.get("gpus_per_node") is not None
        asked = f"hydra.launcher.gpus_per_node={gpus}" if given else "device=cuda (a GPU for each job)"
        raise ConfigError(
            f"{asked}: partition {partition} has no GPUs; choose a GPU partition (hydra.launcher.partition=...) or "
            "train on the CPU (device=cpu, hydra.launcher.gpus_per_node=0)"
        )
    if device == "cuda" and not gpus:
        raise ConfigError(
            "device=cuda with hydra.launcher.gpus_per_node=0: a job on the GPU needs one; give "
            "hydra.launcher.gpus_per_node=1 (or device=cpu)"
        )


def note_array(sweep_dir: Path, array: str) -> None:
    """Keep the id of a job array the sweep submitted, so that a rerun can see whether its jobs still live."""
    with open(sweep_dir / ARRAYS, "a", encoding="utf-8") as f:
        f.write(f"{array}\n")


def still_queued(sweep_dir: Path) -> dict[str, int]:
    """The sweep's job arrays (ARRAYS) with tasks Slurm still holds, queued or running: array id -> tasks."""
    try:
        arrays = sorted(set((sweep_dir / ARRAYS).read_text(encoding="utf-8").split()))
    except OSError:
        return {}
    listed = slurm("squeue", "-h", "-r", "-j", ",".join(arrays), "-o", "%i").stdout.split() if arrays else []
    alive: dict[str, int] = {}
    for task in listed:
        alive[task.split("_")[0]] = alive.get(task.split("_")[0], 0) + 1
    return alive


def queued_tasks(arrays: list[str]) -> set[str]:
    """The tasks of these job arrays that Slurm holds now, queued or running, one id each (`123_4`)."""
    return set(slurm("squeue", "-h", "-r", "-j", ",".join(arrays), "-o", "%i").stdout.split())


def recorded(job: str) -> bool:
    """Whether Slurm's accounting has a record of the job (a pending task cancelled before it started has none)."""
    return bool(slurm("sacct", "-n", "-X", "-j", job, "-o", "State").stdout.strip())
