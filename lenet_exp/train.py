"""One training run with the textbook's semantics, fed from data resident on the device, and the loop that trains it.

`train(cfg, run_dir)` locks the run folder, checks everything and loads the data (`prepare`, which
writes nothing), then trains, evaluating once an epoch, and writes everything into `run_dir`
(`fit`): TensorBoard events, metrics.json and checkpoints. It continues from `checkpoints/last.pt`
when an earlier try left one; any error after training starts leaves metrics.json `failed`.

One loop serves one model and many: `fit` trains a list of members (runs) through a trainee that takes
their steps, `Solo` for a run alone (the step as the textbook takes it), or a fused group of G models
(lenet_exp.fused), each member keeping its own curves, checkpoints and metrics.json.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from lenet_exp import logger as tb
from lenet_exp import run_files, run_folder
from lenet_exp.build import build, check_trainable, cpu_weights, setup_device
from lenet_exp.config import ConfigError, Settings, check_config
from lenet_exp.console import EpochBar, wants_bar
from lenet_exp.data import DATASETS, DataError, Split, load_dataset, to_input
from lenet_exp.model import shape_table
from lenet_exp.signals import Interrupted, StopSignals

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

    def end_epoch(self, test_acc: float) -> bool:
        """Close the epoch's figures into the history; True when its test accuracy is the best so far."""
        figures = {"train_loss": self.loss_sum / self.seen, "train_acc": self.correct / self.seen, "test_acc": test_acc}
        for key, value in figures.items():
            self.history[key].append(value)
        self.speeds.append(self.seen / self.epoch_seconds if self.epoch_seconds else None)
        self.epoch, self.step, self.loss_sum, self.correct, self.seen, self.epoch_seconds = (
            self.epoch + 1,
            0,
            0.0,
            0,
            0,
            0.0,
        )
        return test_acc == self.best_test_acc

    @property
    def steady_speed(self) -> float | None:
        """Examples/sec of the epochs after the first, whose time holds one-time costs (CUDA start, autotuning, compile)."""
        speeds = [v for v in self.speeds[1:] if v]
        return len(speeds) / sum(1 / v for v in speeds) if speeds else None  # equal epochs: total examples / total time


def mixed_precision(s: Settings, x: torch.Tensor) -> torch.autocast:
    """bf16 autocast where `device.amp` asks for it and the data is on CUDA; a no-op elsewhere."""
    return torch.autocast("cuda", torch.bfloat16, enabled=s.device.amp and x.is_cuda)


def log_steps(num_batches: int, points: int) -> set[int]:
    """The 1-based steps of an epoch at which train loss/acc are recorded: `points` evenly spaced, the last one included."""
    points = min(points, num_batches)  # at most one point a step
    return {math.ceil(num_batches * (k + 1) / points) for k in range(points)}


class Solo:
    """One model and its own torch optimizer: the step a run alone takes, exactly as the textbook's loop does."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, s: Settings) -> None:
        self.model, self.optimizer, self.s = model, optimizer, s
        self.net = torch.compile(model) if s.device.compile else model

    def step(
        self, images: torch.Tensor, labels: torch.Tensor, active: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """images (1, B, 28, 28) uint8, labels (1, B): one step; the batch's summed loss and correct count, on the device."""
        x, y = to_input(images[0], self.s.device.channels_last), labels[0]  # (B, 1, 28, 28), (B,)
        with mixed_precision(self.s, x):
            logits = self.net(x)  # (B, 10)
            loss = nn.functional.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
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
    members: list,
    s: Settings,
    stop: StopSignals,
    on_log,
    on_diverged,
    on_step=None,
) -> str:
    """Train the members from their step to the end of the epoch: 'done', 'stopped' (a signal came) or 'diverged' (all did).

    `orders` (G, N): each member's own shuffle. Loss and correct counts stay on the device and are read back only
    at the log points: then `on_log()`, and `on_diverged(member)` for a member whose loss is no longer finite.
    """
    bs, p = s.data.batch_size, members[0].p
    num_batches = math.ceil(len(data) / bs)
    points = log_steps(num_batches, s.trainer.log_points)
    device = data.images.device
    loss_sums = torch.tensor([m.p.loss_sum for m in members], device=device)  # (G,), no sync per step
    corrects = torch.tensor([m.p.correct for m in members], device=device)
    stepping = [m.active for m in members]
    active = torch.tensor(stepping, device=device)  # (G,) which models take steps
    for step in range(p.step, num_batches):
        if stop.signum is not None:
            break
        idx = orders[:, step * bs : (step + 1) * bs]  # (G, B)
        losses, correct = trainee.step(data.images[idx], data.labels[idx], active)
        loss_sums += losses
        corrects += correct
        for m in members:
            if m.active:
                m.p.step, m.p.global_step, m.p.seen = step + 1, m.p.global_step + 1, m.p.seen + idx.shape[1]
        if on_step:
            on_step(idx.shape[1])
        if step + 1 in points:
            for m, loss_sum, n_correct in zip(
                members, loss_sums.tolist(), corrects.tolist()
            ):  # the only syncs of the epoch
                if m.active:
                    m.p.loss_sum, m.p.correct = loss_sum, int(n_correct)
            on_log()
            for g, m in enumerate(members):
                if m.active and not math.isfinite(m.p.loss_sum):
                    on_diverged(m)
                if stepping[g] and not m.active:  # diverged, or failed alone in a fused group
                    stepping[g] = active[g] = False
            if not any(m.active for m in members):
                return "diverged"
    for m, loss_sum, n_correct in zip(members, loss_sums.tolist(), corrects.tolist()):
        if m.active:
            m.p.loss_sum, m.p.correct = loss_sum, int(n_correct)
    return "done" if p.step == num_batches else "stopped"


