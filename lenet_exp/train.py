"""Training: one path for a run alone and for a fused group of runs, and the loop that trains them.

`train_group(jobs)` locks each job's folder, checks everything and loads the data (`prepare`, which writes
nothing), writes each job's record, then trains (`fit`): evaluating once an epoch, writing TensorBoard events,
metrics.json and checkpoints into each job's folder. A run alone is a group of one (`train(cfg, run_dir)`).
A job continues from `checkpoints/last.pt` when an earlier try left one; any error after training starts
leaves its metrics.json `failed` (or `interrupted`, for a signal).

The loop takes its steps through a trainee: `Solo` for one model (the step as the textbook takes it), or a
fused model of G runs (lenet_exp.fused); each run keeps its own curves, checkpoints and metrics.json.
"""

from __future__ import annotations

import functools
import logging
import math
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from lenet_exp import logger as tb
from lenet_exp.build import build, check_trainable, cpu_weights, setup_device
from lenet_exp.config import ConfigError, Settings, check_config
from lenet_exp.console import EpochBar, wants_bar
from lenet_exp.data import DATASETS, DataError, Split, load_dataset, to_input
from lenet_exp.fused import FusedTrainee, fused_groups
from lenet_exp.model import mixed_precision, shape_table
from lenet_exp.run_folder import (
    BEST,
    FINAL,
    LAST,
    CheckpointError,
    FolderRefused,
    Plan,
    RunFolder,
    locked,
    not_learning,
    remove_empty,
    settings_of,
)
from lenet_exp.schedule import scheduler_for
from lenet_exp.signals import Interrupted, StopSignals
from lenet_exp.words import one_line, plural

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint so a resumed run continues exactly."""

    epoch: int = 0  # epochs completed
    step: int = 0  # steps completed in the current epoch
    global_step: int = 0  # steps completed in all
    loss_sum: float = 0.0  # current epoch: summed per-example loss
    correct: int = 0  # current epoch: correct predictions
    seen: int = 0  # current epoch: examples trained on
    epoch_seconds: float = 0.0  # current epoch: time spent in training steps
    train_seconds: float = 0.0  # time spent in training steps, all epochs
    examples: int = 0  # examples trained on, all epochs
    history: dict = field(default_factory=lambda: {"train_loss": [], "train_acc": [], "test_acc": []})
    speeds: list = field(default_factory=list)  # each epoch's own examples/sec

    @property
    def best_test_acc(self) -> float | None:
        return max(self.history["test_acc"], default=None)

    @property
    def chosen_on(self) -> str:
        """The figure that chooses the best epoch: validation accuracy where a split is held out, else test accuracy."""
        return "val_acc" if "val_acc" in self.history else "test_acc"

    @property
    def best_epoch(self) -> int | None:
        """The 1-based epoch with the best accuracy on the choosing split (the first, on a tie)."""
        accs = self.history[self.chosen_on]
        return accs.index(max(accs)) + 1 if accs else None

    def end_epoch(self, test_acc: float, val_acc: float | None = None) -> bool:
        """Close the epoch's figures into the history; True when it is the best epoch so far (on validation, if any)."""
        figures = {"train_loss": self.loss_sum / self.seen, "train_acc": self.correct / self.seen, "test_acc": test_acc}
        if val_acc is not None:
            figures["val_acc"] = val_acc
        for key, value in figures.items():
            self.history.setdefault(key, []).append(value)
        self.speeds.append(self.seen / self.epoch_seconds if self.epoch_seconds else None)
        self.epoch, self.step, self.loss_sum, self.correct, self.seen, self.epoch_seconds = (
            self.epoch + 1,
            0,
            0.0,
            0,
            0,
            0.0,
        )
        return self.best_epoch == self.epoch

    @property
    def steady_speed(self) -> float | None:
        """Examples/sec of the epochs after the first, whose time holds one-time costs (CUDA start, autotuning)."""
        speeds = [v for v in self.speeds[1:] if v]
        return len(speeds) / sum(1 / v for v in speeds) if speeds else None  # equal epochs: total examples / total time


