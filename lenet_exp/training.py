"""Training: one path for a run alone and for a fused group of runs, whatever launcher runs them.

`train_group(jobs)` locks each job's folder, checks everything and loads the data (`prepare`, which writes
nothing), writes each job's record, then trains (loop.fit): evaluating once an epoch, writing TensorBoard events,
metrics.json and checkpoints into each job's folder. A run alone is a group of one (`train(cfg, run_dir)`).
A job continues from `checkpoints/last.pt` when an earlier try left one; any error after training starts
leaves its metrics.json `failed` (or `interrupted`, for a signal).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import fields
from pathlib import Path

import torch
from omegaconf import DictConfig

from lenet_exp.build import build, check_trainable, setup_device
from lenet_exp.checkpoint import CheckpointError
from lenet_exp.console import wants_bar
from lenet_exp.data import DATASETS, DataError, Split, load_splits
from lenet_exp.errors import ConfigError, FolderRefused
from lenet_exp.folders import locked, remove_empty
from lenet_exp.fused import FusedTrainee, fused_groups
from lenet_exp.jobs import Job, Progress, Run
from lenet_exp.loop import Solo, fit
from lenet_exp.resume import Plan, plan
from lenet_exp.run_folder import LAST, RunFolder
from lenet_exp.schedule import scheduler_for
from lenet_exp.schema import Settings, check_config
from lenet_exp.settings import settings_of
from lenet_exp.signals import Interrupted, StopSignals
from lenet_exp.words import one_line


def prepare(cfg: DictConfig, folder: RunFolder) -> Run | Plan:
    """Check the config, the model against the data and the folder's record, then load the data; write nothing.

    Returns the plan of a finished run asked for again (its figures and what it is) instead of a Run. Refusals raise
    ConfigError.
    """
    s = check_config(cfg)
    device = setup_device(s)
    model, optimizer = build(cfg, s, device)
    check_trainable(cfg, model, DATASETS[s.data.name], s.data.name, device)
    how = plan(folder, settings_of(cfg), s.trainer.epochs)
    if how.done:
        return how
    train_set, val_set, test_set = load_data_for(s, device)
    scheduler = scheduler_for(optimizer, s, len(train_set))
    run = Run(cfg, s, device, model, optimizer, scheduler, Progress(), train_set, val_set, test_set, how)
    if how.state:
        restore(run, folder.path / LAST)
    return run


def load_data_for(s: Settings, device: torch.device) -> tuple[Split, Split | None, Split]:
    """The run's train, validation (None without a split) and test examples, on its device (data.load_splits)."""
    d = s.data
    return load_splits(d.name, d.root, d.download, d.val_size, d.limit_train, d.limit_test, device)


def restore(run: Run, path: Path) -> None:
    """Continue where last.pt (at `path`) left the run: weights, optimizer, schedule, random state and progress."""
    state = run.plan.state
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        if run.scheduler:
            run.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        if run.device.type == "cuda" and "cuda_rng" in state:  # (a run moved from the CPU draws on from its seed)
            torch.cuda.set_rng_state(state["cuda_rng"], run.device)
        known = {f.name for f in fields(Progress)}  # an earlier version saved a field since dropped (examples)
        run.p = Progress(**{k: v for k, v in state["progress"].items() if k in known})
    except Exception as e:
        raise CheckpointError(
            f"{path}: cannot resume from this checkpoint, it does not fit this run ({one_line(e, 160)}); "
            "put back the run's own copy to continue, or move the run folder away (or choose a new output folder) "
            "to start over"
        ) from None
    before = state.get("cpu_threads")
    if run.device.type == "cpu" and before and before != torch.get_num_threads():
        run.plan.note += (
            f"; the earlier try trained on {before} CPU threads, this one on {torch.get_num_threads()}: the order "
            "of floating-point sums differs, so the figures will not match an unbroken run digit for digit"
        )


def start(job: Job, stop: StopSignals) -> Run | dict:
    """Prepare a job in its locked folder and write its record; or the figures of a finished run asked for again.

    Refusals write nothing, except a sweep job's config or data error, which is recorded as failed.
    """
    folder = RunFolder(job.run_dir)
    try:
        run = prepare(job.cfg, folder)
    except Interrupted as e:
        e.note = "before training started; nothing was written"
        raise
    except (ConfigError, DataError, CheckpointError) as e:
        if job.in_sweep and not isinstance(e, FolderRefused):
            folder.write_record(job.cfg, job.hydra_cfg)
            folder.record_end(str(e))
        raise
    if isinstance(run, Plan):
        print(run.note)
        return run.done
    with stop.writing():  # a signal now waits: the record is written whole
        folder.write_record(job.cfg, job.hydra_cfg)
    if stop.signum is not None:
        e = Interrupted(stop.signum, saved=False)
        e.note = f"before training started; nothing was trained ({job.run_dir}/.hydra/ records its settings)"
        raise e
    return run


def start_all(jobs: list[Job], stop: StopSignals, held: ExitStack, results: list) -> dict[int, Run]:
    """Lock and start each job (`results` gets its Run, figures or error; `held` keeps the locks of those that train).
    A signal now stops all, saying what was written, and leaves none of the jobs' folders empty."""
    runs: dict[int, Run] = {}
    for i, job in enumerate(jobs):
        try:
            with ExitStack() as lock:  # a job refused alone lets its folder go (removed, if it made it empty)
                lock.enter_context(locked(job.run_dir))
                results[i] = start(job, stop)
                held.push(lock.pop_all())
        except Interrupted as e:
            if runs:  # the jobs started before it wrote their records
                e.note = (
                    "before training started; nothing was trained (the jobs started so far recorded their settings)"
                )
            for other in jobs:  # a launcher made every job's folder: those still empty go
                remove_empty(other.run_dir, up_to=other.run_dir)
            raise
        except Exception as e:
            results[i] = e
        if isinstance(results[i], Run):
            runs[i] = results[i]
    return runs


def train_group(jobs: list[Job], parent_pid: int | None = None, fuse: bool = False) -> list[dict | BaseException]:
    """Train the jobs, each in its own locked folder, with the same checks, records and files as a run alone;
    with `fuse`, jobs that can train as one fused model do (lenet_exp.fused), the rest one after another.

    Returns, per job, its metrics.json figures or the error it ended with; a signal stops all (Interrupted).
    `parent_pid`: the sweep process that launched these jobs in a worker; training stops, as on SIGTERM, if it dies.
    """
    results: list[dict | BaseException | None] = [None] * len(jobs)
    with ExitStack() as held, StopSignals(parent_pid) as stop:
        runs = start_all(jobs, stop, held, results)
        for idxs in fused_groups(runs) if fuse else [[i] for i in runs]:
            group, first = [runs[i] for i in idxs], runs[idxs[0]]
            show_bar = not fuse and wants_bar(first.s.trainer.progress, in_worker=parent_pid is not None)
            try:
                trainee = (
                    Solo(first.model, first.optimizer, first.s, first.scheduler)
                    if len(group) == 1
                    else FusedTrainee(group)
                )
                figures = fit(group, [jobs[i] for i in idxs], trainee, stop, show_bar)
            except Exception as e:
                figures = [e] * len(idxs)
            for i, result in zip(idxs, figures):
                results[i] = result
    return results


def train(cfg: DictConfig, run_dir: Path, hparams: dict | None = None) -> dict:
    """Train the configured model in `run_dir` (continuing what an earlier try left) and return metrics.json's figures:
    a group of one, whose error is raised."""
    result = train_group([Job(cfg, Path(run_dir), hparams or {})])[0]
    if isinstance(result, BaseException):
        raise result
    return result