@torch.inference_mode()
def evaluate(model: nn.Module, data: Split, s: Settings) -> float:
    """Accuracy on a split, in large batches."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=data.labels.device)
    for i in range(0, len(data), s.device.eval_batch_size):
        x = to_input(data.images[i : i + s.device.eval_batch_size], s.device.channels_last)
        with mixed_precision(s, x):
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
class Run:
    """Everything a run needs, checked and loaded, before anything is written."""

    cfg: DictConfig
    s: Settings
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    p: Progress
    train_set: Split | None
    test_set: Split | None
    plan: run_folder.Plan


def prepare(cfg: DictConfig, run_dir: Path, load_data: bool = True) -> Run | dict:
    """Check the config, the model against the data and the folder's record, then load the data; write nothing.

    Returns the metrics of a finished run asked for again instead of a Run. Refusals raise ConfigError.
    Without `load_data` (a fused group loads its data once for all) the Run comes without it.
    """
    s = check_config(cfg)
    device = setup_device(s)
    model, optimizer = build(cfg, s, device)
    check_trainable(cfg, model, DATASETS[s.data.name], s.data.name, device)
    plan = run_folder.plan_run(run_dir, run_folder.settings_of(cfg), s.trainer.epochs)
    if plan.done:
        return plan.done
    p = Progress()
    if plan.state:
        try:
            model.load_state_dict(plan.state["model"])
            optimizer.load_state_dict(plan.state["optimizer"])
            torch.set_rng_state(plan.state["rng"])
            p = Progress(**plan.state["progress"])
            before = plan.state.get("cpu_threads")
            if device.type == "cpu" and before and before != torch.get_num_threads():
                plan.note += (
                    f"; the earlier try trained on {before} CPU threads, this one on {torch.get_num_threads()}: the order of "
                    "floating-point sums differs, so the figures will not match an unbroken run digit for digit"
                )
        except Exception as e:
            raise run_files.CheckpointError(
                f"{run_dir / run_files.LAST}: cannot resume from this checkpoint, it does not fit this run ({_short(e)[:160]}); "
                "put back the run's own copy to continue, or move the run folder away (or choose a new output folder) to start over"
            ) from None
    train_set = test_set = None
    if load_data:
        train_set, test_set = load_data_for(s, device)
    return Run(cfg, s, device, model, optimizer, p, train_set, test_set, plan)


def load_data_for(s: Settings, device: torch.device) -> tuple[Split, Split]:
    """The run's train and test examples, checked, sliced and on its device."""
    train_set, test_set = load_dataset(s.data.name, s.data.root, s.data.download)
    return train_set.head(s.data.limit_train).to(device), test_set.head(s.data.limit_test).to(device)


