"""One training run with the textbook's semantics, fed from data resident on the device.

`train(cfg, run_dir)` locks the run folder, checks everything and loads the data (`prepare`, which
writes nothing), then trains, evaluating once an epoch, and writes everything into `run_dir`
(`fit`): TensorBoard events, metrics.json and checkpoints. It continues from `checkpoints/last.pt`
when an earlier try left one; any error after training starts leaves metrics.json `failed`.
"""

from __future__ import annotations

import logging
import copy
import math
import os
import re
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lenet_exp import logger as tb
from lenet_exp import run_files, run_folder
from lenet_exp.console import EpochBar, wants_bar
from lenet_exp.config import NO_CUDA, ConfigError, Settings, check_config, did_you_mean
from lenet_exp.data import DATASETS, DataError, DatasetSpec, Split, load_dataset, to_input
from lenet_exp.model import shape_table

log = logging.getLogger(__name__)


class Interrupted(BaseException):
    """Training stopped on SIGINT/SIGTERM; `saved`: after writing a checkpoint of where it stood.

    A BaseException, as KeyboardInterrupt is: no `except Exception` on its way may take it for an error.
    """

    def __init__(self, signum: int, saved: bool = True) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.saved = signum, saved
        self.note = ""  # what became of the run, for the console; empty: a checkpoint was saved


class StopSignals:
    """SIGINT/SIGTERM: before training, stop at once (nothing is written yet); while training, raise a flag
    the loop checks between steps, so a checkpoint can be saved; a second signal stops at once, but never
    in the middle of writing files.

    With `parent_pid` (a sweep job in another process than its sweep's), the sweep's death raises the flag too,
    so a killed parallel sweep leaves no orphan jobs training on.
    """

    def __init__(self, parent_pid: int | None = None) -> None:
        self.signum: int | None = None
        self.training = False  # the loop checks the flag: defer the stop to it
        self._writing = 0
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
        if self._writing or (self.training and self.signum is None):  # never cut a write short; the loop checks the flag
            self.signum = self.signum or signum
            return
        raise Interrupted(signum, saved=False)  # before training, or a second signal: stop now

    @contextmanager
    def writing(self):
        """Files are being written: a signal now only raises the flag, so no write is cut short."""
        self._writing += 1
        try:
            yield
        finally:
            self._writing -= 1

    def _watch_parent(self) -> None:
        while not self._done.wait(0.5):
            try:
                os.kill(self._parent, 0)  # the sweep process, whether it is this job's parent (joblib) or not (submitit)
            except ProcessLookupError:
                self.signum = self.signum or signal.SIGTERM
                return
            except PermissionError:
                pass  # alive, another user's

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
        self.epoch, self.step, self.loss_sum, self.correct, self.seen, self.epoch_seconds = self.epoch + 1, 0, 0.0, 0, 0, 0.0
        return test_acc == self.best_test_acc

    @property
    def steady_speed(self) -> float | None:
        """Examples/sec of the epochs after the first, whose time holds one-time costs (CUDA start, autotuning, compile)."""
        speeds = [v for v in self.speeds[1:] if v]
        return len(speeds) / sum(1 / v for v in speeds) if speeds else None  # equal epochs: total examples / total time


