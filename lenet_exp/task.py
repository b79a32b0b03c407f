"""Hydra's task function: one job in the folder Hydra gives it (a run alone, or a sweep job), trained through the one
path every launcher takes (training.train_group), its end turned into the value a sweeper ranks (jobs.job_outcome).
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lenet_exp.cluster import on_slurm, requeue
from lenet_exp.folders import remove_empty
from lenet_exp.jobs import job_of, job_outcome
from lenet_exp.signals import Interrupted, signals_held, stop
from lenet_exp.summary import refresh_summary, write_summary

log = logging.getLogger("lenet_exp")
LAUNCHER_PID = "LENET_EXP_LAUNCHER_PID"  # host:pid of the sweep's own process, seen by jobs that run in other processes


def sweep_process() -> int:
    """The pid of the sweep's own process where it runs on this machine; 0 when it cannot be watched from here."""
    host, _, pid = os.environ.get(LAUNCHER_PID, "").partition(":")
    return int(pid) if pid.isdigit() and host == socket.gethostname() else 0


def task(cfg: DictConfig) -> float:
    """Hydra's task function: train in the run folder and return the final accuracy that chooses (validation where
    held out, else test) for sweepers."""
    hc = HydraConfig.get()
    run_dir, multirun = Path(hc.runtime.output_dir), hc.mode == RunMode.MULTIRUN
    sweep_dir = Path(hc.sweep.dir) if multirun else None
    launcher = sweep_process()
    # joblib, submitit_local: stop when the sweep dies. A Slurm job does not: its sweep cancels it (Ctrl-C), and a job
    # its dead sweep left finishes rather than requeue itself for ever
    in_worker = multirun and bool(launcher) and os.getpid() != launcher and not on_slurm()
    with signals_held() as came:
        from lenet_exp.training import train_group  # torch loads here, once the checks have passed
    job = job_of(cfg, HydraConfig.instance().cfg, run_dir, in_sweep=multirun)
    if came:
        remove_empty(run_dir, up_to=run_dir)  # the folder Hydra made for the job, if still empty
        requeued = requeue(sweep_dir, came[0])  # pre-empted while starting: nothing to save, back in the queue
        note = "before training started; nothing was written" + "; requeued on Slurm" * requeued
        if multirun and not requeued:  # the sweep goes on with its own command (a run alone: the same command)
            note += f"; continue with: {job.continue_with}"
        stop(came[0], note, in_worker)
    interrupted = False
    try:
        return job_outcome(train_group([job], launcher if in_worker else None)[0], job, sweep_dir)
    except Interrupted as e:
        interrupted = True
        if requeue(sweep_dir, e.signum):  # pre-empted on Slurm: back in the queue, to continue from its checkpoint
            e.note = f"checkpoint saved in {run_dir}; the job is requeued on Slurm and continues from it"
            log.warning("Requeued on Slurm: the job continues from its checkpoint when it starts again")
        if in_worker:
            write_summary(sweep_dir)
        stop(e.signum, e.note or f"checkpoint saved in {run_dir}; continue with: {job.continue_with}", in_worker)
    finally:
        if multirun:
            refresh_summary(sweep_dir, in_worker, live=not interrupted)


task.trains_lenet = True  # the fused launcher knows this task: it may train its jobs together as one model
