"""metrics.json, declared once: its fields and their types (what the run writes, what every reader may rely on), the
statuses a run ends in, the figure that chooses, and what "not learning" means. The writer builds its record through
`record`, the readers check it with `read_metrics`, and the summary's columns are the figures declared here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lenet_exp.files import DamagedRecord, load_json

METRICS = "metrics.json"
# a run's status: running while a process trains it, then how it ended
STATUSES = ("running", "completed", "interrupted", "diverged", "failed", "pruned")
# a rerun with the same epochs does not train these again (pruned: trained all it was asked, then left by its search)
FINAL_STATUSES = ("completed", "diverged", "pruned")
CHANCE_MARGIN = 0.02  # best test acc within this of always guessing the most common test class: not learning


def is_number(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))


def is_count(v: Any) -> bool:
    return v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)


def is_text(v: Any) -> bool:
    return v is None or isinstance(v, str)


def is_numbers(v: Any) -> bool:
    return v is None or (isinstance(v, list) and all(map(is_number, v)))


def is_history(v: Any) -> bool:
    return v is None or (isinstance(v, dict) and all(is_numbers(h) and h is not None for h in v.values()))


FIELDS = {  # every field a run writes in metrics.json, with the type a reader may rely on
    "status": lambda v: isinstance(v, str),  # one of STATUSES as a run writes it
    "epochs_completed": is_count,
    "steps_completed": is_count,
    "train_loss": is_number,
    "train_acc": is_number,
    "test_acc": is_number,
    "best_test_acc": is_number,
    "val_acc": is_number,  # with a validation split (data.val_size) only, as best_val_acc
    "best_val_acc": is_number,
    "chosen_on": lambda v: v in (None, "val_acc", "test_acc"),
    "best_epoch": is_count,
    "examples_per_sec": is_number,
    "first_epoch_examples_per_sec": is_number,
    "examples_per_sec_by_epoch": is_numbers,
    "train_seconds": is_number,
    "device": is_text,
    "cpu_threads": is_count,
    "chance_test_acc": is_number,
    "history": is_history,
    "error": is_text,
    "note": is_text,  # where a search left it (pruned)
}
# the figures a summary shows for each job, in its columns' order; the validation ones where a split is held out
VAL_FIGURES = ("val_acc", "best_val_acc")
FIGURES = ("test_acc", "best_test_acc", "train_loss", "train_acc", "epochs_completed", "examples_per_sec")


def record(**fields: Any) -> dict:
    """A metrics.json record from declared fields only (a field not in FIELDS is a bug, not a record)."""
    if unknown := [k for k in fields if k not in FIELDS]:
        raise KeyError(f"{METRICS} has no field {unknown[0]}")
    return fields


def read_metrics(run_dir: Path) -> dict | None:
    """The run's metrics.json with every field of the type a run writes; None when there is none.
    DamagedRecord when it is there but is not a run's record."""
    metrics = load_json(Path(run_dir) / METRICS)
    for field, ok in FIELDS.items():
        if metrics is not None and not ok(metrics.get(field)):
            raise DamagedRecord(f"{METRICS}: {field} is {metrics.get(field)!r:.40}, not what a run writes there")
    return metrics


def chosen_on(figures: dict) -> str:
    """The figure that chooses among a run's epochs and among runs: `val_acc` where the run held out a validation
    split (data.val_size), else `test_acc` (then the chosen figure is optimistic). Of a record, or of a history."""
    if figures.get("chosen_on"):
        return figures["chosen_on"]
    history = figures.get("history") if isinstance(figures.get("history"), dict) else figures
    return "val_acc" if "val_acc" in history else "test_acc"


def figure_at(metrics: dict, epochs: int, key: str | None = None) -> float | None:
    """The run's accuracy after `epochs` epochs on the choosing split (or `key`'s), from its history; None when it did
    not get there (failed, diverged, not run)."""
    history = (metrics.get("history") or {}).get(key or chosen_on(metrics)) or []
    return history[epochs - 1] if len(history) >= epochs and history[epochs - 1] is not None else None


def learning(metrics: dict) -> str:
    """Whether a run learned, by one rule over its whole test history: `never` where its best test accuracy stays
    within CHANCE_MARGIN of chance (guessing the most common class); `collapsed` where it rose above that and ended
    back there; `learned` otherwise (or where the record cannot tell)."""
    chance = metrics.get("chance_test_acc")  # typed: see read_metrics
    history = [a for a in (metrics.get("history") or {}).get("test_acc") or [] if a is not None]
    best = metrics.get("best_test_acc") if metrics.get("best_test_acc") is not None else max(history, default=None)
    if best is None or chance is None:
        return "learned"
    if best <= chance + CHANCE_MARGIN:
        return "never"
    final = metrics.get("test_acc") if metrics.get("test_acc") is not None else (history or [None])[-1]
    return "collapsed" if final is not None and final <= chance + CHANCE_MARGIN else "learned"


def not_learning(metrics: dict) -> bool:
    """The run ends at chance: it never learned, or it learned and collapsed back (learning says which)."""
    return learning(metrics) != "learned"


def learning_note(metrics: dict) -> str:
    """The one note every report gives a run that ends at chance: console, summary.md, summary.csv, HParams."""
    state = learning(metrics)
    if state == "never":
        return "not learning (at chance)"
    if state == "collapsed":
        history = (metrics.get("history") or {}).get("test_acc") or []
        best = max((a for a in history if a is not None), default=metrics.get("best_test_acc"))
        epoch = history.index(best) + 1 if best in history else None
        return f"collapsed to chance after learning (test acc {best:.3f}" + (f" at epoch {epoch})" if epoch else ")")
    return ""


def rank_key(score: float | None, order, complete: bool = True) -> tuple:
    """Sort key, best first: complete before any other, then by score on the choosing split (none last), then by
    `order` (the lower job number wins a tie): how a search ranks its settings and a summary its jobs."""
    return (not complete, score is None, -(score or 0.0), order)