@dataclass
class Member:
    """One run in the training loop: its folder, settings, figures and files (a run alone, or one of a fused group)."""

    run: Run
    run_dir: Path
    hparams: dict
    log: logging.Logger = log
    show_shapes: bool = True  # the layer shape table on the console (a sweep's jobs share one model)
    logger: tb.RunLogger | None = None
    chance: float | None = None
    active: bool = True
    done: dict | None = None  # metrics.json's figures once it has finished
    error: Exception | None = None  # why it failed, where a fused group's member failed alone
    started: float = field(default_factory=time.perf_counter)

    @property
    def p(self) -> Progress:
        return self.run.p

    def record(self, status: str) -> dict:
        return metrics_of(self.p, status, self.run.device, self.chance)

    def open(self, train_set: Split, test_set: Split) -> None:
        """Start the try: curves (purging what an earlier try left past its checkpoint), the console's story, metrics.json running."""
        p, s, run_dir = self.p, self.run.s, self.run_dir
        old_curves = any(run_dir.glob("events.out.tfevents.*"))
        self.logger = tb.RunLogger(
            run_dir, resume_step=p.global_step + 1 if p.global_step else (0 if old_curves else None)
        )
        if self.run.plan.note:
            self.log.info("%s", self.run.plan.note[0].upper() + self.run.plan.note[1:])
        if p.global_step == 0:
            lines = shape_table(self.run.model, self.run.model.input_shape)
            if self.show_shapes:
                self.log.info("Layer output shapes:\n%s", "\n".join(lines))
            self.logger.text("model/shapes", lines)
        self.logger.session_start(self.hparams)
        self.log.info("Data: %s; %s (files checked)", train_set.source, test_set.source)
        self.log.info(
            "Training on %s (%s): %d train / %d test examples, %s, into %s",
            self.run.device,
            plural(torch.get_num_threads(), "CPU thread"),
            len(train_set),
            len(test_set),
            plural(s.trainer.epochs, "epoch"),
            run_dir,
        )
        self.chance = test_set.labels.bincount().max().item() / len(test_set)
        run_files.write_metrics(run_dir, self.record("running"))  # a running sweep's summary shows it

    def log_point(self) -> None:
        self.logger.scalars(
            self.p.global_step,
            {tb.TRAIN_LOSS: self.p.loss_sum / self.p.seen, tb.TRAIN_ACC: self.p.correct / self.p.seen},
        )

    def checkpoint(self, trainee, g: int) -> None:
        model_state, optimizer_state = trainee.states(g)
        state = {
            "model": model_state,
            "optimizer": optimizer_state,
            "rng": torch.get_rng_state(),
            "progress": asdict(self.p),
            "settings": run_folder.settings_of(self.run.cfg),
            "cpu_threads": torch.get_num_threads(),
        }
        run_files.save_checkpoint(self.run_dir / run_files.LAST, state)

    def end_epoch(self, test_acc: float, trainee, g: int, stop: StopSignals) -> None:
        """The epoch's figures: history, curves, the log line; then best weights, the resume state and metrics.json."""
        p = self.p
        is_best = p.end_epoch(test_acc)
        speed = p.speeds[-1]  # this epoch's own
        lr = self.run.optimizer.param_groups[0]["lr"]
        self.logger.scalars(
            p.global_step, {tb.TEST_ACC: test_acc, tb.BEST_TEST_ACC: p.best_test_acc, tb.LR: lr, tb.SPEED: speed}
        )
        self.log.info(
            "epoch %d/%d  loss %.3f  train acc %.3f  test acc %.3f  %.0f examples/sec",
            p.epoch,
            self.run.s.trainer.epochs,
            *(p.history[k][-1] for k in ("train_loss", "train_acc", "test_acc")),
            speed,
        )
        with stop.writing():
            self.logger.flush()  # the curves on disk reach as far as the checkpoint
            if is_best:
                run_files.save_checkpoint(self.run_dir / run_files.BEST, trainee.weights(g))
            self.checkpoint(trainee, g)
            run_files.write_metrics(self.run_dir, self.record("running"))

    def interrupt(self, signum: int, trainee, g: int, stop: StopSignals) -> None:
        """Stopped by a signal: where it stood, in last.pt, and why, in metrics.json."""
        why = f"stopped by {signal.Signals(signum).name} in epoch {self.p.epoch + 1} at step {self.p.step}; rerun to continue"
        self.log.warning("%s", why[0].upper() + why[1:])
        self.logger.session_end("interrupted", quietly=True)
        with stop.writing():
            self.checkpoint(trainee, g)
            run_files.write_metrics(self.run_dir, {**self.record("interrupted"), "error": why})

    def fail(self, e: Exception) -> None:
        """A fused group's member whose own files failed (a full or unwritable folder): it stops alone, recorded failed."""
        self.error, self.active = e, False
        reason = failure_reason(e)
        self.log.error("run failed: %s", reason)
        if self.logger:
            self.logger.session_end("failed", quietly=True)
        _record_quietly(self.run_dir, reason, "failed")

    def finish(self, status: str, trainee, g: int, stop: StopSignals) -> None:
        """Completed (final weights) or diverged (none: its last good state is in last.pt): the last files and line."""
        metrics = self.record(status)
        with stop.writing():
            if status == "completed":
                run_files.save_checkpoint(self.run_dir / run_files.FINAL, trainee.weights(g))
            self.logger.session_end(status)
            self.logger.close()
            run_files.write_metrics(self.run_dir, metrics)
        self.log.info("%s", closing_line(metrics, self.run_dir, time.perf_counter() - self.started))
        self.done, self.active = metrics, False


