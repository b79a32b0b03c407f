"""The Slurm launcher's work as plain functions: check that the cluster can run the jobs before any is submitted, submit
only the unfinished ones as one job array, follow it, cancel it on Ctrl-C or SIGTERM, and turn a job that ended without
a result into one line and a `failed` record.

A job pre-empted or at its time limit saves its checkpoint and requeues itself (lenet_exp.cluster); the launcher just
keeps waiting, as submitit counts a requeued job as not done.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)
POLL_S = 1.0  # how often the launcher looks at its jobs' result files (submitit asks sacct less often)
PENDING_CHECK_S = 10.0  # how often it asks squeue why jobs still wait
CANCEL_WAIT_S = 90.0  # how long cancelled jobs get to save their checkpoints before they are killed
# squeue reasons that no wait will clear: the request exceeds what the partition allows, or names what is not there
NEVER_CLEARS = {
    "PartitionConfig",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "BadConstraints",
    "InvalidAccount",
    "InvalidQOS",
    "QOSMaxCpuPerJobLimit",
    "QOSMaxGRESPerJob",
    "QOSMaxMemoryPerJob",
}


def _slurm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


def gpus_of(params: dict, device: str) -> int:
    """GPUs a job asks for: hydra.launcher.gpus_per_node when given, else 1 with device=cuda and none otherwise."""
    given = params.get("gpus_per_node")
    return (1 if device == "cuda" else 0) if given is None else int(given)


def check_cluster(params: dict, device: str) -> None:
    """Refuse, in one line naming the key to change, jobs this cluster cannot run: Slurm's commands or its accounting
    (sacct, which submitit follows jobs with) missing, an unknown partition, more CPUs, memory or GPUs than any of its
    nodes has, or device=cuda without a GPU."""
    from lenet_exp.config import ConfigError

    for tool in ("sbatch", "squeue", "scancel", "sinfo", "sacct"):
        if not shutil.which(tool):
            raise ConfigError(
                f"hydra/launcher=slurm needs Slurm's {tool}, which is not found here; use hydra/launcher=parallel "
                "on this machine"
            )
    accounting = _slurm("sacct", "-n", "-X", "-j", "1")
    if accounting.returncode:
        said = (accounting.stderr or accounting.stdout).strip().splitlines()
        raise ConfigError(
            f"hydra/launcher=slurm follows its jobs with sacct, which fails here ({said[0] if said else 'no answer'}); "
            "enable Slurm's accounting (slurmdbd), or use hydra/launcher=parallel"
        )
    warned = int(params.get("signal_delay_s") or 120)  # submitit's SIGUSR2 this long before the limit: a checkpoint
    if params.get("timeout_min") and params["timeout_min"] * 60 < 2 * warned:
        raise ConfigError(
            f"hydra.launcher.timeout_min={params['timeout_min']}: each try is warned {warned} s before its limit "
            f"(hydra.launcher.signal_delay_s) and requeued, so it would stop before doing work; give "
            f"hydra.launcher.timeout_min={-(-2 * warned // 60)} or more"
        )
    listed = _slurm("sinfo", "-h", "-o", "%P").stdout.split()
    names = [p.rstrip("*") for p in listed]
    given = params.get("partition")
    partition = given or next((p.rstrip("*") for p in listed if p.endswith("*")), None)
    if partition not in names:
        raise ConfigError(
            f"hydra.launcher.partition={given or 'null'}: "
            f"{'no such partition on this cluster' if given else 'this cluster has no default partition'}; "
            f"choose one of {', '.join(names) or '(none listed by sinfo)'}"
        )
    nodes = [line.split("|") for line in _slurm("sinfo", "-h", "-N", "-p", partition, "-o", "%c|%m|%G").stdout.split()]
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


def launch(launcher, job_overrides, initial_job_idx: int) -> list:
    """Every job's JobReturn: a finished job's from its own record, without submitting it; the others' from Slurm."""
    from hydra.core.utils import configure_log, setup_globals

    from lenet_exp.cluster import CANCELLED
    from lenet_exp.task import signals_held

    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / CANCELLED).unlink(missing_ok=True)  # a cancelled sweep run again: its jobs may requeue again
    returns, todo = [], []
    for i, overrides in enumerate(job_overrides):
        cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.num = initial_job_idx + i
        returns.append(finished(cfg, sweep_dir))
        if returns[-1] is None:
            todo.append((i, cfg, list(overrides)))
    if done := [r for r in returns if r is not None]:
        log.info(f"Not resubmitted, finished already: {_jobs_named([r.working_dir for r in done])}")
    if todo:
        configs = [cfg for _, cfg, _ in todo]
        groups = groups_of(launcher, configs)
        with signals_held() as came:  # a Ctrl-C or SIGTERM from here on cancels whatever was submitted
            jobs = submit(launcher, configs, [overrides for *_, overrides in todo], groups)
            follow(jobs, sweep_dir, came)
        for group, job in zip(groups, jobs):
            for k, ret in zip(group, results_of(job, [configs[k] for k in group], sweep_dir)):
                returns[todo[k][0]] = ret
    return returns


