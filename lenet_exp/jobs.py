"""A job: what to train and where (a run alone, or one job of a sweep, with its HParams), the run prepared from it,
where its training stands (Progress), and what its end means (the one outcome rule for every launcher: the value a
sweeper ranks, the one-line error, the exit status of a run alone, the sweep's note of a refused folder)."""

from __future__ import annotations

import logging
import sys
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from lenet_exp.checkpoint import CheckpointError
from lenet_exp.data import DataError, Split
from lenet_exp.errors import ConfigError, FolderRefused
from lenet_exp.metrics import chosen_on
from lenet_exp.overrides import is_hydra_override, key_of
from lenet_exp.resume import Plan
from lenet_exp.run_folder import RunFolder
from lenet_exp.schema import Settings
from lenet_exp.sweep_record import continue_command, note_refusal, swept_keys
from lenet_exp.words import one_line

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.optim.lr_scheduler import LambdaLR

log = logging.getLogger("lenet_exp.train")
USER_ERRORS = (ConfigError, DataError, CheckpointError)
NO_ACCURACY = 0.0  # what a job without a final accuracy (failed, diverged, refused) returns: sweepers rank it last
# how a run is shown or fed, not what it learns
NOT_HPARAMS = ("trainer.progress", "data.root", "data.download", "hparams_search")
SEARCH_KEYS = {"halving": ("trainer.epochs", "scheduler.epochs")}  # set by a search for its own ends, not swept


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
    history: dict = field(default_factory=lambda: {"train_loss": [], "train_acc": [], "test_acc": []})
    speeds: list = field(default_factory=list)  # each epoch's own examples/sec

    @property
    def best_test_acc(self) -> float | None:
        return max(self.history["test_acc"], default=None)

    @property
    def best_epoch(self) -> int | None:
        """The 1-based epoch with the best accuracy on the choosing split (the first, on a tie)."""
        accs = self.history[chosen_on(self.history)]
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


@dataclass
class Job:
    """One run to train: its config, folder and HParams; a sweep's job also its full Hydra config and its own log."""

    cfg: DictConfig  # the task's config
    run_dir: Path
    hparams: dict
    hydra_cfg: DictConfig | None = None  # the job's full config, hydra node included, for its .hydra record
    log: logging.Logger = log
    in_sweep: bool = False  # a sweep job: its config or data error is recorded failed; no layer table on the console

    @property
    def continue_with(self) -> str:
        """The command that continues this job where it stops: its sweep's own command, or resume= of its run."""
        if self.in_sweep and self.hydra_cfg is not None:
            return continue_command(Path(str(self.hydra_cfg.hydra.sweep.dir)), sweep=True)
        return continue_command(self.run_dir, sweep=False)


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


def hparams_of(cfg: DictConfig, overrides: list[str], choices: dict, swept: list[str]) -> dict:
    """The run's key settings for TensorBoard's HParams dashboard: group choices, main values, every override; of a
    sweep's job, only what the sweep varies, as its table shows five hparams, then the metrics (the rest of a job's
    settings are in its .hydra and the summary). Never what a search sets for its own ends (SEARCH_KEYS)."""
    ignored = (*NOT_HPARAMS, *SEARCH_KEYS.get(choices.get("hparams_search"), ()))
    keys = ["optimizer.lr", "data.batch_size", "trainer.epochs", "seed"]
    keys += [key_of(o) for o in overrides if "=" in o and not is_hydra_override(o)]
    settings = {g: choices[g] for g in ("model", "activation", "optimizer", "data", "device") if g in choices}
    # (a group's config is its choice's name: `scheduler=cosine` shows cosine, not its keys)
    for key in (k for k in keys if k not in ignored):
        value = choices.get(key) or OmegaConf.select(cfg, key, default=None)  # a group (scheduler): its choice
        if key not in settings and value is not None:
            settings[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    shown = [k for k in swept if k in settings]
    return {k: settings[k] for k in shown} if shown else settings


def job_of(cfg: DictConfig, hydra_cfg: DictConfig, run_dir: Path, in_sweep: bool, job_log: logging.Logger = log) -> Job:
    """The job Hydra (or a launcher of ours) hands the task: its task config, its folder, its full config for its
    record (`hydra_cfg`, with Hydra's node) and its HParams, which in a sweep show the keys the sweep varies."""
    hc = hydra_cfg.hydra
    swept = swept_keys(Path(str(hc.sweep.dir)), hc.sweeper.get("params")) if in_sweep else []
    hparams = hparams_of(cfg, list(hc.overrides.task), dict(hc.runtime.choices), swept)
    return Job(cfg, run_dir, hparams, hydra_cfg, job_log, in_sweep=in_sweep)


def environment_errors() -> tuple:
    """Errors of the machine, not of the code: a full or read-only disk, no permission, no memory."""
    import torch

    return (OSError, MemoryError, torch.OutOfMemoryError)


def out_of_memory(error: BaseException) -> bool:
    """torch's CPU allocator reports a failed allocation as a RuntimeError, not a MemoryError."""
    return isinstance(error, RuntimeError) and ("can't allocate memory" in str(error) or "out of memory" in str(error))


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
    if sweep_dir is not None and (
        isinstance(result, FolderRefused) or RunFolder(job.run_dir).recorded_status() != "failed"
    ):
        with suppress(OSError):  # a sweep folder that takes no writes either: the error line above is all there is
            note_refusal(sweep_dir, job.run_dir, one_line(result), list(job.hydra_cfg.hydra.overrides.task))
    return NO_ACCURACY