def fit(
    members: list[Member], trainee, train_set: Split, test_set: Split, stop: StopSignals, show_bar: bool = False
) -> list[dict | Exception]:
    """The training loop, for one run or a fused group: epochs of train_epoch and evaluate; returns each member's figures
    (or, for a fused group's member that failed alone, its error)."""
    s, device = members[0].run.s, members[0].run.device
    bar = EpochBar(show_bar, len(train_set))

    def each(
        action, only: Member | None = None
    ) -> None:  # action(g, member) for live members; in a group, one whose files fail stops alone
        for g, m in enumerate(members):
            if not m.active or (only is not None and m is not only):
                continue
            if len(members) == 1:
                action(g, m)
                continue
            try:
                action(g, m)
            except Exception as e:
                m.fail(e)

    def on_log() -> None:  # at each log point: record each member's running means, show the first one's
        each(lambda g, m: m.log_point())
        lead = members[0].p
        bar.figures(lead.loss_sum / lead.seen, lead.correct / lead.seen)

    each(lambda g, m: m.open(train_set, test_set))
    status = "done"
    try:
        stop.training = True
        while status == "done" and (live := [m for m in members if m.active]) and live[0].p.epoch < s.trainer.epochs:
            p = live[0].p
            bar.start(p.epoch + 1, s.trainer.epochs, p.seen)
            seen_before, start = p.seen, time.perf_counter()
            orders = torch.stack(
                [epoch_order(len(train_set), m.run.s.seed, p.epoch, device) for m in members]
            )  # (G, N)
            diverged = lambda m: each(lambda g, n: n.finish("diverged", trainee, g, stop), only=m)  # noqa: E731
            status = train_epoch(trainee, train_set, orders, members, s, stop, on_log, diverged, bar.advance)
            elapsed = time.perf_counter() - start  # train_epoch ends with a sync
            for m in (m for m in members if m.active):
                m.p.train_seconds, m.p.epoch_seconds, m.p.examples = (
                    m.p.train_seconds + elapsed,
                    m.p.epoch_seconds + elapsed,
                    m.p.examples + m.p.seen - seen_before,
                )
            if status == "stopped":
                bar.close()
                each(lambda g, m: m.interrupt(stop.signum, trainee, g, stop))
                raise Interrupted(stop.signum)
            if status == "done":
                accs = trainee.evaluate(test_set)
                each(lambda g, m: m.end_epoch(accs[g], trainee, g, stop))
        bar.close()
        each(lambda g, m: m.finish("completed", trainee, g, stop))
        return [m.done if m.done is not None else m.error for m in members]
    except Exception:
        for m in members:
            if m.logger and m.active:
                m.logger.session_end("failed", quietly=True)
        raise
    finally:
        stop.training = False
        bar.close()
        for m in members:
            if m.logger:
                m.logger.close(quietly=True)  # after an error: the error to report is the first one


