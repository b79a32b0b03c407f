"""The files of a run folder that outlive the process: metrics.json and checkpoints, written atomically.

Every write goes to a temporary file in the same folder, is flushed to disk, then renamed over the
target, so a kill at any instant leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

METRICS = "metrics.json"
MAX_METRICS_BYTES = 16 << 20  # a metrics.json is a few kB; anything near this is not one
LAST = "checkpoints/last.pt"  # full training state for resuming, rewritten every epoch and on interrupt
BEST = "checkpoints/best.pt"  # model weights of the epoch with the best test accuracy
FINAL = "checkpoints/final.pt"  # model weights at the end of a completed run


class CheckpointError(Exception):
    """A checkpoint exists but cannot be used; the message names the file and the remedy."""


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one rename, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; run files are for everyone to read
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not e.filename:  # name the file the write was for
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def _json_safe(value: Any) -> Any:
    """NaN and infinity become null, so metrics.json stays standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, obj: dict) -> None:
    atomic_write(path, (json.dumps(_json_safe(obj), indent=2) + "\n").encode())


def read_json(path: Path) -> dict | None:
    """A small JSON object from a file, or None when there is none, it is unreadable or not an object."""
    try:
        if not path.is_file():
            return None
        with open(path, "rb") as f:
            data = f.read(MAX_METRICS_BYTES + 1)
        obj = json.loads(data) if len(data) <= MAX_METRICS_BYTES else None
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def write_metrics(run_dir: Path, metrics: dict) -> None:
    write_json(run_dir / METRICS, metrics)


def read_metrics(run_dir: Path) -> dict | None:
    """The run's metrics.json, or None when there is none, it is unreadable, or it is not a JSON object."""
    return read_json(run_dir / METRICS)


CHANCE_MARGIN = 0.02  # best test acc within this of always guessing the most common test class: not learning


def not_learning(metrics: dict) -> bool:
    """The run's best test accuracy stays at chance: it learned nothing, whatever its status says."""
    best, chance = metrics.get("best_test_acc"), metrics.get("chance_test_acc")
    return isinstance(best, (int, float)) and isinstance(chance, (int, float)) and best <= chance + CHANCE_MARGIN


def save_checkpoint(path: Path, obj: Any) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    """Load a training-state checkpoint, refusing a damaged one with a clear message."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only: no code runs
        if not isinstance(state, dict) or not {"model", "optimizer", "rng", "progress", "settings"} <= state.keys():
            raise ValueError("not a lenet_exp training state")
        progress = state["progress"]
        if not isinstance(progress, dict) or not all(
            isinstance(progress.get(k), int) for k in ("epoch", "step", "global_step")
        ):
            raise ValueError("no readable progress in it")
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        reason = reason if len(reason) <= 160 else reason[:160].rsplit(" ", 1)[0] + " ..."
        raise CheckpointError(
            f"{path}: cannot resume from this checkpoint, it is damaged ({reason}); "
            "put back an intact copy to continue, or move the run folder away (or choose a new output folder) to start over"
        ) from None
    return state
