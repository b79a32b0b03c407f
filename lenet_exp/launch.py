"""What lenet_exp's launchers share, and all of the package they may use (hydra_plugins imports no other module of it):
each job composed as Hydra's sweep composes it, its folder and JobReturn, a job run as Hydra's basic launcher runs it,
jobs trained together as one fused model, a finished job's return read from its folder, and a job that ended without
a result recorded in one line.

A job's folder ends as a job trained alone leaves it: `.hydra/`, train.log, metrics.json, events, checkpoints.
Jobs of any other task function, and jobs no other can join, run exactly as Hydra's basic launcher runs them.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from lenet_exp.cluster import (  # noqa: F401  (the Slurm launcher's, from here)
    CANCELLED,
    gpus_of,
    note_array,
    queued_tasks,
    recorded,
    requeue,
    slurm,
    still_queued,
)
from lenet_exp.fused import fusion_key, groups_of, why_alone
from lenet_exp.jobs import NO_ACCURACY, Job, job_of, job_outcome
from lenet_exp.resume import plan
from lenet_exp.run_folder import RECORD, RunFolder
from lenet_exp.settings import settings_of, task_config
from lenet_exp.signals import Interrupted, signals_held, stop  # noqa: F401  (signals_held: the Slurm launcher's)
from lenet_exp.summary import refresh_summary, sweep_end  # noqa: F401  (sweep_end: the parallel launcher's)
from lenet_exp.sweep_record import continue_command, job_number  # noqa: F401  (continue_command: Slurm's too)
from lenet_exp.training import train_group
from lenet_exp.words import plural

log = logging.getLogger(__name__)


def is_lenet_task(task_function) -> bool:
    """lenet_exp's own task function (the one `python -m lenet_exp` runs): the fused launcher knows how to train it."""
    return getattr(task_function, "trains_lenet", False) is True


def start_batch(launcher) -> Path:
    """What a launcher does before its batch, as Hydra's own do: globals, logging, the sweep folder."""
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    return sweep_dir


def job_configs(launcher, job_overrides, nums, ids=None) -> list[DictConfig]:
    """Each job's config, composed as Hydra's sweep composes it, with its job number from `nums` and its id from `ids`
    (the number where none is given)."""
    configs = []
    for i, (overrides, num) in enumerate(zip(job_overrides, nums)):
        cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
        with open_dict(cfg.hydra.job):
            cfg.hydra.job.num, cfg.hydra.job.id = num, num if ids is None else ids[i]
        configs.append(cfg)
    return configs


def job_dir(cfg: DictConfig) -> Path:
    """The job's folder, as Hydra's run_job names it (`${hydra:...}` in its name resolved against this job)."""
    HydraConfig.instance().set_config(cfg)
    return Path(os.path.abspath(Path(str(cfg.hydra.sweep.dir)) / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))))


def shown_number(cfg: DictConfig) -> int:
    """The job's number as the user sees it: its folder's (`5_activation=relu`: 5), as in summary.md and a halving
    search's lines, whose rungs are launched in batches numbered on from the last; else Hydra's launch index."""
    number = job_number(job_dir(cfg).name)
    return int(cfg.hydra.job.num) if number is None else number


def jobs_named(configs: list[DictConfig]) -> str:
    """`job 3, job 5`: the jobs as the summary numbers them."""
    return ", ".join(f"job {shown_number(cfg)}" for cfg in configs)


def job_return(cfg: DictConfig, value: float) -> JobReturn:
    """A job's JobReturn made by a launcher of ours: its outcome for the sweeper, as Hydra's run_job returns one."""
    return JobReturn(
        overrides=list(cfg.hydra.overrides.task),
        cfg=task_config(cfg),
        hydra_cfg=cfg,
        working_dir=os.getcwd(),
        task_name=str(cfg.hydra.job.name),
        status=JobStatus.COMPLETED,
        _return_value=value,
    )


def run_alone(launcher, cfg: DictConfig) -> JobReturn:
    """One job as Hydra's basic launcher runs it: its own run_job, in this process."""
    log.info(f"\t#{cfg.hydra.job.num} : {' '.join(filter_overrides(cfg.hydra.overrides.task))}")
    ret = run_job(
        hydra_context=launcher.hydra_context,
        task_function=launcher.task_function,
        config=cfg,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    return ret


def launch_here(launcher, job_overrides, initial_job_idx: int) -> list[JobReturn]:
    """The fused launcher's batch: every job composed, then trained in this process, fused where jobs can be."""
    start_batch(launcher)
    nums = range(initial_job_idx, initial_job_idx + len(job_overrides))
    return train_configs(launcher, job_configs(launcher, job_overrides, nums))


def fusion_groups(configs: list[DictConfig], max_models: int) -> list[list[int]]:
    """Indices of the jobs that train together, at most max_models a group; a job no other can join alone (also one
    that cannot be read as lenet_exp's: the task itself then says what is wrong). Why a knob keeps jobs apart that
    would otherwise fuse (dropout) is said once, in one line."""
    keys, reasons = [], set()
    for cfg in configs:
        try:
            keys.append(fusion_key(cfg))
            reasons.add(why_alone(cfg))
        except Exception:
            keys.append(None)
    for reason in sorted(r for r in reasons if r):
        log.warning(f"Fused launcher: {reason}")
    return groups_of(keys, max_models)


def train_configs(launcher, configs: list[DictConfig]) -> list[JobReturn]:
    """Composed jobs trained here, up to `launcher.max_models` of a fusion key as one fused model (the Slurm launcher
    runs a fused group on its node through this too)."""
    if not is_lenet_task(launcher.task_function) or launcher.max_models < 2:
        return [run_alone(launcher, cfg) for cfg in configs]
    groups = fusion_groups(configs, launcher.max_models)
    sizes = ", ".join(str(len(g)) for g in groups)
    log.info(f"Fused launcher: {plural(len(configs), 'job')} in {plural(len(groups), 'group')} of {sizes}")
    returns: list[JobReturn | None] = [None] * len(configs)
    for group in groups:
        if len(group) == 1:
            returns[group[0]] = run_alone(launcher, configs[group[0]])
        else:
            for i, ret in zip(group, run_fused(launcher, [configs[i] for i in group])):
                returns[i] = ret
    return returns


def job_logger(num: int, run_dir: Path) -> logging.Logger:
    """A fused job's log: its own train.log (the format of a run alone), and the console with its job number."""
    logger = logging.getLogger(f"lenet_exp.fused.job{num}")
    for handler in logger.handlers:
        handler.close()
    logger.handlers, logger.propagate = [], False
    logger.setLevel(logging.INFO)
    file = logging.FileHandler(run_dir / "train.log", delay=True)
    file.setFormatter(logging.Formatter("[%(asctime)s][lenet_exp.train][%(levelname)s] - %(message)s"))
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter(f"[%(asctime)s][lenet_exp][job {num}] - %(message)s"))
    logger.addHandler(file)
    logger.addHandler(console)
    return logger