def train(
    cfg: DictConfig,
    run_dir: Path,
    hparams: dict,
    parent_pid: int | None = None,
    hydra_cfg: DictConfig | None = None,
    keep_refusals: bool = False,
) -> dict:
    """Train the configured model in `run_dir` (continuing what an earlier try left) and return metrics.json's figures.

    Holds the folder's lock throughout and writes nothing until every check has passed (then `.hydra/`,
    from `hydra_cfg`); any error after that leaves metrics.json `failed` with its reason, or `interrupted`.
    `parent_pid`: the sweep process that launched this job in a worker; training stops, as on SIGTERM, if it dies.
    `keep_refusals`: a sweep job records a config or data error as `failed` too, so the sweep's summary shows it.
    """
    with run_folder.locked(run_dir), StopSignals(parent_pid) as stop:
        run = start(cfg, run_dir, hydra_cfg, stop, keep_refusals)
        if isinstance(run, dict):
            return run
        member = Member(run, run_dir, hparams, show_shapes=not keep_refusals)
        with failures_recorded([member]):
            show_bar = wants_bar(run.s.trainer.progress, in_worker=parent_pid is not None)
            return fit([member], Solo(run.model, run.optimizer, run.s), run.train_set, run.test_set, stop, show_bar)[0]


def start(
    cfg: DictConfig,
    run_dir: Path,
    hydra_cfg: DictConfig | None,
    stop: StopSignals,
    keep_refusals: bool,
    load_data: bool = True,
) -> Run | dict:
    """Prepare a run in its locked folder and write its record; or the figures of a finished run asked for again.

    Refusals write nothing, except a sweep job's config or data error (`keep_refusals`), which is recorded as failed.
    """
    try:
        run = prepare(cfg, run_dir, load_data)
    except Interrupted as e:
        e.note = "before training started; nothing was written"
        raise
    except (ConfigError, DataError, run_files.CheckpointError) as e:
        if keep_refusals and not isinstance(e, run_folder.FolderRefused):
            run_folder.write_record(run_dir, cfg, hydra_cfg)
            run_folder.record_failure(run_dir, str(e))
        raise
    if isinstance(run, dict):
        print(
            f"{run_dir} already holds this run, {run['status']} (test acc {_fmt(run.get('test_acc'))}): not retraining."
        )
        return run
    with stop.writing():  # a signal now waits: the record is written whole
        run_folder.write_record(run_dir, cfg, hydra_cfg)
    if stop.signum is not None:
        e = Interrupted(stop.signum, saved=False)
        e.note = f"before training started; nothing was trained ({run_dir}/.hydra/ records its settings)"
        raise e
    return run


class failures_recorded:
    """Any end other than a clean one leaves each member's metrics.json saying so: `interrupted`, or `failed` with the reason."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members

    def __enter__(self) -> failures_recorded:
        return self

    def __exit__(self, kind, e, tb_) -> bool:
        if e is None:
            return False
        for m in (m for m in self.members if m.done is None and m.error is None):
            if isinstance(e, Interrupted):
                if not e.saved:
                    e.note = f"stopped before saving where it stood; {m.run_dir} continues from its last checkpoint when rerun"
                    _record_quietly(m.run_dir, f"stopped by {e} before saving where it stood", "interrupted")
            else:
                reason = failure_reason(e)
                m.log.error("run failed: %s", reason)
                _record_quietly(m.run_dir, reason, "failed")
        return False


def failure_reason(e: BaseException) -> str:
    """One line: the error's kind and message; for a file error, the file and the system's words."""
    return (
        f"{type(e).__name__}: {e.filename}: {e.strerror}"
        if isinstance(e, OSError) and e.filename
        else _short(f"{type(e).__name__}: {e}")
    )


def _record_quietly(run_dir: Path, reason: str, status: str) -> None:
    """Record the end in metrics.json; if even that fails (a full disk), the lock's release tells the summary."""
    try:
        run_folder.record_failure(run_dir, reason, status)
    except OSError:
        pass


def _short(error: Exception | str) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:300].rsplit(" ", 1)[0] + " ..."


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def closing_line(m: dict, run_dir: Path, seconds: float) -> str:
    """The run's last console line: how it ended, its final and best test accuracy, and where its files are."""
    best = m["best_test_acc"]
    at = f" (epoch {m['history']['test_acc'].index(best) + 1})" if best is not None else ""
    if m["status"] == "diverged":
        head = f"Diverged: {m['error']}; " + ("no test accuracy" if best is None else f"best test acc {best:.4f}{at}")
    else:
        head = f"Done: {plural(m['epochs_completed'], 'epoch')}, test acc {m['test_acc']:.4f}, best {best:.4f}{at}"
    stuck = (
        f"; at chance ({m['chance_test_acc']:.3f}): not learning (yet: more epochs or examples, or other settings)"
        if run_files.not_learning(m)
        else ""
    )
    return f"{head}{stuck}; {seconds:.1f} s; files in {run_dir}"
