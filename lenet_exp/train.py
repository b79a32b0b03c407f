"""One training run with the textbook's semantics, fed from data resident on the device.

`train(cfg, run_dir)` builds the parts from a composed config, trains, evaluates once an epoch and
writes everything into `run_dir`: TensorBoard events, metrics.json and checkpoints. It resumes from
`run_dir/checkpoints/last.pt` when an earlier try left one.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from lenet_exp import logger as tb
from lenet_exp import run_files
from lenet_exp.config import ConfigError, Settings, resolve_device
from lenet_exp.data import Split, load_dataset, to_input
from lenet_exp.model import shape_table

log = logging.getLogger(__name__)
# Keys that may change between an interrupted try and its resumption without changing the result.
RESUMABLE_CHANGES = ("trainer.epochs", "trainer.progress", "data.root", "data.download", "device")


class Interrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """Turns SIGINT/SIGTERM into a flag the loop checks between steps, so a checkpoint can be saved.

    With `parent_pid` (a sweep job in a worker process), the parent's death raises the flag too, so a
    killed parallel sweep leaves no orphan jobs training on.
    """

    def __init__(self, parent_pid: int | None = None) -> None:
        self.signum: int | None = None
        self._previous: dict = {}
        self._parent, self._done = parent_pid, threading.Event()

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        if self._parent:
            threading.Thread(target=self._watch_parent, daemon=True).start()
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum

    def _watch_parent(self) -> None:
        while not self._done.wait(0.5):
            if os.getppid() != self._parent:
                self.signum = self.signum or signal.SIGTERM
                return

    def __exit__(self, *exc) -> None:
        self._done.set()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint so a resumed run continues exactly."""

    epoch: int = 0  # epochs completed
    step: int = 0  # steps completed in the current epoch
    global_step: int = 0  # steps completed in all
    loss_sum: float = 0.0  # current epoch: summed per-example loss
    correct: int = 0  # current epoch: correct predictions
    seen: int = 0  # current epoch: examples trained on
    train_seconds: float = 0.0  # time spent in training steps, all epochs
    examples: int = 0  # examples trained on, all epochs
    history: dict = field(default_factory=lambda: {"train_loss": [], "train_acc": [], "test_acc": []})

    @property
    def best_test_acc(self) -> float | None:
        return max(self.history["test_acc"], default=None)

    def end_epoch(self, test_acc: float) -> bool:
        """Close the epoch's figures into the history; True when its test accuracy is the best so far."""
        for key, value in (("train_loss", self.loss_sum / self.seen), ("train_acc", self.correct / self.seen), ("test_acc", test_acc)):
            self.history[key].append(value)
        self.epoch, self.step, self.loss_sum, self.correct, self.seen = self.epoch + 1, 0, 0.0, 0, 0
        return test_acc == self.best_test_acc


