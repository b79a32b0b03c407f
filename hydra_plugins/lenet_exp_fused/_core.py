"""The fused launcher's work as plain functions: compose each job, group the jobs that can train as one fused
model, train each group in this process, and hand back one JobReturn per job.

A job's folder ends as a job trained alone leaves it: `.hydra/`, train.log, metrics.json, events, checkpoints.
Jobs of any other task function, and jobs no other can join, run exactly as Hydra's basic launcher runs them.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)


def is_lenet_task(task_function) -> bool:
    """lenet_exp's own task function (the one `python -m lenet_exp` runs): the fused launcher knows how to train it."""
    return getattr(task_function, "trains_lenet", False) is True


def launch(launcher, job_overrides, initial_job_idx: int) -> list[JobReturn]:
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    configs = []
    for i, overrides in enumerate(job_overrides):
        cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.id = cfg.hydra.job.num = initial_job_idx + i
        configs.append(cfg)
    return train_configs(launcher, configs)


def train_configs(launcher, configs: list[DictConfig]) -> list[JobReturn]:
    """Composed jobs trained here, up to `launcher.max_models` of a fusion key as one fused model (the Slurm launcher
    runs a fused group on its node through this too)."""
    if not is_lenet_task(launcher.task_function) or launcher.max_models < 2:
        return [run_alone(launcher, cfg) for cfg in configs]
    groups = fusion_groups(configs, launcher.max_models)
    sizes = ", ".join(str(len(g)) for g in groups)
    log.info(
        f"Fused launcher: {len(configs)} job{'s' * (len(configs) != 1)} in {len(groups)} "
        f"group{'s' * (len(groups) != 1)} of {sizes}"
    )
    returns: list[JobReturn | None] = [None] * len(configs)
    for group in groups:
        if len(group) == 1:
            returns[group[0]] = run_alone(launcher, configs[group[0]])
        else:
            for i, ret in zip(group, run_fused(launcher, [configs[i] for i in group])):
                returns[i] = ret
    return returns


def fusion_groups(configs: list[DictConfig], max_models: int) -> list[list[int]]:
    """Indices of the jobs that train together, at most max_models a group; a job no other can join alone."""
    from lenet_exp.fused import groups_of

    return groups_of([_fusion_key(cfg) for cfg in configs], max_models)


def _fusion_key(cfg: DictConfig):
    from lenet_exp.fused import fusion_key

    try:
        return fusion_key(cfg)
    except Exception:  # a config that cannot be read as lenet_exp's: the task itself says what is wrong
        return None


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


def shown_number(cfg: DictConfig, run_dir: Path) -> int:
    """The job's number as the user sees it: its folder's (`5_activation=relu`: 5), as in summary.md and a halving
    search's lines, whose rungs are launched in batches numbered on from the last; else Hydra's launch index."""
    head = run_dir.name.split("_", 1)[0]
    return int(head) if head.isdigit() else int(cfg.hydra.job.num)


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


def _job(cfg: DictConfig):
    """A composed job's folder, its task config and record, as Hydra's run_job would set them up."""
    from lenet_exp.logger import hparams_of
    from lenet_exp.train import Job

    HydraConfig.instance().set_config(cfg)  # for `${hydra:...}` in the folder's name
    run_dir = Path(os.path.abspath(Path(str(cfg.hydra.sweep.dir)) / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))))
    with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    task_cfg = copy.deepcopy(cfg)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    hparams = hparams_of(task_cfg, list(cfg.hydra.overrides.task), dict(cfg.hydra.runtime.choices))
    hydra_cfg = copy.deepcopy(HydraConfig.instance().cfg)
    return Job(task_cfg, run_dir, hparams, hydra_cfg, job_logger(shown_number(cfg, run_dir), run_dir), in_sweep=True)


def run_fused(launcher, configs: list[DictConfig]) -> list[JobReturn]:
    """Jobs that share a fusion key, trained together; every job's figures, errors and callbacks as if it ran alone."""
    from lenet_exp.cluster import requeue
    from lenet_exp.signals import Interrupted
    from lenet_exp.task import job_outcome, refresh_summary, stop
    from lenet_exp.train import train_group

    jobs = []
    for cfg in configs:
        log.info(f"\t#{cfg.hydra.job.num} : {' '.join(filter_overrides(cfg.hydra.overrides.task))}")
        jobs.append(_job(cfg))
        launcher.hydra_context.callbacks.on_job_start(config=cfg, task_function=launcher.task_function)
    shown = [shown_number(cfg, job.run_dir) for cfg, job in zip(configs, jobs)]
    log.info(f"Training jobs {', '.join(map(str, shown))} as one fused model")
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    try:
        results = train_group(jobs, fuse=True)
    except Interrupted as e:
        if requeue(sweep_dir, e.signum):  # a fused group pre-empted on Slurm: back in the queue, as a job alone
            e.note = "every job of the group saved its checkpoint; the group is requeued on Slurm and continues"
            log.warning("Requeued on Slurm: the group continues from its checkpoints when it starts again")
        refresh_summary(sweep_dir)
        stop(e.signum, e.note or "every job of the group saved its checkpoint; rerun the same command to continue")
    returns = []
    for cfg, job, result, num in zip(configs, jobs, results, shown):
        value = job_outcome(result, job, sweep_dir, label=f"job {num}: ")
        ret = JobReturn(overrides=list(cfg.hydra.overrides.task), cfg=job.cfg, hydra_cfg=job.hydra_cfg,
                        working_dir=os.getcwd(), task_name=str(cfg.hydra.job.name), status=JobStatus.COMPLETED,
                        _return_value=value)  # fmt: skip
        launcher.hydra_context.callbacks.on_job_end(config=cfg, job_return=ret)
        returns.append(ret)
        for handler in job.log.handlers:
            handler.close()
    refresh_summary(sweep_dir, live=True)
    return returns
