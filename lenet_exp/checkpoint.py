"""Checkpoints written whole and read back warily: last.pt (the state to continue from) is refused in one line when
it is damaged, not a training state, or at another place in training than the run's metrics.json says."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from lenet_exp.files import atomic_write
from lenet_exp.metrics import METRICS, is_count, is_history
from lenet_exp.words import one_line, plural


class CheckpointError(Exception):
    """A checkpoint exists but cannot be used; the message names the file and the remedy."""


def save_checkpoint(path: Path, obj: Any) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue())


def load_checkpoint(path: Path, metrics: dict | None = None) -> dict:
    """Load a training-state checkpoint, refusing (CheckpointError, one line naming the file) a damaged one: not a
    state, fields of the wrong type or range, or a place in training that metrics.json (`metrics`) contradicts."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only: no code runs
        if not isinstance(state, dict) or not {"model", "optimizer", "rng", "progress", "settings"} <= state.keys():
            raise ValueError("not a lenet_exp training state")
        check_state(state, metrics or {})
    except Exception as e:
        reason = one_line((str(e).strip() or type(e).__name__).splitlines()[0], 160)
        raise CheckpointError(
            f"{path}: cannot resume from this checkpoint, it is damaged ({reason}); "
            "put back an intact copy to continue, or move the run folder away (or choose a new output folder) "
            "to start over"
        ) from None
    return state


def check_state(state: dict, metrics: dict) -> None:
    """ValueError when a training state's fields are not what a run saves, or its epoch is not where metrics.json says
    the run stands (the checkpoint is written just before metrics.json, so it may be one epoch ahead)."""
    progress = state["progress"]
    if not isinstance(state["settings"], dict) or not isinstance(state["model"], dict):
        raise ValueError("its settings or weights are not a mapping")
    if not isinstance(progress, dict) or not all(is_count(progress.get(k)) for k in ("epoch", "step", "global_step")):
        raise ValueError("no readable progress in it (epoch, step, global_step: counts from 0)")
    epoch, history = progress["epoch"], progress.get("history")
    if not isinstance(history, dict) or not history or not is_history(history):
        raise ValueError("no readable history in it")
    if lengths := {len(h) for h in history.values()} - {epoch}:
        raise ValueError(f"progress.epoch={epoch}, but its history holds {plural(max(lengths), 'epoch')}")
    done = metrics.get("epochs_completed")
    if done is not None and not done <= epoch <= done + 1:
        raise ValueError(f"progress.epoch={epoch}, but {METRICS} says {plural(done, 'epoch')} completed")