def build(cfg: DictConfig, settings: Settings, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Instantiate the model (with the chosen activation) and the optimizer from their `_target_` nodes."""
    torch.manual_seed(settings.seed)
    layout = torch.channels_last if settings.device.channels_last else torch.contiguous_format
    activation = _instantiate(cfg, "activation", lambda: instantiate(cfg.activation, _partial_=True))
    model = _instantiate(cfg, "model", lambda: instantiate(cfg.model, activation=activation)).to(device, memory_format=layout)
    optimizer = _instantiate(cfg, "optimizer", lambda: instantiate(cfg.optimizer)(model.parameters()))
    return model, optimizer


def _instantiate(cfg: DictConfig, group: str, make):
    """make(), with a bad `_target_` or argument turned into a one-line ConfigError naming the group."""
    try:
        return make()
    except (InstantiationException, TypeError, ValueError) as e:
        cause = e.__cause__ if isinstance(e, InstantiationException) and e.__cause__ else e
        unknown = re.search(r"unexpected keyword argument '([^']+)'", str(cause))
        hint = did_you_mean(f"{group}.{unknown.group(1)}", [f"{group}.{k}" for k in cfg[group]]) if unknown else ""
        raise ConfigError(f"{group}: " + " ".join(str(cause).split()) + (f".{hint}" if hint else "")) from None


def resolve_device(name: str) -> torch.device:
    """The torch device for `device.name`; auto picks CUDA, then Apple MPS, then the CPU."""
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(NO_CUDA)
    if name == "mps" and not has_mps:
        raise ConfigError("device.name=mps: Apple MPS is not available on this machine; use device=auto or device=cpu")
    return torch.device(name)


def setup_device(s: Settings) -> torch.device:
    """The training device, with the determinism and CPU-thread settings applied (training and the bench alike)."""
    device = resolve_device(s.device.name)
    set_determinism(s.deterministic)
    if s.device.threads:
        torch.set_num_threads(s.device.threads)
    return device


def check_trainable(cfg: DictConfig, model: nn.Module, spec: DatasetSpec, name: str, device: torch.device) -> None:
    """One training step on two blank images of the data set, on a copy: the model must take them and give a logit
    per class, and the optimizer must be able to take a step with its settings."""
    x = torch.zeros(2, spec.channels, spec.image_size, spec.image_size, device=device)
    size = f"{spec.channels}x{spec.image_size}x{spec.image_size}"
    trial = copy.deepcopy(model)
    try:
        out = trial(x)
    except Exception as e:
        raise ConfigError(f"model cannot take {name} images ({size}): {_short(e)}") from None
    if out.dim() != 2 or out.shape[1] < spec.classes:
        raise ConfigError(f"model gives outputs of shape {tuple(out.shape[1:])} per image; {name} needs at least {spec.classes} logits (model.num_classes)")
    check_optimizer_types(cfg)
    try:
        optimizer = instantiate(cfg.optimizer)(trial.parameters())
        for _ in range(2):  # some settings are first used in the second step (SGD's dampening)
            optimizer.zero_grad()
            nn.functional.cross_entropy(trial(x), torch.zeros(2, dtype=torch.long, device=device)).backward()
            optimizer.step()
    except Exception as e:
        raise ConfigError(f"optimizer cannot take a step with these settings: {_short(e)}") from None


def check_optimizer_types(cfg: DictConfig) -> None:
    """Each optimizer setting of the type its class's default has (a flag a bool, a rate a number), even where this
    run would never read it (dampening without momentum): a value of the wrong type is a mistake either way."""
    import inspect

    from hydra.utils import get_class

    try:
        defaults = {k: p.default for k, p in inspect.signature(get_class(cfg.optimizer._target_)).parameters.items()}
    except Exception:
        return  # not a class we can read: the trial step decides
    for key, value in OmegaConf.to_container(cfg.optimizer, resolve=True).items():
        default = defaults.get(key, inspect.Parameter.empty)
        if key.startswith("_") or default in (None, inspect.Parameter.empty):
            continue
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"optimizer.{key}={value!r} is not allowed: expected true or false")
        if isinstance(default, (int, float)) and not isinstance(default, bool) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"optimizer.{key}={value!r} is not allowed: expected a number")


def check_buildable(cfg: DictConfig) -> None:
    """Build the configured model on the CPU and take one training step with it: the check a sweep makes of every model it varies."""
    s = Settings.from_cfg(cfg)
    model, _ = build(cfg, s, torch.device("cpu"))
    check_trainable(cfg, model, DATASETS[s.data.name], s.data.name, torch.device("cpu"))


def _short(error: Exception | str) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:300].rsplit(" ", 1)[0] + " ..."


def log_steps(num_batches: int, points: int) -> set[int]:
    """The 1-based steps of an epoch at which train loss/acc are recorded: `points` evenly spaced, the last one included."""
    points = min(points, num_batches)  # at most one point a step
    return {math.ceil(num_batches * (k + 1) / points) for k in range(points)}


def train_epoch(model, optimizer, data: Split, order, p: Progress, s: Settings, on_log, stop: StopSignals, on_step=None) -> str:
    """Train from step p.step to the end of the epoch: 'done', 'stopped' (a signal came) or 'diverged'.

    `on_log()` at each log point, after the running figures are read back; `on_step(examples)` after every step.
    """
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
        if on_step:
            on_step(len(y))
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
    """Bitwise-repeatable kernels or the fastest ones (CUBLAS_WORKSPACE_CONFIG is set when lenet_exp is imported)."""
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = not deterministic


def _checkpoint(run_dir: Path, cfg: DictConfig, model, optimizer, p: Progress) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        "progress": asdict(p),
        "settings": run_folder.settings_of(cfg),
        "cpu_threads": torch.get_num_threads(),
    }
    run_files.save_checkpoint(run_dir / run_files.LAST, state)


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


def cpu_weights(model: nn.Module) -> dict:
    """The model's weights as CPU tensors: best.pt and final.pt load on any machine without map_location."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _save_epoch(run_dir: Path, cfg: DictConfig, model, optimizer, p: Progress, is_best: bool, metrics: dict) -> None:
    """End-of-epoch files: best weights when improved, the resume state, and metrics.json."""
    if is_best:
        run_files.save_checkpoint(run_dir / run_files.BEST, cpu_weights(model))
    _checkpoint(run_dir, cfg, model, optimizer, p)
    run_files.write_metrics(run_dir, metrics)


@dataclass
class Run:
    """Everything a run needs, checked and loaded, before anything is written."""

    cfg: DictConfig
    s: Settings
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    p: Progress
    train_set: Split
    test_set: Split
    plan: run_folder.Plan
    data_files: str = ""


def prepare(cfg: DictConfig, run_dir: Path) -> Run | dict:
    """Check the config, the model against the data and the folder's record, then load the data; write nothing.

    Returns the metrics of a finished run asked for again instead of a Run. Refusals raise ConfigError.
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
                plan.note += (f"; the earlier try trained on {before} CPU threads, this one on {torch.get_num_threads()}: the order of "
                              "floating-point sums differs, so the figures will not match an unbroken run digit for digit")
        except Exception as e:
            raise run_files.CheckpointError(
                f"{run_dir / run_files.LAST}: cannot resume from this checkpoint, it does not fit this run ({_short(e)[:160]}); "
                "put back the run's own copy to continue, or move the run folder away (or choose a new output folder) to start over"
            ) from None
    train_set, test_set = load_dataset(s.data.name, s.data.root, s.data.download)
    train_set, test_set = train_set.head(s.data.limit_train).to(device), test_set.head(s.data.limit_test).to(device)
    return Run(cfg, s, device, model, optimizer, p, train_set, test_set, plan)


def train(cfg: DictConfig, run_dir: Path, hparams: dict, parent_pid: int | None = None, hydra_cfg: DictConfig | None = None, keep_refusals: bool = False) -> dict:
    """Train the configured model in `run_dir` (continuing what an earlier try left) and return metrics.json's figures.

    Holds the folder's lock throughout and writes nothing until every check has passed (then `.hydra/`,
    from `hydra_cfg`); any error after that leaves metrics.json `failed` with its reason, or `interrupted`.
    `parent_pid`: the sweep process that launched this job in a worker; training stops, as on SIGTERM, if it dies.
    `keep_refusals`: a sweep job records a config or data error as `failed` too, so the sweep's summary shows it.
    """
    with run_folder.locked(run_dir), StopSignals(parent_pid) as stop:
        try:
            run = prepare(cfg, run_dir)
        except Interrupted as e:
            e.note = "before training started; nothing was written"
            raise
        except (ConfigError, DataError, run_files.CheckpointError) as e:
            if not keep_refusals or isinstance(e, run_folder.FolderRefused):
                raise
            run_folder.write_record(run_dir, cfg, hydra_cfg)
            run_folder.record_failure(run_dir, str(e))
            raise
        if isinstance(run, dict):
            print(f"{run_dir} already holds this run, {run['status']} (test acc {_fmt(run.get('test_acc'))}): not retraining.")
            return run
        with stop.writing():  # a signal now waits: the record is written whole
            run_folder.write_record(run_dir, cfg, hydra_cfg)
        if stop.signum is not None:
            e = Interrupted(stop.signum, saved=False)
            e.note = f"before training started; nothing was trained ({run_dir}/.hydra/ records its settings)"
            raise e
        try:
            return fit(run, run_dir, hparams, stop, in_worker=parent_pid is not None, in_sweep=keep_refusals)
        except Interrupted as e:
            if not e.saved:
                e.note = f"stopped before saving where it stood; {run_dir} continues from its last checkpoint when rerun"
                _record_quietly(run_dir, f"stopped by {e} before saving where it stood", "interrupted")
            raise
        except BaseException as e:
            reason = f"{type(e).__name__}: {e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename else _short(f"{type(e).__name__}: {e}")
            log.error("run failed: %s", reason)
            _record_quietly(run_dir, reason, "failed")
            raise


def _record_quietly(run_dir: Path, reason: str, status: str) -> None:
    """Record the end in metrics.json; if even that fails (a full disk), the lock's release tells the summary."""
    try:
        run_folder.record_failure(run_dir, reason, status)
    except OSError:
        pass


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def fit(run: Run, run_dir: Path, hparams: dict, stop: StopSignals, in_worker: bool = False, in_sweep: bool = False) -> dict:
    """The training loop: epochs of train_epoch and evaluate, curves and checkpoints; returns metrics.json's figures."""
    cfg, s, device, model, optimizer, p = run.cfg, run.s, run.device, run.model, run.optimizer, run.p
    train_set, test_set, started = run.train_set, run.test_set, time.perf_counter()
    net = torch.compile(model) if s.device.compile else model
    old_curves = any(run_dir.glob("events.out.tfevents.*"))
    logger = tb.RunLogger(run_dir, resume_step=p.global_step + 1 if p.global_step else (0 if old_curves else None))
    if run.plan.note:
        log.info("%s", run.plan.note[0].upper() + run.plan.note[1:])
    if p.global_step == 0:
        lines = shape_table(model, model.input_shape)
        if not in_sweep:  # a sweep's jobs share one model: its table once per job would drown the log (TensorBoard has it)
            log.info("Layer output shapes:\n%s", "\n".join(lines))
        logger.text("model/shapes", lines)
    logger.session_start(hparams)
    log.info("Data: %s; %s (files checked)", train_set.source, test_set.source)
    log.info(
        "Training on %s (%s): %d train / %d test examples, %s, into %s",
        device, plural(torch.get_num_threads(), "CPU thread"), len(train_set), len(test_set), plural(s.trainer.epochs, "epoch"), run_dir,
    )
    chance = test_set.labels.bincount().max().item() / len(test_set)
    record = lambda status: metrics_of(p, status, device, chance)  # noqa: E731
    run_files.write_metrics(run_dir, record("running"))  # a running sweep's summary shows it
    bar = EpochBar(wants_bar(s.trainer.progress, in_worker), len(train_set))

    def on_log() -> None:  # at each log point: record the running means and show them
        loss, acc = p.loss_sum / p.seen, p.correct / p.seen
        logger.scalars(p.global_step, {tb.TRAIN_LOSS: loss, tb.TRAIN_ACC: acc})
        bar.figures(loss, acc)

    status = "done"
    try:
        stop.training = True
        while p.epoch < s.trainer.epochs and status == "done":
            bar.start(p.epoch + 1, s.trainer.epochs, p.seen)
            seen_before, start = p.seen, time.perf_counter()
            order = epoch_order(len(train_set), s.seed, p.epoch, device)
            status = train_epoch(net, optimizer, train_set, order, p, s, on_log, stop, bar.advance)
            elapsed = time.perf_counter() - start  # train_epoch ends with a sync
            p.train_seconds, p.epoch_seconds, p.examples = p.train_seconds + elapsed, p.epoch_seconds + elapsed, p.examples + p.seen - seen_before
            if status == "stopped":
                bar.close()
                logger.session_end("interrupted", quietly=True)
                why = f"stopped by {signal.Signals(stop.signum).name} in epoch {p.epoch + 1} at step {p.step}; rerun to continue"
                log.warning("%s", why[0].upper() + why[1:])
                with stop.writing():
                    _checkpoint(run_dir, cfg, model, optimizer, p)
                    run_files.write_metrics(run_dir, {**record("interrupted"), "error": why})
                raise Interrupted(stop.signum)
            if status == "done":
                is_best = p.end_epoch(evaluate(net, test_set, s))
                speed = p.speeds[-1]  # this epoch's own
                lr = optimizer.param_groups[0]["lr"]
                logger.scalars(p.global_step, {tb.TEST_ACC: p.history["test_acc"][-1], tb.BEST_TEST_ACC: p.best_test_acc, tb.LR: lr, tb.SPEED: speed})
                log.info(
                    "epoch %d/%d  loss %.3f  train acc %.3f  test acc %.3f  %.0f examples/sec", p.epoch, s.trainer.epochs,
                    *(p.history[k][-1] for k in ("train_loss", "train_acc", "test_acc")), speed,
                )
                with stop.writing():
                    logger.flush()  # the curves on disk reach as far as the checkpoint
                    _save_epoch(run_dir, cfg, model, optimizer, p, is_best, record("running"))
        bar.close()
        metrics = record("diverged" if status == "diverged" else "completed")
        with stop.writing():
            if status != "diverged":
                run_files.save_checkpoint(run_dir / run_files.FINAL, cpu_weights(model))
            logger.session_end(metrics["status"])
            logger.close()
            run_files.write_metrics(run_dir, metrics)
        log.info("%s", closing_line(metrics, run_dir, time.perf_counter() - started))
        return metrics
    except Exception:
        logger.session_end("failed", quietly=True)
        raise
    finally:
        stop.training = False
        bar.close()
        logger.close(quietly=True)  # after an error: the error to report is the first one


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
    stuck = f"; at chance ({m['chance_test_acc']:.3f}): not learning (yet: more epochs or examples, or other settings)" if run_files.not_learning(m) else ""
    return f"{head}{stuck}; {seconds:.1f} s; files in {run_dir}"