def log_steps(num_batches: int, points: int) -> set[int]:
    """The 1-based steps of an epoch at which train loss/acc are recorded: `points` evenly spaced, the last included."""
    points = min(points, num_batches)  # at most one point a step
    return {math.ceil(num_batches * (k + 1) / points) for k in range(points)}


class Solo:
    """One model and its own torch optimizer: the step a run alone takes, exactly as the textbook's loop does."""

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, s: Settings, scheduler: LambdaLR | None = None
    ) -> None:
        self.model, self.optimizer, self.scheduler, self.s = model, optimizer, scheduler, s
        self.net = torch.compile(model) if s.device.compile else model

    def step(
        self, images: torch.Tensor, labels: torch.Tensor, active: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """images (1, B, 28, 28) uint8, labels (1, B): one step; the summed loss and correct count (on device)."""
        x, y = to_input(images[0], self.s.device.channels_last), labels[0]  # (B, 1, 28, 28), (B,)
        with mixed_precision(self.s.device.amp, x):
            logits = self.net(x)  # (B, 10)
            loss = nn.functional.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.scheduler:
            self.scheduler.step()  # per batch
        return loss.detach() * len(y), (logits.argmax(dim=1) == y).sum()

    def evaluate(self, data: Split) -> list[float]:
        return [evaluate(self.net, data, self.s)]

    def weights(self, g: int) -> dict:
        return cpu_weights(self.model)

    def states(self, g: int) -> tuple[dict, dict]:
        return self.model.state_dict(), self.optimizer.state_dict()


def train_epoch(
    trainee,
    data: Split,
    orders: torch.Tensor,
    progress: list[Progress],
    active: list[bool],
    s: Settings,
    stop,
    bar=None,
) -> Iterator[None]:
    """Train the active models from their step to the end of the epoch, or until a signal comes; yields at each log
    point, once `progress` holds the running figures (the caller may then clear a model's `active` flag).

    `orders` (G, N): each model's own shuffle. Loss and correct counts stay on the device until a log point.
    """
    bs, first = s.data.batch_size, progress[active.index(True)]
    num_batches = math.ceil(len(data) / bs)
    points = log_steps(num_batches, s.trainer.log_points)
    device = data.images.device
    loss_sums = torch.tensor([p.loss_sum for p in progress], device=device)  # (G,), no sync per step
    corrects = torch.tensor([p.correct for p in progress], device=device)
    stepping = list(active)
    mask = torch.tensor(stepping, device=device)  # (G,) which models take steps
    for step in range(first.step, num_batches):
        if stop.signum is not None:
            break
        idx = orders[:, step * bs : (step + 1) * bs]  # (G, B)
        losses, correct = trainee.step(data.images[idx], data.labels[idx], mask)
        loss_sums += losses
        corrects += correct
        for p in (p for p, on in zip(progress, stepping) if on):
            p.step, p.global_step, p.seen = step + 1, p.global_step + 1, p.seen + idx.shape[1]
        if bar:
            bar.advance(idx.shape[1])
        if step + 1 in points:
            _read_back(progress, stepping, loss_sums, corrects)  # the only syncs of the epoch
            yield
            if active != stepping:  # a model diverged or failed alone: it takes no more steps
                stepping = list(active)
                if not any(stepping):
                    return
                mask = torch.tensor(stepping, device=device)
    _read_back(progress, stepping, loss_sums, corrects)


def _read_back(progress: list[Progress], stepping: list[bool], loss_sums: torch.Tensor, corrects: torch.Tensor) -> None:
    for p, on, loss_sum, n_correct in zip(progress, stepping, loss_sums.tolist(), corrects.tolist()):
        if on:
            p.loss_sum, p.correct = loss_sum, int(n_correct)


@torch.inference_mode()
def evaluate(model: nn.Module, data: Split, s: Settings) -> float:
    """Accuracy on a split, in large batches."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=data.labels.device)
    for i in range(0, len(data), s.device.eval_batch_size):
        x = to_input(data.images[i : i + s.device.eval_batch_size], s.device.channels_last)
        with mixed_precision(s.device.amp, x):
            correct += (model(x).argmax(dim=1) == data.labels[i : i + len(x)]).sum()
    model.train()
    return correct.item() / len(data)


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The shuffle of one epoch: a permutation seeded by (seed, epoch), the same on every device."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).to(device)


def metrics_of(p: Progress, status: str, device: torch.device, chance: float | None = None) -> dict:
    """The run's figures as metrics.json holds them; a diverged run has no final figures, only its best."""
    last = {k: (v[-1] if v and status != "diverged" else None) for k, v in p.history.items()}
    speeds = p.speeds or [None]
    return {
        "status": status,
        "epochs_completed": p.epoch,
        "steps_completed": p.global_step,
        "train_loss": last["train_loss"],
        "train_acc": last["train_acc"],
        "test_acc": last["test_acc"],
        "best_test_acc": p.best_test_acc,
        **(
            {"val_acc": last["val_acc"], "best_val_acc": max(p.history["val_acc"], default=None)}
            if "val_acc" in p.history
            else {}
        ),
        "chosen_on": p.chosen_on,  # the figure best.pt, a search and the summary choose on (never test where val is)
        "best_epoch": p.best_epoch,
        "examples_per_sec": p.steady_speed or speeds[0],  # steady; a one-epoch run has only its first epoch's
        "first_epoch_examples_per_sec": speeds[0],
        "examples_per_sec_by_epoch": p.speeds,
        "train_seconds": p.train_seconds,
        "device": str(device),
        "cpu_threads": torch.get_num_threads() if device.type == "cpu" else None,  # the CPU's figures depend on it
        "chance_test_acc": chance,  # test acc of always guessing the most common test class
        "history": p.history,
        **({"error": f"loss became non-finite at step {p.global_step}"} if status == "diverged" else {}),
    }


@dataclass
class Job:
    """One run to train: its config, folder and HParams; a sweep's job also its full Hydra config and its own log."""

    cfg: DictConfig  # the task's config
    run_dir: Path
    hparams: dict
    hydra_cfg: DictConfig | None = None  # the job's full config, hydra node included, for its .hydra record
    log: logging.Logger = log
    in_sweep: bool = False  # a sweep job: its config or data error is recorded failed; no layer table on the console


@dataclass
class Run:
    """Everything a run needs, checked and loaded, before anything is written."""

    cfg: DictConfig
    s: Settings
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR | None  # the learning-rate schedule, stepped per batch (None: a constant rate)
    p: Progress
    train_set: Split
    val_set: Split | None  # held out of the training examples to choose on (data.val_size), or None
    test_set: Split
    plan: Plan

    @property
    def data(self) -> tuple[Split, Split | None, Split]:
        return self.train_set, self.val_set, self.test_set


def prepare(cfg: DictConfig, folder: RunFolder) -> Run | Plan:
    """Check the config, the model against the data and the folder's record, then load the data; write nothing.

    Returns the plan of a finished run asked for again (its figures and what it is) instead of a Run. Refusals raise
    ConfigError.
    """
    s = check_config(cfg)
    device = setup_device(s)
    model, optimizer = build(cfg, s, device)
    check_trainable(cfg, model, DATASETS[s.data.name], s.data.name, device)
    plan = folder.plan(settings_of(cfg), s.trainer.epochs)
    if plan.done:
        return plan
    train_set, val_set, test_set = load_data_for(s, device)
    scheduler = scheduler_for(optimizer, s, len(train_set))
    p = Progress()
    if plan.state:
        try:
            model.load_state_dict(plan.state["model"])
            optimizer.load_state_dict(plan.state["optimizer"])
            if scheduler:
                scheduler.load_state_dict(plan.state["scheduler"])
            torch.set_rng_state(plan.state["rng"])
            p = Progress(**plan.state["progress"])
        except Exception as e:
            raise CheckpointError(
                f"{folder.path / LAST}: cannot resume from this checkpoint, it does not fit this run "
                f"({one_line(e, 160)}); "
                "put back the run's own copy to continue, or move the run folder away (or choose a new output folder) "
                "to start over"
            ) from None
        before = plan.state.get("cpu_threads")
        if device.type == "cpu" and before and before != torch.get_num_threads():
            plan.note += (
                f"; the earlier try trained on {before} CPU threads, this one on {torch.get_num_threads()}: the order "
                "of floating-point sums differs, so the figures will not match an unbroken run digit for digit"
            )
    return Run(cfg, s, device, model, optimizer, scheduler, p, train_set, val_set, test_set, plan)


def load_data_for(s: Settings, device: torch.device) -> tuple[Split, Split | None, Split]:
    """The run's train, validation (None without a split) and test examples, checked, sliced and on its device;
    loaded once per process."""
    d = s.data
    if d.val_size >= DATASETS[d.name].counts["train"]:
        raise ConfigError(
            f"data.val_size={d.val_size} is not allowed: expected fewer than the "
            f"{DATASETS[d.name].counts['train']} training examples of {d.name}"
        )
    return _load_data(d.name, d.root, d.download, d.val_size, d.limit_train, d.limit_test, device)


VAL_SEED = 20_251  # the split's own seed: every run and seed of a sweep holds out the same examples


@functools.lru_cache(maxsize=2)
def _load_data(name, root, download, val_size, limit_train, limit_test, device) -> tuple[Split, Split | None, Split]:
    train_set, test_set = load_dataset(name, root, download)
    val_set = None
    if val_size:
        train_set, val_set = train_set.hold_out(val_size, VAL_SEED)
    return train_set.head(limit_train).to(device), val_set and val_set.to(device), test_set.head(limit_test).to(device)


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


class Member:
    """One run in the training loop, model `g` of the trainee, and the files it writes: curves, console lines,
    checkpoints, metrics.json."""

    def __init__(self, run: Run, job: Job, g: int, trainee, stop: StopSignals) -> None:
        self.run, self.job, self.g, self.trainee, self.stop = run, job, g, trainee, stop
        self.p, self.folder, self.log = run.p, RunFolder(job.run_dir), job.log
        self.logger: tb.RunLogger | None = None
        self.chance: float | None = None
        self.active = True
        self.done: dict | None = None  # metrics.json's figures once it has finished
        self.error: Exception | None = None  # why it failed
        self.started = time.perf_counter()

    def record(self, status: str) -> dict:
        return metrics_of(self.p, status, self.run.device, self.chance)

    def open(self) -> None:
        """Start the try: curves (purging an earlier try's past its checkpoint), the story, metrics.json `running`."""
        p, run, log = self.p, self.run, self.log
        purge = (
            p.global_step + 1 if p.global_step else (0 if any(self.folder.path.glob("events.out.tfevents.*")) else None)
        )
        self.logger = tb.RunLogger(self.folder.path, resume_step=purge)
        if run.plan.note:
            log.info("%s", run.plan.note[0].upper() + run.plan.note[1:])
        if p.global_step == 0:
            lines = shape_table(run.model, run.model.input_shape)
            if not self.job.in_sweep:
                log.info("Layer output shapes:\n%s", "\n".join(lines))
            self.logger.text("model/shapes", lines)
        self.logger.session_start(self.job.hparams)
        log.info("Data: %s (files checked)", "; ".join(d.source for d in run.data if d is not None and d.source))
        threads, epochs = plural(torch.get_num_threads(), "CPU thread"), plural(run.s.trainer.epochs, "epoch")
        examples = " / ".join(f"{len(d)} {k}" for k, d in zip(("train", "val", "test"), run.data) if d is not None)
        examples += " examples"
        log.info("Training on %s (%s): %s, %s, into %s", run.device, threads, examples, epochs, self.folder.path)
        self.chance = run.test_set.labels.bincount().max().item() / len(run.test_set)
        self.folder.write_metrics(self.record("running"))  # a running sweep's summary shows it

    def log_point(self) -> None:
        p = self.p
        lr = self.run.optimizer.param_groups[0]["lr"]  # the rate of the next step, on the schedule
        self.logger.scalars(
            p.global_step, {tb.TRAIN_LOSS: p.loss_sum / p.seen, tb.TRAIN_ACC: p.correct / p.seen, tb.LR: lr}
        )

    def checkpoint(self) -> None:
        model, optimizer = self.trainee.states(self.g)
        progress, settings, threads = asdict(self.p), settings_of(self.run.cfg), torch.get_num_threads()
        state = {"model": model, "optimizer": optimizer, "rng": torch.get_rng_state(), "progress": progress}
        if self.run.scheduler:
            state["scheduler"] = self.run.scheduler.state_dict()
        self.folder.save(LAST, {**state, "settings": settings, "cpu_threads": threads})

    def end_epoch(self, test_acc: float, val_acc: float | None = None) -> None:
        """The epoch's figures: history, curves, the log line; then best weights, the resume state and metrics.json."""
        p = self.p
        is_best = p.end_epoch(test_acc, val_acc)
        speed = p.speeds[-1]
        curves = {tb.TEST_ACC: test_acc, tb.BEST_TEST_ACC: p.best_test_acc, tb.SPEED: speed}
        if val_acc is not None:
            curves.update({tb.VAL_ACC: val_acc, tb.BEST_VAL_ACC: max(p.history["val_acc"])})
        self.logger.scalars(p.global_step, curves)
        val = "" if val_acc is None else f"  val acc {val_acc:.3f}"
        line = "epoch %d/%d  loss %.3f  train acc %.3f%s  test acc %.3f  %.0f examples/sec"
        loss, train_acc = p.history["train_loss"][-1], p.history["train_acc"][-1]
        self.log.info(line, p.epoch, self.run.s.trainer.epochs, loss, train_acc, val, test_acc, speed)
        with self.stop.writing():
            self.logger.flush()  # the curves on disk reach as far as the checkpoint
            if is_best:
                self.folder.save(BEST, self.trainee.weights(self.g))
            self.checkpoint()
            self.folder.write_metrics(self.record("running"))

    def interrupt(self, signum: int) -> None:
        """Stopped by a signal: where it stood, in last.pt, and why, in metrics.json."""
        why = f"stopped by {signal.Signals(signum).name} in epoch {self.p.epoch + 1} at step {self.p.step}"
        self.log.warning("%s; rerun to continue", why[0].upper() + why[1:])
        self.logger.session_end("interrupted", quietly=True)
        with self.stop.writing():
            self.checkpoint()
            self.folder.write_metrics({**self.record("interrupted"), "error": f"{why}; rerun to continue"})

    def finish(self, status: str) -> None:
        """Completed (final weights) or diverged (none: its last good state is in last.pt): the last files and line."""
        metrics = self.record(status)
        with self.stop.writing():
            if status == "completed":
                self.folder.save(FINAL, self.trainee.weights(self.g))
            self.logger.session_end(status)
            self.logger.close()
            self.folder.write_metrics(metrics)
        self.log.info("%s", closing_line(metrics, self.folder.path, time.perf_counter() - self.started))
        self.done, self.active = metrics, False

    def fail(self, e: BaseException) -> None:
        """Any end but a clean one: `interrupted` for a signal that came before its state was saved, else `failed`."""
        self.active = False
        if isinstance(e, Interrupted):
            if not e.saved:
                e.note = f"stopped before saving where it stood; {self.folder.path} continues from its last checkpoint"
                e.note += " when rerun"
                self.folder.record_end(f"stopped by {e} before saving where it stood", "interrupted")
            return
        self.error, reason = e, failure_reason(e)
        self.log.error("run failed: %s", reason)
        if self.logger:
            self.logger.session_end("failed", quietly=True)
        self.folder.record_end(reason)

    def attempt(self, step, *args) -> None:
        """One of the member's own steps, if it is still training; if its files fail (a full or unwritable folder), it
        stops alone, failed."""
        if self.active:
            try:
                step(*args)
            except Exception as e:
                self.fail(e)


def fit(runs: list[Run], jobs: list[Job], trainee, stop: StopSignals, show_bar: bool = False) -> list[dict | Exception]:
    """The training loop, for one run or a fused group: epochs of train_epoch and evaluate; returns each run's figures,
    or the error of one whose own files failed. Any other end leaves each unfinished run's record saying so."""
    members = [Member(run, job, g, trainee, stop) for g, (run, job) in enumerate(zip(runs, jobs))]
    s, device, train_set, val_set, test_set = runs[0].s, runs[0].device, *runs[0].data
    bar = EpochBar(show_bar, len(train_set))
    try:
        for m in members:
            m.attempt(m.open)
        active = [m.active for m in members]
        stop.training = True
        while any(active) and (p := members[active.index(True)].p).epoch < s.trainer.epochs:
            bar.start(p.epoch + 1, s.trainer.epochs, p.seen)
            seen_before, began = p.seen, time.perf_counter()
            orders = torch.stack([epoch_order(len(train_set), r.s.seed, p.epoch, device) for r in runs])  # (G, N)
            for _ in train_epoch(trainee, train_set, orders, [r.p for r in runs], active, s, stop, bar):
                bar.figures(p.loss_sum / p.seen, p.correct / p.seen)
                for g, m in enumerate(members):
                    m.attempt(m.log_point)
                    if not math.isfinite(m.p.loss_sum):
                        m.attempt(m.finish, "diverged")
                    active[g] = m.active
            _count_time(members, time.perf_counter() - began, p.seen - seen_before)  # train_epoch ends synced
            if stop.signum is not None and p.seen < len(train_set):  # a signal in the epoch: its steps stop there
                bar.close()
                for m in members:
                    m.attempt(m.interrupt, stop.signum)
                raise Interrupted(stop.signum)
            if any(active):
                accs = trainee.evaluate(test_set)
                vals = trainee.evaluate(val_set) if val_set is not None else [None] * len(members)
                for g, m in enumerate(members):
                    m.attempt(m.end_epoch, accs[g], vals[g])
                    active[g] = m.active
        bar.close()
        for m in members:
            m.attempt(m.finish, "completed")
        return [m.done if m.done is not None else m.error for m in members]
    except BaseException as e:
        for m in (m for m in members if m.done is None and m.error is None):
            m.fail(e)
        raise
    finally:
        stop.training = False
        bar.close()
        for m in (m for m in members if m.logger):
            m.logger.close(quietly=True)  # after an error: the error to report is the first one


def _count_time(members: list[Member], seconds: float, examples: int) -> None:
    for p in (m.p for m in members if m.active):
        p.train_seconds, p.epoch_seconds, p.examples = (
            p.train_seconds + seconds,
            p.epoch_seconds + seconds,
            p.examples + examples,
        )


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


def train(cfg: DictConfig, run_dir: Path, hparams: dict | None = None) -> dict:
    """Train the configured model in `run_dir` (continuing what an earlier try left) and return metrics.json's figures:
    a group of one, whose error is raised."""
    result = train_group([Job(cfg, Path(run_dir), hparams or {})])[0]
    if isinstance(result, BaseException):
        raise result
    return result


def failure_reason(e: BaseException) -> str:
    """One line: the error's kind and message; for a file error, the file and the system's words."""
    if isinstance(e, OSError) and e.filename:
        return f"{type(e).__name__}: {one_line(e)}"
    return one_line(f"{type(e).__name__}: {e}", 300)


def closing_line(m: dict, run_dir: Path, seconds: float) -> str:
    """The run's last console line: how it ended, its final accuracies, the best epoch on the choosing split (with
    its test accuracy beside a validation choice), and where its files are."""
    on, epoch = m.get("chosen_on", "test_acc"), m.get("best_epoch")
    split = on.removesuffix("_acc")
    best = "" if epoch is None else f"best {split} acc {m['history'][on][epoch - 1]:.4f} (epoch {epoch}"
    best += "" if epoch is None or on == "test_acc" else f", test acc {m['history']['test_acc'][epoch - 1]:.4f}"
    best += "" if epoch is None else ")"
    if m["status"] == "diverged":
        head = f"Diverged: {m['error']}; " + (best or "no accuracy")
    else:
        val = f"val acc {m['val_acc']:.4f}, " if m.get("val_acc") is not None else ""
        head = f"Done: {plural(m['epochs_completed'], 'epoch')}, {val}test acc {m['test_acc']:.4f}, {best}"
    if not_learning(m):
        head += (
            f"; at chance ({m['chance_test_acc']:.3f}): not learning (yet: more epochs or examples, or other settings)"
        )
    return f"{head}; {seconds:.1f} s; files in {run_dir}"
