"""Hydra's task function and what a job's end means: the one outcome rule for every launcher.

`task(cfg)` trains one job in the folder Hydra gives it (a run alone, or a sweep job); `job_outcome` turns a
job's figures or error into the value a sweeper ranks, the one-line error, the exit status of a run alone and
the sweep's note of a refused folder. The fused launcher reports its jobs through the same `job_outcome`.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import sys
import threading
from contextlib import contextmanager, suppress
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lenet_exp.cluster import on_slurm, requeue
from lenet_exp.config import ConfigError
from lenet_exp.data import DataError
from lenet_exp.logger import hparams_of
from lenet_exp.run_folder import CheckpointError, DamagedRecord, FolderRefused, RunFolder, chosen_on, remove_empty
from lenet_exp.summarize import write_summary
from lenet_exp.sweep import note_refusal
from lenet_exp.words import one_line

log = logging.getLogger("lenet_exp")
USER_ERRORS = (ConfigError, DataError, CheckpointError)
NO_ACCURACY = 0.0  # what a job without a final test accuracy (failed, diverged, refused) returns: sweepers rank it last
LAUNCHER_PID = "LENET_EXP_LAUNCHER_PID"  # host:pid of the sweep's own process, seen by jobs that run in other processes


def environment_errors() -> tuple:
    """Errors of the machine, not of the code: a full or read-only disk, no permission, no memory."""
    import torch

    return (OSError, MemoryError, torch.OutOfMemoryError)


def out_of_memory(error: BaseException) -> bool:
    """torch's CPU allocator reports a failed allocation as a RuntimeError, not a MemoryError."""
    return isinstance(error, RuntimeError) and ("can't allocate memory" in str(error) or "out of memory" in str(error))


@contextmanager
def signals_held():
    """Hold SIGINT/SIGTERM for a block that must not be cut short: torch's import (it swallows a KeyboardInterrupt and
    carries on half-imported) or a summary being written. Yields the list of signals that came."""
    came: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield came
        return
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, frame: came.append(signum)) for sig in held}
    try:
        yield came
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop(signum: int, note: str, in_worker: bool = False) -> None:
    """End the process for a signal: one line, exit 128+signal (a worker process ends at once, as its sweep has)."""
    print(f"Interrupted by {signal.Signals(signum).name}: {note}.", file=sys.stderr)
    if in_worker:  # an idle worker would outlive the stopped sweep
        logging.shutdown()
        os._exit(128 + signum)
    raise SystemExit(128 + signum)


def refresh_summary(sweep_dir: Path, in_worker: bool = False, live: bool = False) -> None:
    """Rewrite the sweep's summary with signals held (`live`: at a job's end, the plot only now and then); a full disk
    leaves the jobs' own records to stand."""
    with signals_held() as came:
        try:
            write_summary(sweep_dir, live)
        except OSError as e:
            print(f"Error: summary not written: {one_line(e)}", file=sys.stderr)
    if came:
        stop(came[0], f"the summary in {sweep_dir} is up to date; rerun the same command to continue", in_worker)


def job_outcome(result: dict | BaseException, job, sweep_dir: Path | None, label: str = "") -> float:
    """What a job's end means: its final accuracy on the choosing split for the sweeper (NO_ACCURACY without one); an
    error in one line, which ends a run alone (exit 2 for a user's mistake, 1 for the machine's; a bug keeps its
    traceback); in a sweep, a folder's refusal, or an end the job's folder could not record, noted in the sweep folder
    for the summary."""
    if isinstance(result, dict):
        value = result.get(chosen_on(result))  # validation accuracy where held out: the test set never chooses
        return NO_ACCURACY if value is None else value
    user = isinstance(result, USER_ERRORS)
    if user or isinstance(result, environment_errors()) or out_of_memory(result):
        print(f"Error: {label}{one_line(result)}", file=sys.stderr)
        if sweep_dir is None:
            raise SystemExit(2 if user else 1) from None
    elif sweep_dir is None:
        raise result  # a bug: the traceback helps; metrics.json already says failed
    else:
        log.error("%sjob failed", label, exc_info=result)
    if sweep_dir is not None and (isinstance(result, FolderRefused) or not recorded_failed(job.run_dir)):
        with suppress(OSError):  # a sweep folder that takes no writes either: the error line above is all there is
            note_refusal(sweep_dir, job.run_dir, one_line(result), list(job.hydra_cfg.hydra.overrides.task))
    return NO_ACCURACY