def fused_job(cfg: DictConfig) -> Job:
    """A composed job of a fused group: its folder, task config and record, as Hydra's run_job would set them up."""
    run_dir = job_dir(cfg)
    with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    return job_of(task_config(cfg), cfg, run_dir, in_sweep=True, job_log=job_logger(shown_number(cfg), run_dir))


def run_fused(launcher, configs: list[DictConfig]) -> list[JobReturn]:
    """Jobs that share a fusion key, trained together; every job's figures, errors and callbacks as if it ran alone."""
    jobs = []
    for cfg in configs:
        log.info(f"\t#{cfg.hydra.job.num} : {' '.join(filter_overrides(cfg.hydra.overrides.task))}")
        jobs.append(fused_job(cfg))
        launcher.hydra_context.callbacks.on_job_start(config=cfg, task_function=launcher.task_function)
    shown = [shown_number(cfg) for cfg in configs]
    log.info(f"Training jobs {', '.join(map(str, shown))} as one fused model")
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    try:
        results = train_group(jobs, fuse=True)
    except Interrupted as e:
        if requeue(sweep_dir, e.signum):  # a fused group pre-empted on Slurm: back in the queue, as a job alone
            e.note = "every job of the group saved its checkpoint; the group is requeued on Slurm and continues"
            log.warning("Requeued on Slurm: the group continues from its checkpoints when it starts again")
        refresh_summary(sweep_dir)
        how = continue_command(sweep_dir, sweep=True)
        stop(e.signum, e.note or f"every job of the group saved its checkpoint; continue with: {how}")
    returns = []
    for cfg, job, result, num in zip(configs, jobs, results, shown):
        ret = job_return(cfg, job_outcome(result, job, sweep_dir, label=f"job {num}: "))
        launcher.hydra_context.callbacks.on_job_end(config=cfg, job_return=ret)
        returns.append(ret)
        for handler in job.log.handlers:
            handler.close()
    refresh_summary(sweep_dir, live=True)
    return returns


def finished_return(cfg: DictConfig, sweep_dir: Path) -> JobReturn | None:
    """A JobReturn from the job's own folder when it holds this job finished (completed or diverged at the epochs
    asked); None to launch it (also when its folder would refuse it: the job itself says why)."""
    task = task_config(cfg)
    try:
        how = plan(RunFolder(job_dir(cfg)), settings_of(task), int(task.trainer.epochs))
    except Exception:
        return None
    return job_return(cfg, job_outcome(how.done, None, sweep_dir)) if how.done else None


def ended_without_result(cfg: DictConfig, reason: str) -> JobReturn:
    """A job whose process ended without a result: one that stopped itself after saving its checkpoint (a plain
    `scancel` signals it first) stays `interrupted`, to continue; any other (killed, out of memory, a node failure) is
    `failed` in its own metrics.json with `reason`, in one line, ranked last."""
    run_dir = job_dir(cfg)
    folder = RunFolder(run_dir)
    if folder.recorded_status() == "interrupted":
        print(
            f"Job {shown_number(cfg)}: {reason}; it saved its checkpoint first: interrupted, to continue",
            file=sys.stderr,
        )
        return job_return(cfg, NO_ACCURACY)
    if not (run_dir / RECORD / "overrides.yaml").exists():  # it died before its record was written
        run_dir.mkdir(parents=True, exist_ok=True)
        folder.write_record(task_config(cfg), cfg)
    folder.record_end(reason)
    print(f"Error: job {shown_number(cfg)}: {reason}", file=sys.stderr)
    return job_return(cfg, NO_ACCURACY)


def stop_before_training(sweep_dir: Path, came: list[int] | None = None) -> None:
    """On a Slurm node, as its job starts: a SIGTERM before the task takes the signals over (submitit's own handler
    would ignore it, and the job train on) requeues the job if it was pre-empted, and stops it in one line; so does one
    that `came` while the job loaded."""

    def stopped(signum: int, frame) -> None:
        requeued = requeue(sweep_dir, signum)
        stop(signum, "before training started; nothing was written" + "; requeued on Slurm" * requeued)

    signal.signal(signal.SIGTERM, stopped)
    if came:
        stopped(came[0], None)