def build(cfg: DictConfig, settings: Settings, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Instantiate the model (with the chosen activation) and the optimizer from their `_target_` nodes."""
    torch.manual_seed(settings.seed)
    layout = torch.channels_last if settings.device.channels_last else torch.contiguous_format
    activation = _instantiate("activation", lambda: instantiate(cfg.activation, _partial_=True))
    model = _instantiate("model", lambda: instantiate(cfg.model, activation=activation)).to(device, memory_format=layout)
    optimizer = _instantiate("optimizer", lambda: instantiate(cfg.optimizer)(model.parameters()))
    return model, optimizer


def _instantiate(group: str, make):
    """make(), with a bad `_target_` or argument turned into a one-line ConfigError naming the group."""
    try:
        return make()
    except (InstantiationException, TypeError, ValueError) as e:
        cause = e.__cause__ if isinstance(e, InstantiationException) and e.__cause__ else e
        raise ConfigError(f"{group}: " + " ".join(str(cause).split())) from None


def setup_device(s: Settings) -> torch.device:
    """The training device, with the determinism and CPU-thread settings applied (training and the bench alike)."""
    device = resolve_device(s.device.name)
    set_determinism(s.deterministic)
    if s.device.threads:
        torch.set_num_threads(s.device.threads)
    return device


def log_steps(num_batches: int, points: int) -> set[int]:
    """The 1-based steps of an epoch at which train loss/acc are recorded: `points` evenly spaced, the last one included."""
    return {math.ceil(num_batches * (k + 1) / points) for k in range(points)}


def train_epoch(model, optimizer, data: Split, order, p: Progress, s: Settings, on_log, stop: StopSignals) -> str:
    """Train from step p.step to the end of the epoch: 'done', 'stopped' (a signal came) or 'diverged'."""
    bs, amp = s.data.batch_size, s.device.amp and data.images.is_cuda
    num_batches = math.ceil(len(data) / bs)
    points = log_steps(num_batches, s.trainer.log_points)
    loss_sum = torch.tensor(p.loss_sum, device=data.images.device)  # accumulated on the device: no sync per step
    correct = torch.tensor(p.correct, device=data.images.device)
    for step in range(p.step, num_batches):
        if stop.signum is not None:
            break
        idx = order[step * bs : (step + 1) * bs]
        x, y = to_input(data.images[idx], s.device.channels_last), data.labels[idx]  # (B, 1, 28, 28), (B,)
        with torch.autocast("cuda", torch.bfloat16, enabled=amp):
            logits = model(x)  # (B, 10)
            loss = nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(dim=1) == y).sum()
        p.step, p.global_step, p.seen = step + 1, p.global_step + 1, p.seen + len(y)
        if step + 1 in points:
            p.loss_sum, p.correct = loss_sum.item(), int(correct.item())  # the only syncs of the epoch
            on_log()
            if not math.isfinite(p.loss_sum):
                return "diverged"
    p.loss_sum, p.correct = loss_sum.item(), int(correct.item())
    return "done" if p.step == num_batches else "stopped"


@torch.inference_mode()
def evaluate(model: nn.Module, data: Split, s: Settings) -> float:
    """Accuracy on a split, in large batches."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=data.labels.device)
    for i in range(0, len(data), s.device.eval_batch_size):
        x = to_input(data.images[i : i + s.device.eval_batch_size], s.device.channels_last)
        with torch.autocast("cuda", torch.bfloat16, enabled=s.device.amp and x.is_cuda):
            correct += (model(x).argmax(dim=1) == data.labels[i : i + len(x)]).sum()
    model.train()
    return correct.item() / len(data)


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The shuffle of one epoch: a permutation seeded by (seed, epoch), the same on every device."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).to(device)


def set_determinism(deterministic: bool) -> None:
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = not deterministic


def _settings_for_check(cfg: DictConfig) -> dict:
    """The config as a flat dict without the keys a resumption may change."""
    flat = _flatten(OmegaConf.to_container(cfg, resolve=True))
    return {k: v for k, v in flat.items() if not k.startswith(RESUMABLE_CHANGES) and not k.startswith("hydra")}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def _resume(run_dir: Path, cfg: DictConfig, model, optimizer) -> Progress | None:
    path = run_dir / run_files.LAST
    if not path.exists():
        return None
    state = run_files.load_checkpoint(path)
    now, then = _settings_for_check(cfg), state.get("settings", {})
    changed = sorted(k for k in now.keys() | then.keys() if now.get(k) != then.get(k))
    if changed:
        k = changed[0]
        raise ConfigError(
            f"{run_dir} holds a run with other settings ({k}={then.get(k)!r} there, {now.get(k)!r} now); "
            "rerun with the same overrides, or choose a new output folder"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    return Progress(**state["progress"])


def _checkpoint(run_dir: Path, cfg: DictConfig, model, optimizer, p: Progress) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        "progress": asdict(p),
        "settings": _settings_for_check(cfg),
    }
    run_files.save_checkpoint(run_dir / run_files.LAST, state)


def metrics_of(p: Progress, status: str, device: torch.device) -> dict:
    """The run's figures as metrics.json holds them; a diverged run has no final figures, only its best."""
    last = {k: (v[-1] if v and status != "diverged" else None) for k, v in p.history.items()}
    return {
        "status": status,
        "epochs_completed": p.epoch,
        "train_loss": last["train_loss"],
        "train_acc": last["train_acc"],
        "test_acc": last["test_acc"],
        "best_test_acc": p.best_test_acc,
        "examples_per_sec": p.examples / p.train_seconds if p.train_seconds else None,
        "train_seconds": p.train_seconds,
        "device": str(device),
        "history": p.history,
        **({"error": f"loss became non-finite at step {p.global_step}"} if status == "diverged" else {}),
    }


def _save_epoch(run_dir: Path, cfg: DictConfig, model, optimizer, p: Progress, is_best: bool, device) -> None:
    """End-of-epoch files: best weights when improved, the resume state, and metrics.json."""
    if is_best:
        run_files.save_checkpoint(run_dir / run_files.BEST, model.state_dict())
    _checkpoint(run_dir, cfg, model, optimizer, p)
    run_files.write_metrics(run_dir, metrics_of(p, "running", device))


def _already_completed(run_dir: Path, p: Progress, epochs: int) -> dict | None:
    done = run_files.read_metrics(run_dir)
    if done and done.get("status") == "completed" and p.epoch >= epochs:
        print(f"{run_dir} already holds this run, completed (test acc {done['test_acc']:.4f}): not retraining.")
        return done
    return None


def train(cfg: DictConfig, run_dir: Path, hparams: dict, parent_pid: int | None = None) -> dict:
    """Train the configured model in `run_dir` (resuming what an earlier try left) and return metrics.json's figures.

    `parent_pid`: the sweep process that launched this job in a worker; training stops, as on SIGTERM, if it dies.
    """
    s = Settings.from_cfg(cfg)
    device = setup_device(s)
    model, optimizer = build(cfg, s, device)
    p = _resume(run_dir, cfg, model, optimizer) or Progress()
    if done := _already_completed(run_dir, p, s.trainer.epochs):
        return done
    train_set, test_set = load_dataset(s.data.name, s.data.root, s.data.download)
    train_set, test_set = train_set.head(s.data.limit_train).to(device), test_set.head(s.data.limit_test).to(device)
    net = torch.compile(model) if s.device.compile else model
    logger = tb.RunLogger(run_dir, resume_step=p.global_step + 1 if p.global_step else None)
    if p.global_step == 0:
        lines = shape_table(model, model.input_shape)
        log.info("Layer output shapes:\n%s", "\n".join(lines))
        logger.text("model/shapes", lines)
    log.info(
        "Training on %s (%d CPU threads): %d train / %d test examples, %d epochs",
        device, torch.get_num_threads(), len(train_set), len(test_set), s.trainer.epochs,
    )
    run_files.write_metrics(run_dir, metrics_of(p, "running", device))  # a running sweep's summary shows it
    show = s.trainer.progress is True or (s.trainer.progress == "auto" and os.isatty(2))
    bar = tqdm(total=math.ceil(len(train_set) / s.data.batch_size), desc="epoch", disable=not show, leave=False)

    def on_log() -> None:  # at each log point: record the running means and show them
        loss, acc = p.loss_sum / p.seen, p.correct / p.seen
        logger.scalars(p.global_step, {tb.TRAIN_LOSS: loss, tb.TRAIN_ACC: acc})
        bar.update(p.step - bar.n)
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}")

    status = "done"
    with StopSignals(parent_pid) as stop:
        while p.epoch < s.trainer.epochs and status == "done":
            bar.reset()
            bar.update(p.step)
            bar.set_description(f"epoch {p.epoch + 1}/{s.trainer.epochs}")
            seen_before, start = p.seen, time.perf_counter()
            status = train_epoch(net, optimizer, train_set, epoch_order(len(train_set), s.seed, p.epoch, device), p, s, on_log, stop)
            p.train_seconds += time.perf_counter() - start  # train_epoch ends with a sync
            p.examples += p.seen - seen_before
            if status == "stopped":
                _checkpoint(run_dir, cfg, model, optimizer, p)
                run_files.write_metrics(run_dir, metrics_of(p, "interrupted", device))
                logger.close()
                raise Interrupted(stop.signum)
            if status == "done":
                is_best = p.end_epoch(evaluate(net, test_set, s))
                speed = p.examples / p.train_seconds
                lr = optimizer.param_groups[0]["lr"]
                logger.scalars(p.global_step, {tb.TEST_ACC: p.history["test_acc"][-1], tb.BEST_TEST_ACC: p.best_test_acc, tb.LR: lr, tb.SPEED: speed})
                log.info(
                    "epoch %d/%d  loss %.3f  train acc %.3f  test acc %.3f  %.0f examples/sec", p.epoch, s.trainer.epochs,
                    *(p.history[k][-1] for k in ("train_loss", "train_acc", "test_acc")), speed,
                )
                _save_epoch(run_dir, cfg, model, optimizer, p, is_best, device)
    bar.close()
    if status == "diverged":
        log.warning("loss became non-finite at step %d: stopping this run as diverged", p.global_step)
    else:
        run_files.save_checkpoint(run_dir / run_files.FINAL, model.state_dict())
    metrics = metrics_of(p, "diverged" if status == "diverged" else "completed", device)
    logger.hparams(hparams)
    logger.close()
    run_files.write_metrics(run_dir, metrics)
    return metrics
