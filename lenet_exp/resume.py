"""How a run starts in its folder, decided from the folder's record: afresh, continued from last.pt, or not at all
(finished already); refused when the record is another run's or cannot be continued."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lenet_exp.checkpoint import load_checkpoint
from lenet_exp.errors import FolderRefused
from lenet_exp.metrics import FINAL_STATUSES
from lenet_exp.run_folder import LAST, START_OVER, RunFolder
from lenet_exp.settings import first_difference, settings_of
from lenet_exp.words import plural


@dataclass
class Plan:
    """What to do in a run folder: start afresh, continue from `state`, or nothing (`done` holds its figures)."""

    state: dict | None = None  # last.pt's contents, to continue from
    done: dict | None = None  # metrics.json of a finished run asked for again
    note: str = ""  # one line: how this try starts; for a finished run, what it is and how to continue it


def plan(folder: RunFolder, settings: dict, epochs: int) -> Plan:
    """Decide from the record how this run starts; refuse (FolderRefused) when the record is not this run's.

    Refused: other settings; fewer epochs than trained; a record of training with no last.pt to continue from.
    """
    metrics, run_dir = folder.record(), folder.path
    state = load_checkpoint(run_dir / LAST, metrics) if (run_dir / LAST).exists() else None
    steps = metrics.get("epochs_completed") or metrics.get("steps_completed")
    if state is None and not steps and not folder.trained_without_record():
        folder.check_holds_only_a_run()
        note = f"the earlier try in {run_dir} left no checkpoint (status {metrics.get('status')}): starting over"
        return Plan(note=note if metrics else "")
    saved = folder.saved_config()
    for then in (saved and settings_of(saved), state and state.get("settings")):
        if then is not None and (diff := first_difference(then, settings)):
            raise FolderRefused(
                f"{run_dir} holds a run with other settings ({diff}); rerun with the same overrides, "
                "or train these in a new output folder (without resume=)"
            )
    check_schedule_kept(run_dir, saved or {}, epochs)
    progress = (state or {}).get("progress") or {}
    done_epochs = progress.get("epoch", metrics.get("epochs_completed") or 0)
    status = metrics.get("status")
    if status in FINAL_STATUSES and (status == "diverged" or done_epochs == epochs):
        return Plan(done=metrics, note=finished_line(run_dir, metrics, done_epochs, schedule_end(saved or {})))
    check_continuable(folder, metrics, state, epochs, schedule_end(saved or {}))
    if done_epochs == epochs and not progress.get("step"):  # killed after its last epoch, before its final files
        return Plan(state=state, note=f"finishing in {run_dir}: its {plural(epochs, 'epoch')} were trained already")
    step = f", step {progress['step']}" if progress.get("step") else ""
    at = f"epoch {done_epochs + 1}{step} (global step {progress.get('global_step', 0)})"
    return Plan(state=state, note=f"resuming in {run_dir} from {at}")


def check_schedule_kept(run_dir: Path, saved: dict, epochs: int) -> None:
    """A run on a schedule as long as its trainer.epochs (scheduler.epochs null) trained on that schedule: more or
    fewer epochs would make it another one, which neither its record nor a rerun of its command would say."""
    name, before = saved.get("scheduler.name", "none"), saved.get("trainer.epochs")
    if name != "none" and saved.get("scheduler.epochs") is None and before is not None and before != epochs:
        raise FolderRefused(
            f"{run_dir} holds a run on a {name} learning-rate schedule over its trainer.epochs={before}; "
            f"trainer.epochs={epochs} would change the schedule it trained on, and its record would no longer say "
            f"what it trained. Continue it with trainer.epochs={before}, or train a new run with trainer.epochs="
            f"{epochs} (scheduler.epochs sets a schedule's length apart from the epochs, from a run's start)"
        )


def schedule_end(saved: dict) -> int | None:
    """The epoch a saved run's learning-rate schedule ends at (scheduler.epochs, else its trainer.epochs): it cannot
    train past it. None on a constant rate."""
    if saved.get("scheduler.name", "none") == "none":
        return None
    return saved.get("scheduler.epochs") or saved.get("trainer.epochs")


def longer(done: int, end: int | None, words: str = "train it longer") -> str:
    """How to train a run that stands at `done` epochs further: to where its schedule ends (`end`), if it can go."""
    if end is not None and done >= end:
        return "its learning-rate schedule ends there, so it cannot train longer: train a new run for more epochs"
    reach = f"trainer.epochs={done + 1}" + (f" to {end}" if end is not None else " or more")
    return f"give {reach} to {words}"


def check_continuable(folder: RunFolder, metrics: dict, state: dict | None, epochs: int, end: int | None) -> None:
    """Refuse a run that cannot continue to `epochs`: trained past them already, or with no last.pt to go on from
    (`end`: where its schedule ends)."""
    run_dir, status, progress = folder.path, metrics.get("status"), (state or {}).get("progress") or {}
    done_epochs = progress.get("epoch", metrics.get("epochs_completed") or 0)
    into = done_epochs + (1 if progress.get("step") else 0)  # an epoch begun counts: its steps are in the curves
    if into > epochs:
        trained = f"trained into epoch {into}" if progress.get("step") else f"trained {plural(done_epochs, 'epoch')}"
        how = longer(done_epochs if status in FINAL_STATUSES else into - 1, end, "continue it")
        raise FolderRefused(
            f"{run_dir} has {trained} already (status {status}); trainer.epochs={epochs} asks for fewer. "
            f"{how[0].upper()}{how[1:]}, or choose a new output folder"
        )
    if state is None:
        what = (
            f"a run trained for {plural(done_epochs, 'epoch')} (status {status})"
            if metrics
            else f"a trained run ({folder.trained_without_record()})"
        )
        raise FolderRefused(
            f"{run_dir} holds {what} but no {LAST} to continue from; restore that file to continue, or {START_OVER}"
        )


def finished_line(run_dir: Path, metrics: dict, epochs: int, end: int | None = None) -> str:
    """One line for a finished run asked for again: what it is, and how to continue it, if it can be (`end`: where
    its learning-rate schedule ends)."""
    acc = "-" if metrics.get("test_acc") is None else f"{metrics['test_acc']:.4f}"
    status = metrics.get("status")
    what = f"{status} after {plural(epochs, 'epoch')} (test acc {acc})"
    if status == "diverged":
        what, how = f"diverged ({metrics.get('error')})", "it cannot continue; rerun with other settings (a lower lr)"
    elif status == "pruned":
        what, how = f"pruned by its search {metrics.get('note') or what}", longer(epochs, end, "continue it")
    else:
        how = longer(epochs, end)
    return f"{run_dir} already holds this run, {what}: not retraining; {how}"