def groups_of(launcher, configs: list[DictConfig]) -> list[list[int]]:
    """The jobs of each Slurm job: one each, or with hydra.launcher.max_models > 1 the fused launcher's groups (jobs
    that train together as one fused model on one node: how fusion pays on a GPU cluster)."""
    from hydra_plugins.lenet_exp_fused._core import fusion_groups, is_lenet_task

    if launcher.max_models < 2 or not is_lenet_task(launcher.task_function):
        return [[i] for i in range(len(configs))]
    return fusion_groups(configs, launcher.max_models)


def run_group(launcher, overrides: list[list[str]], nums: list[int], singleton_state: dict) -> list:
    """On the node: the job's sweep points composed as in the sweep, trained alone or as one fused model."""
    import submitit
    from hydra.core.singleton import Singleton
    from hydra.core.utils import setup_globals

    from hydra_plugins.lenet_exp_fused._core import train_configs

    Singleton.set_state(singleton_state)
    setup_globals()
    configs = []
    for job_overrides, num in zip(overrides, nums):
        cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, job_overrides)
        with open_dict(cfg.hydra.job):
            cfg.hydra.job.id, cfg.hydra.job.num = submitit.JobEnvironment().job_id, num
        configs.append(cfg)
    return train_configs(launcher, configs)


def _run_dir(cfg: DictConfig) -> Path:
    """The job's folder, as Hydra's run_job will name it."""
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)  # for `${hydra:...}` in the folder's name
    return Path(str(cfg.hydra.sweep.dir)).absolute() / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))


def _jobs_named(run_dirs: list) -> str:
    return ", ".join(f"job {Path(d).name.split('_', 1)[0]}" for d in run_dirs)


def finished(cfg: DictConfig, sweep_dir: Path):
    """A JobReturn from the job's own folder when it holds this job finished (completed or diverged at the epochs
    asked); None to submit it (also when its folder would refuse it: the job itself says why)."""

    from lenet_exp.run_folder import RunFolder, settings_of
    from lenet_exp.task import job_outcome

    run_dir = _run_dir(cfg)
    task_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    try:
        plan = RunFolder(run_dir).plan(settings_of(task_cfg), int(task_cfg.trainer.epochs))
    except Exception:
        return None
    if not plan.done:
        return None
    return _job_return(cfg, run_dir, job_outcome(plan.done, None, sweep_dir))


def _job_return(cfg: DictConfig, run_dir: Path, value: float):
    """A JobReturn made here for a job Slurm did not return one for (finished before, or ended without one): its
    outcome for the sweeper, as a job run by any launcher returns it."""
    from hydra.core.utils import JobReturn, JobStatus

    return JobReturn(
        overrides=list(cfg.hydra.overrides.task),
        cfg=OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]),
        hydra_cfg=cfg,
        working_dir=str(run_dir),
        task_name=str(cfg.hydra.job.name),
        status=JobStatus.COMPLETED,
        _return_value=value,
    )


