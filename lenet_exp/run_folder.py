"""One folder, one run: the object that owns a run folder's files, each with one typed reader.

A run folder keeps one run's true record: `.hydra/` (its settings, written once the checks pass), metrics.json
(status and figures), checkpoints/last.pt (the state to continue from), best.pt and final.pt (weights),
TensorBoard events and train.log. Every file is written whole (a temporary file, fsync, rename), so a kill leaves the
old file or the new. Whether and how a run continues in it is resume.py's to decide.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lenet_exp.checkpoint import save_checkpoint
from lenet_exp.errors import FolderRefused
from lenet_exp.files import DamagedRecord, atomic_write, write_json
from lenet_exp.folders import in_use, locked
from lenet_exp.logger import end_session
from lenet_exp.metrics import METRICS, read_metrics
from lenet_exp.settings import all_settings
from lenet_exp.words import one_line

RECORD = ".hydra"  # config.yaml, hydra.yaml, overrides.yaml: what the run in this folder was asked to do
LAST = "checkpoints/last.pt"  # full training state for resuming, rewritten every epoch and on interrupt
BEST = "checkpoints/best.pt"  # model weights of the best epoch (by validation accuracy, else test accuracy)
FINAL = "checkpoints/final.pt"  # model weights at the end of a completed run
# with events.out.tfevents.*: all a run writes (confusion.png and evaluation.json: lenet_exp.evaluate's)
RUN_FILES = (RECORD, METRICS, "checkpoints", "train.log", "confusion.png", "evaluation.json")
START_OVER = "move the folder away (or choose a new output folder) to start over"


class RunFolder:
    """A run's folder and every file of it: one owner for its lock, plan, record, metrics.json and checkpoints."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def metrics(self) -> dict | None:
        """metrics.json, typed (see read_metrics); None when there is none, DamagedRecord when it is no run's."""
        return read_metrics(self.path)

    def recorded_status(self) -> str | None:
        """The status metrics.json holds (None without a readable one); when the folder took no more writes
        (read-only, say), it still holds an earlier state, and only the sweep folder can record the end."""
        try:
            return (self.metrics() or {}).get("status")
        except DamagedRecord:
            return None

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.path / METRICS, metrics)

    def live_metrics(self) -> dict | None:
        """metrics.json as it stands; a `running` that no process backs shows as `interrupted` (it was killed)."""
        metrics = self.metrics()
        if metrics and metrics["status"] == "running" and not in_use(self.path):
            error = metrics.get("error") or "the process ended without a word (killed?); rerun to continue"
            return {**metrics, "status": "interrupted", "error": error}
        return metrics

    def settle(self) -> bool:
        """Write down what live_metrics shows: a `running` record that no process backs (its process was killed, a
        worker's pool broke) becomes `interrupted` in metrics.json, under the folder's lock. True when it did."""
        try:
            with locked(self.path):
                metrics = self.metrics()
                if not metrics or metrics["status"] != "running":
                    return False
                self.record_end(metrics.get("error") or "its process ended without a word (killed?)", "interrupted")
                return True
        except (FolderRefused, DamagedRecord, OSError):
            return False  # another process holds it (and keeps its own record), or its record is not a run's

    def record_end(self, error: str, status: str = "failed") -> None:
        """Mark the run failed (or interrupted) with a one-line reason, keeping its figures so far; if even that fails
        (a full disk), the lock's release tells the summary."""
        try:
            metrics = self.metrics() or {}
        except DamagedRecord:
            metrics = {}
        figures = {
            "epochs_completed": 0,
            "steps_completed": 0,
            **metrics,
            "status": status,
            "error": one_line(error),  # whole: its remedy comes last
        }
        with contextlib.suppress(OSError):
            self.write_metrics(figures)
            end_session(self.path, status)  # TensorBoard's HParams says what metrics.json says

    def save(self, name: str, obj: Any) -> None:
        """A checkpoint (LAST, BEST or FINAL), written whole."""
        save_checkpoint(self.path / name, obj)

    def write_record(self, cfg: DictConfig, hydra_cfg: DictConfig | None = None) -> None:
        """`.hydra/config.yaml`, `hydra.yaml` and `overrides.yaml` as Hydra writes them, once the checks have passed."""
        record = self.path / RECORD
        atomic_write(record / "config.yaml", OmegaConf.to_yaml(cfg).encode())
        if hydra_cfg is not None:
            atomic_write(record / "hydra.yaml", OmegaConf.to_yaml(hydra_cfg).encode())
            atomic_write(record / "overrides.yaml", OmegaConf.to_yaml(hydra_cfg.hydra.overrides.task).encode())
        elif not (record / "overrides.yaml").exists():
            atomic_write(record / "overrides.yaml", b"[]\n")

    def saved_config(self) -> dict | None:
        """The config recorded in `.hydra/config.yaml` as flat settings (settings.all_settings), or None when there is
        no record."""
        path = self.path / RECORD / "config.yaml"
        if not path.is_file():
            return None
        try:
            saved = OmegaConf.load(path)
            try:
                return all_settings(OmegaConf.to_container(saved, resolve=True))
            except Exception:  # an interpolation into the hydra node, which config.yaml does not hold
                return all_settings(OmegaConf.to_container(saved, resolve=False))
        except Exception as e:
            raise FolderRefused(
                f"{path}: unreadable ({one_line(e, 200)}); move the folder away or choose another"
            ) from None

    def record(self) -> dict:
        """metrics.json ({} when there is none); refused when it is there but is no run's record."""
        try:
            return self.metrics() or {}
        except DamagedRecord:
            raise FolderRefused(
                f"{self.path / METRICS} is unreadable or not a run's record, so what this folder holds cannot be told; "
                f"put back an intact copy, or {START_OVER}"
            ) from None

    def trained_without_record(self) -> str | None:
        """With no metrics.json to tell, traces of training: saved weights, or curves. (With one, it tells: a run that
        failed before its first checkpoint, a full disk say, may have left best.pt and still starts over.)"""
        if (self.path / METRICS).exists():
            return None
        for name in (BEST, FINAL):
            if (self.path / name).exists():
                return name
        if any(p.stat().st_size for p in self.path.glob("events.out.tfevents.*")):
            return "TensorBoard curves"
        return None

    def check_holds_only_a_run(self) -> None:
        """Refuse a folder that holds something other than a run (a sweep, a project, someone's files)."""
        if (self.path / "multirun.yaml").exists():
            raise FolderRefused(
                f"{self.path} holds a sweep, not a single run; resume one of its job folders, "
                "or choose a new output folder"
            )
        others = sorted(
            p.name
            for p in self.path.iterdir()
            if p.name not in RUN_FILES and not p.name.startswith("events.out.tfevents.")
        )
        if others:
            listed = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise FolderRefused(f"{self.path} holds other files ({listed}), not a run; choose an empty or new folder")