def recorded_failed(run_dir: Path) -> bool:
    """Whether the job's metrics.json says it failed; when its folder took no more writes (read-only, say), it still
    holds an earlier state, and only the sweep folder can record the end."""
    try:
        return (RunFolder(run_dir).metrics() or {}).get("status") == "failed"
    except DamagedRecord:
        return False


@contextmanager
def worker_deaths_in_one_line(args: list[str]):
    """A worker process of a parallel sweep killed (SIGTERM, the out-of-memory killer) breaks the launcher's pool, whose
    error Hydra would print as a traceback: end instead in one line, with the summary brought up to date (a job its
    dead worker left `running` shows as interrupted). `args`: the command line, which pins hydra.sweep.dir."""
    from concurrent.futures import BrokenExecutor

    from hydra._internal import utils

    report = utils.run_and_report

    def guarded(func):
        def run():
            try:
                return func()
            except BrokenExecutor as e:
                codes = re.search(r"exit codes of the workers are (\S+)", str(e))
                why = f" ({codes.group(1).strip('{}')})" if codes else ""  # joblib writes a set: {SIGKILL(-9)}
                raise SystemExit(
                    f"Error: a worker process of the sweep ended unexpectedly{why}; {sweep_end(args)}"
                ) from None

        return report(run)

    utils.run_and_report = guarded
    os.environ.setdefault("PYTHONWARNINGS", "ignore:resource_tracker:UserWarning")  # a killed worker's semaphores
    try:
        yield
    finally:
        utils.run_and_report = report


def sweep_end(args: list[str]) -> str:
    """Where a sweep stopped short stands: its summary refreshed, and how to go on."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    pinned = [a for a in args if a.startswith("hydra.sweep.dir=")]
    if not pinned:
        return "rerun the same command to continue"
    sweep_dir = Path(str(OverridesParser.create().parse_override(pinned[-1]).value()))
    with suppress(OSError):
        write_summary(sweep_dir)
    return (
        f"the jobs it started stay at their last checkpoints (see {sweep_dir / 'summary.md'}); rerun the same "
        "command to continue"
    )


def task(cfg: DictConfig) -> float:
    """Hydra's task function: train in the run folder and return the final accuracy that chooses (validation where
    held out, else test) for sweepers."""
    hc = HydraConfig.get()
    run_dir, multirun = Path(hc.runtime.output_dir), hc.mode == RunMode.MULTIRUN
    sweep_dir = Path(hc.sweep.dir) if multirun else None
    host, _, pid = os.environ.get(LAUNCHER_PID, "").partition(":")
    launcher = int(pid) if pid.isdigit() and host == socket.gethostname() else 0
    # joblib, submitit_local: stop when the sweep dies. A Slurm job does not: its sweep cancels it (Ctrl-C), and a job
    # its dead sweep left finishes rather than requeue itself for ever
    in_worker = multirun and bool(launcher) and os.getpid() != launcher and not on_slurm()
    with signals_held() as came:
        from lenet_exp.train import Interrupted, Job, train_group  # torch loads here, once the checks have passed
    if came:
        remove_empty(run_dir, up_to=run_dir)  # the folder Hydra made for the job, if still empty
        requeued = requeue(sweep_dir, came[0])  # pre-empted while starting: nothing to save, back in the queue
        stop(came[0], "before training started; nothing was written" + "; requeued on Slurm" * requeued, in_worker)
    hparams = hparams_of(cfg, list(hc.overrides.task), dict(hc.runtime.choices))
    job = Job(cfg, run_dir, hparams, HydraConfig.instance().cfg, in_sweep=multirun)
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
        stop(e.signum, e.note or f"checkpoint saved in {run_dir}; rerun the same command to continue", in_worker)
    finally:
        if multirun:
            refresh_summary(sweep_dir, in_worker, live=not interrupted)


task.trains_lenet = True  # the fused launcher knows this task: it may train its jobs together as one model