def submit(launcher, configs: list[DictConfig], overrides: list[list[str]], groups: list[list[int]]) -> list:
    """One Slurm job array, a task for each group of jobs, each running the launcher's run_group on the jobs'
    overrides, Hydra's own among them (a halving search names each job's folder)."""
    import submitit
    from hydra.core.singleton import Singleton

    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    params = {k: v for k, v in launcher.params.items() if k != "max_models"}
    params["gpus_per_node"] = gpus_of(params, str(launcher.config.device.name)) or None
    executor = submitit.AutoExecutor(
        cluster="slurm", folder=params.pop("submitit_folder"), slurm_max_num_timeout=params.pop("max_num_timeout")
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    nums = [int(cfg.hydra.job.num) for cfg in configs]
    state = Singleton.get_state()
    try:
        jobs = executor.map_array(
            launcher.run_group,
            [[overrides[i] for i in group] for group in groups],
            [[nums[i] for i in group] for group in groups],
            [state] * len(groups),
        )
    except Exception as e:  # sbatch's refusal: submitit's FailedJobError holds its message
        said = next((line for line in str(e).splitlines() if "sbatch: error" in line or "error:" in line), str(e))
        print(
            f"Error: Slurm refused the job array (sbatch: {said.split('error:', 1)[-1].strip()}); change the "
            "hydra.launcher key it names (partition, account, qos, constraint, ...)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    array = jobs[0].job_id.split("_")[0]
    named = [_jobs_named([_run_dir(configs[i]) for i in group]) for group in groups]
    each = "; ".join(f"{n} fused" if len(g) > 1 else n for n, g in zip(named, groups))
    log.info(f"Submitted to Slurm as job array {array}: {each}")
    return jobs


def follow(jobs: list, sweep_dir: Path, came: list[int]) -> None:
    """Wait until every job is done. A Ctrl-C or SIGTERM (in `came`) cancels them after they save their checkpoints;
    jobs pending for a reason no wait clears are cancelled and reported in one line."""
    from lenet_exp.task import refresh_summary, stop

    asked = 0.0
    while True:
        if came:
            cancel(jobs, sweep_dir)
            refresh_summary(sweep_dir)
            stop(came[0], "the Slurm jobs saved their checkpoints and were cancelled; rerun the same command to "
                 "continue them")  # fmt: skip
        if all(job.done() for job in jobs):
            return
        if time.monotonic() - asked > PENDING_CHECK_S:
            asked = time.monotonic()
            if reason := never_starts(jobs):
                cancel(jobs, sweep_dir, wait=False)
                print(f"Error: {reason}", file=sys.stderr)
                raise SystemExit(2)
        time.sleep(POLL_S)


def _arrays(jobs: list) -> list[str]:
    return sorted({job.job_id.split("_")[0] for job in jobs})


def never_starts(jobs: list) -> str:
    """Why the jobs will never start, in one line, when squeue gives a reason no wait clears; '' otherwise."""
    listed = _slurm("squeue", "-h", "-j", ",".join(_arrays(jobs)), "-o", "%T|%r").stdout.split()
    reasons = sorted({r for state, _, r in (line.partition("|") for line in listed) if state == "PENDING"})
    if stuck := [r for r in reasons if r in NEVER_CLEARS]:
        return (
            f"Slurm will not start these jobs (pending: {stuck[0]}): the request exceeds what the partition allows; "
            "change hydra.launcher.cpus_per_task, mem_gb, gpus_per_node, timeout_min or partition"
        )
    return ""


def cancel(jobs: list, sweep_dir: Path, wait: bool = True) -> None:
    """Cancel the jobs: queued ones at once; running ones get SIGTERM, save their checkpoints and stop without
    requeuing (the CANCELLED mark tells them); what is left after CANCEL_WAIT_S is killed."""
    from lenet_exp.cluster import CANCELLED

    (sweep_dir / CANCELLED).touch()
    arrays = _arrays(jobs)
    print(f"Cancelling Slurm job array {', '.join(arrays)} ...", file=sys.stderr)
    _slurm("scancel", "--state=PENDING", *arrays)
    if wait:
        _slurm("scancel", "--signal=TERM", *arrays)
        deadline = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < deadline and _slurm("squeue", "-h", "-j", ",".join(arrays), "-o", "%i").stdout.strip():
            time.sleep(0.5)
    _slurm("scancel", *arrays)
    if wait:
        (sweep_dir / CANCELLED).unlink(missing_ok=True)


def results_of(job, configs: list[DictConfig], sweep_dir: Path) -> list:
    """The JobReturns of a Slurm job's sweep points; a job that ended without them (killed, out of memory, a node
    failure) leaves each of its points `failed` in its metrics.json with Slurm's word for it, in one line, ranked
    last."""

    from lenet_exp.run_folder import RunFolder
    from lenet_exp.task import NO_ACCURACY

    try:
        return job.results()[0]
    except Exception:  # submitit's UncompletedJobError or FailedJobError, with a traceback from the job's log
        returns = []
        for cfg in configs:
            run_dir = _run_dir(cfg)
            reason = f"Slurm job {job.job_id} ended {job.state} without a result (its log: {job.paths.stderr})"
            folder = RunFolder(run_dir)
            if not (run_dir / ".hydra" / "overrides.yaml").exists():  # it died before Hydra wrote its record
                run_dir.mkdir(parents=True, exist_ok=True)
                folder.write_record(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), cfg)
            folder.record_end(reason)
            print(f"Error: job {run_dir.name.split('_', 1)[0]}: {reason}", file=sys.stderr)
            returns.append(_job_return(cfg, run_dir, NO_ACCURACY))
        return returns
