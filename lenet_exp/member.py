"""One run in the training loop, and every file it writes: where it stands (Progress, saved in each checkpoint), its
curves and HParams session, its console lines, its checkpoints and its metrics.json."""

from __future__ import annotations

import signal
import time
from dataclasses import asdict

import torch

from lenet_exp import logger as tb
from lenet_exp.console import closing_line
from lenet_exp.jobs import Job, Progress, Run
from lenet_exp.metrics import chosen_on, learning_note, record
from lenet_exp.model import native_bf16, shape_table
from lenet_exp.run_folder import BEST, FINAL, LAST, RunFolder
from lenet_exp.settings import settings_of
from lenet_exp.signals import Interrupted, StopSignals
from lenet_exp.words import one_line, plural


def metrics_of(p: Progress, status: str, device: torch.device, chance: float | None = None) -> dict:
    """The run's figures as metrics.json holds them; a diverged run has no final figures, only its best."""
    last = {k: (v[-1] if v and status != "diverged" else None) for k, v in p.history.items()}
    speeds = p.speeds or [None]
    val = {"val_acc": last["val_acc"], "best_val_acc": max(p.history["val_acc"])} if "val_acc" in p.history else {}
    return record(
        status=status,
        epochs_completed=p.epoch,
        steps_completed=p.global_step,
        train_loss=last["train_loss"],
        train_acc=last["train_acc"],
        test_acc=last["test_acc"],
        best_test_acc=p.best_test_acc,
        **val,
        chosen_on=chosen_on(p.history),  # what best.pt, a search and the summary choose on (never test where val is)
        best_epoch=p.best_epoch,
        examples_per_sec=p.steady_speed or speeds[0],  # steady; a one-epoch run has only its first epoch's
        first_epoch_examples_per_sec=speeds[0],
        examples_per_sec_by_epoch=p.speeds,
        train_seconds=p.train_seconds,
        device=str(device),
        cpu_threads=torch.get_num_threads() if device.type == "cpu" else None,  # the CPU's figures depend on it
        chance_test_acc=chance,  # test acc of always guessing the most common test class
        history=p.history,
        **({"error": f"loss became non-finite at step {p.global_step}"} if status == "diverged" else {}),
    )


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
        self.logger.session_start(
            self.job.hparams, tb.shown_metrics(run.val_set is not None) if self.job.in_sweep else None
        )
        log.info("Data: %s (files checked)", "; ".join(d.source for d in run.data if d is not None and d.source))
        threads, epochs = plural(torch.get_num_threads(), "CPU thread"), plural(run.s.trainer.epochs, "epoch")
        examples = " / ".join(f"{len(d)} {k}" for k, d in zip(("train", "val", "test"), run.data) if d is not None)
        examples += " examples"
        if run.s.device.amp:  # bf16 where the device computes in it natively; say so where it does not
            threads += (
                ", bf16 autocast" if native_bf16(run.device.type) else ", fp32: no bf16 instructions for device.amp"
            )
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
        if self.run.device.type == "cuda":  # dropout's masks on a GPU come from its own generator
            state["cuda_rng"] = torch.cuda.get_rng_state(self.run.device)
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
        how = f"continue with: {self.job.continue_with}"
        self.log.warning("%s; %s", why[0].upper() + why[1:], how)
        self.logger.session_end("interrupted", quietly=True)
        with self.stop.writing():
            self.checkpoint()
            self.folder.write_metrics({**self.record("interrupted"), "error": f"{why}; {how}"})

    def finish(self, status: str) -> None:
        """Completed (final weights) or diverged (none: its last good state is in last.pt): the last files and line."""
        metrics = self.record(status)
        with self.stop.writing():
            if status == "completed":
                self.folder.save(FINAL, self.trainee.weights(self.g))
            self.logger.session_end(status, ", ".join(filter(None, (status, learning_note(metrics)))))
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
                e.note += f" with: {self.job.continue_with}"
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


def failure_reason(e: BaseException) -> str:
    """One line: the error's kind and message; for a file error, the file and the system's words."""
    if isinstance(e, OSError) and e.filename:
        return f"{type(e).__name__}: {one_line(e)}"
    return one_line(f"{type(e).__name__}: {e}", 300)
