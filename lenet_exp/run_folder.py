"""One folder, one run: the object that owns a run folder's lock, checks, record, metrics.json and checkpoints.

A run folder keeps one run's true record: `.hydra/` (its settings, written once the checks pass), metrics.json
(status and figures), checkpoints/last.pt (the state to continue from), best.pt and final.pt (weights),
TensorBoard events and train.log. A command takes the folder's lock (an flock the OS releases however the
process dies), checks that the record belongs to the run it was asked for, and writes nothing before both
pass. Every file is written whole (a temporary file, fsync, rename), so a kill leaves the old file or the new.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import math
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from lenet_exp.config import ConfigError
from lenet_exp.words import one_line, plural

RECORD = ".hydra"  # config.yaml, hydra.yaml, overrides.yaml: what the run in this folder was asked to do
METRICS = "metrics.json"  # status and figures, rewritten every epoch
LAST = "checkpoints/last.pt"  # full training state for resuming, rewritten every epoch and on interrupt
BEST = "checkpoints/best.pt"  # model weights of the best epoch (by validation accuracy, else test accuracy)
FINAL = "checkpoints/final.pt"  # model weights at the end of a completed run
RUN_FILES = (RECORD, METRICS, "checkpoints", "train.log")  # with events.out.tfevents.*: all a run writes
MAX_RECORD_BYTES = 16 << 20  # a metrics.json is a few kB; anything near this is not one
# Keys that may change between an interrupted try and its resumption: none of them changes the figures.
# (Not device.threads: on the CPU the thread count changes the order of floating-point sums, and so the figures.)
RESUMABLE_CHANGES = (
    "trainer.epochs",
    "trainer.progress",
    "data.root",
    "data.download",
    "device.name",
    "device.eval_batch_size",
)
# a rerun with the same epochs does not train these again (pruned: trained all it was asked, then left by its search)
FINAL_STATUSES = ("completed", "diverged", "pruned")
CHANCE_MARGIN = 0.02  # best test acc within this of always guessing the most common test class: not learning
_held: dict[str, int] = {}  # folders this process has locked: resolved path -> open descriptor


class FolderRefused(ConfigError):
    """This folder's record belongs to another run, or another process writes there: nothing was written."""


class CheckpointError(Exception):
    """A checkpoint exists but cannot be used; the message names the file and the remedy."""


class DamagedRecord(ValueError):
    """A metrics.json that is there but is not a run's record; the message says what is wrong with it."""


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one rename, so readers never see a partial file; an error names `path`, never the
    temporary file."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; run files are for everyone to read
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def _json_safe(value: Any) -> Any:
    """NaN and infinity become null, so the files stay standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, obj: dict) -> None:
    atomic_write(path, (json.dumps(_json_safe(obj), indent=2) + "\n").encode())


def load_json(path: Path) -> dict | None:
    """A small JSON object from a regular file; None when there is none; DamagedRecord when it is not one."""
    if not path.exists() and not path.is_symlink():
        return None
    if not path.is_file():  # a folder, a pipe, a broken link: never opened, so never waited on
        raise DamagedRecord(f"{path.name}: not a regular file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_RECORD_BYTES + 1)
        if len(data) > MAX_RECORD_BYTES:
            raise ValueError(f"larger than {MAX_RECORD_BYTES >> 20} MB")
        obj = json.loads(data)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:  # RecursionError: nested too deep
        raise DamagedRecord(f"{path.name}: {one_line(e, 160)}") from None
    if not isinstance(obj, dict):
        raise DamagedRecord(f"{path.name}: not a JSON object")
    return obj


def read_json(path: Path) -> dict | None:
    """A small JSON object from a file, or None when there is none, it is unreadable or not an object."""
    try:
        return load_json(path)
    except DamagedRecord:
        return None


YAML_ERRORS = (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError)


def load_yaml(path: Path) -> Any:
    """A YAML file Hydra wrote (`.hydra/*.yaml`, multirun.yaml) as plain data, interpolations left as text; read with
    the C loader where there is one, as a sweep's summary reads every job's record after each job. YAML_ERRORS when
    unreadable."""
    return yaml.load(Path(path).read_bytes(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def select(data: Any, key: str) -> Any:
    """`data.val_size` of plain nested mappings (None where a part is missing)."""
    for part in key.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _number(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))


def _count(v: Any) -> bool:
    return v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)


def _history(v: Any) -> bool:
    return v is None or (isinstance(v, dict) and all(isinstance(h, list) and all(map(_number, h)) for h in v.values()))


FIELD_TYPES = {  # what a run writes in metrics.json, and so what every reader may rely on
    "status": lambda v: isinstance(v, str),
    "epochs_completed": _count,
    "steps_completed": _count,
    **{k: _number for k in ("test_acc", "best_test_acc", "train_loss", "train_acc", "examples_per_sec")},
    **{k: _number for k in ("val_acc", "best_val_acc")},
    "chosen_on": lambda v: v in (None, "val_acc", "test_acc"),
    "best_epoch": lambda v: v is None or _count(v),
    "chance_test_acc": _number,
    "cpu_threads": _count,
    "error": lambda v: v is None or isinstance(v, str),
    "note": lambda v: v is None or isinstance(v, str),
    "history": _history,
}


def read_metrics(run_dir: Path) -> dict | None:
    """The run's metrics.json with every field of the type a run writes; None when there is none.
    DamagedRecord when it is there but is not a run's record."""
    metrics = load_json(Path(run_dir) / METRICS)
    for field, ok in FIELD_TYPES.items():
        if metrics is not None and not ok(metrics.get(field)):
            raise DamagedRecord(f"{METRICS}: {field} is {metrics.get(field)!r:.40}, not what a run writes there")
    return metrics


def chosen_on(metrics: dict) -> str:
    """The figure that chooses among a run's epochs and among runs: `val_acc` where the run held out a validation
    split (data.val_size), else `test_acc` (then the chosen figure is optimistic)."""
    return metrics.get("chosen_on") or "test_acc"


def not_learning(metrics: dict) -> bool:
    """The run's best test accuracy stays at chance: it learned nothing, whatever its status says."""
    best, chance = metrics.get("best_test_acc"), metrics.get("chance_test_acc")  # typed: see read_metrics
    return best is not None and chance is not None and best <= chance + CHANCE_MARGIN


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
    if not isinstance(progress, dict) or not all(_count(progress.get(k)) for k in ("epoch", "step", "global_step")):
        raise ValueError("no readable progress in it (epoch, step, global_step: counts from 0)")
    epoch, history = progress["epoch"], progress.get("history")
    if not isinstance(history, dict) or not history or not _history(history):
        raise ValueError("no readable history in it")
    if lengths := {len(h) for h in history.values()} - {epoch}:
        raise ValueError(f"progress.epoch={epoch}, but its history holds {plural(max(lengths), 'epoch')}")
    done = metrics.get("epochs_completed")
    if done is not None and not done <= epoch <= done + 1:
        raise ValueError(f"progress.epoch={epoch}, but {METRICS} says {plural(done, 'epoch')} completed")


def first_missing(path: Path) -> Path | None:
    """The top folder of `path` that does not exist yet (what making `path` would create), or None."""
    path, missing = Path(os.path.abspath(path)), None  # `new/../run` makes `run`, not `new`
    while not path.exists() and path != path.parent:
        missing, path = path, path.parent
    return missing


def remove_empty(folder: Path, up_to: Path | None) -> None:
    """Remove `folder` and its parents up to `up_to` while they are empty and no process holds them: what a refused
    command made, unused (a folder another process has locked meanwhile is its folder now)."""
    if up_to is None:
        return
    folder, up_to = Path(os.path.abspath(folder)), Path(os.path.abspath(up_to))
    while True:
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = None  # already gone (the run's own cleanup): on to its parent
        except OSError:
            return
        if fd is not None:
            try:
                if not _try_lock(fd, fcntl.LOCK_EX, patience=0):
                    return
                folder.rmdir()  # only an empty folder goes, and only under its lock
            except OSError:
                return
            finally:
                os.close(fd)
        if folder == up_to or folder == folder.parent:
            return
        folder = folder.parent


def make_folder(path: Path, key: str) -> Path:
    """Make the folder (and its parents) and write a little into it, so a disk that cannot take a run is refused now."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path) as probe:
            probe.write(b"\0" * 65536)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as e:
        raise ConfigError(
            f"{key}={path}: cannot write there ({e.strerror}); free some space or give another folder"
        ) from None
    return path


def claim_new_folder(path: Path) -> Path:
    """Make a folder no other command uses: `path`, else `path-2`, `path-3`, ... (runs started in the same second)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"{path.parent}: cannot make this folder ({e.strerror}); give hydra.run.dir or hydra.sweep.dir"
        ) from None
    for n in range(1, 10_000):
        candidate = path if n == 1 else path.with_name(f"{path.name}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return make_folder(candidate, "hydra.run.dir")
    raise ConfigError(f"{path}: no free folder name beside it; give hydra.run.dir or hydra.sweep.dir")


def _holder(folder: Path) -> str:
    """Which process holds a folder's lock, from the kernel's lock table where there is one."""
    try:
        st = folder.stat()
        inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if "->" not in fields and len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == inode:
                cmd = Path(f"/proc/{fields[4]}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                return f"process {fields[4]}" + (f" ({one_line(cmd, 160)})" if cmd.strip() else "")
    except (OSError, ValueError):
        pass
    return "another process"


def _try_lock(fd: int, mode: int, patience: float) -> bool:
    """flock with a short patience, so a summary peeking at the lock never turns a run away."""
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def _lock(folder: Path, patience: float) -> int | None:
    """A descriptor holding the folder's exclusive lock (the folder made if missing), or None when another process
    holds it. A folder removed or replaced while this one waited is locked afresh, so the lock is on the folder."""
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
        if not _try_lock(fd, fcntl.LOCK_EX, patience):
            os.close(fd)
            return None
        try:
            if os.path.samestat(os.stat(folder), os.fstat(fd)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextmanager
def locked(folder: Path):
    """Hold the folder's exclusive lock for the block; refuse at once when another process holds it.

    A folder found empty is removed again, under the lock, when the block fails, so a refused command leaves no
    empty run folder behind.
    """
    key = str(folder.resolve())
    if key in _held:  # this process holds it already (a run inside a sweep that locked it)
        yield
        return
    fd = _lock(folder, patience=1.0)
    if fd is None:
        raise FolderRefused(f"{folder} is in use by {_holder(folder)}; wait for it to end, or choose another folder")
    was_empty = not any(folder.iterdir())
    _held[key] = fd
    try:
        yield
    except BaseException:
        if was_empty and not any(folder.iterdir()):
            folder.rmdir()
        raise
    finally:
        _held.pop(key, None)
        os.close(fd)  # releases the lock


def in_use(folder: Path) -> bool:
    """Whether a process holds the folder's lock now (this process included)."""
    if str(folder.resolve()) in _held:
        return True
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return not _try_lock(fd, fcntl.LOCK_SH, patience=0)
    finally:
        os.close(fd)


def all_settings(cfg: DictConfig | dict) -> dict:
    """A run's config as a flat dict (`optimizer.lr` -> 0.9), without Hydra's node."""
    if not isinstance(cfg, dict):  # the task's part only: Hydra's node holds job-time values (hydra.job.num)
        cfg = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    return {k: v for k, v in _flatten(cfg).items() if not k.startswith("hydra")}


def settings_of(cfg: DictConfig | dict) -> dict:
    """A run's settings as a flat dict, without Hydra's keys and those a resumption may change."""
    return {k: v for k, v in all_settings(cfg).items() if not k.startswith(RESUMABLE_CHANGES)}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


# keys added since an earlier version saved its runs, at the value that trains as that version did
ADDED_KEYS = {"scheduler.name": "none", "scheduler.epochs": None, "data.val_size": 0}


def first_difference(then: dict, now: dict) -> str | None:
    """`key=<there> there, <now> now` for the first key whose value differs, or None. A run saved before a key was
    added holds it at the value that trains as before."""
    saved, then = then, {**ADDED_KEYS, **then}
    changed = sorted(k for k in then.keys() | now.keys() if then.get(k, "<unset>") != now.get(k, "<unset>"))
    if not changed:
        return None
    k = changed[0]
    shown = lambda v: json.dumps(v, default=str)  # noqa: E731  as a user types a value: null, true, 0.1, "relu"
    added = (
        f" (a key added since; {k}={shown(ADDED_KEYS[k])} continues it as it was)"
        if k in ADDED_KEYS and k not in saved
        else ""
    )
    return f"{k}={shown(then.get(k, '<unset>'))} there, {shown(now.get(k, '<unset>'))} now{added}"


@dataclass
class Plan:
    """What to do in a run folder: start afresh, continue from `state`, or nothing (`done` holds its figures)."""

    state: dict | None = None  # last.pt's contents, to continue from
    done: dict | None = None  # metrics.json of a finished run asked for again
    note: str = ""  # one line: how this try starts; for a finished run, what it is and how to continue it


START_OVER = "move the folder away (or choose a new output folder) to start over"


class RunFolder:
    """A run's folder and every file of it: one owner for its lock, plan, record, metrics.json and checkpoints."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def metrics(self) -> dict | None:
        """metrics.json, typed (see read_metrics); None when there is none."""
        return read_metrics(self.path)

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.path / METRICS, metrics)

    def live_metrics(self) -> dict | None:
        """metrics.json as it stands; a `running` that no process backs shows as `interrupted` (it was killed)."""
        metrics = self.metrics()
        if metrics and metrics["status"] == "running" and not in_use(self.path):
            error = metrics.get("error") or "the process ended without a word (killed?); rerun to continue"
            return {**metrics, "status": "interrupted", "error": error}
        return metrics

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

    def saved_settings(self) -> dict | None:
        """The settings recorded in `.hydra/config.yaml`, or None when there is no record."""
        path = self.path / RECORD / "config.yaml"
        if not path.is_file():
            return None
        try:
            saved = OmegaConf.load(path)
            try:
                return settings_of(OmegaConf.to_container(saved, resolve=True))
            except Exception:  # an interpolation into the hydra node, which config.yaml does not hold
                return settings_of(OmegaConf.to_container(saved, resolve=False))
        except Exception as e:
            raise FolderRefused(
                f"{path}: unreadable ({one_line(e, 200)}); move the folder away or choose another"
            ) from None

    def _record(self) -> dict:
        """metrics.json ({} when there is none); refused when it is there but is no run's record."""
        try:
            return self.metrics() or {}
        except DamagedRecord:
            raise FolderRefused(
                f"{self.path / METRICS} is unreadable or not a run's record, so what this folder holds cannot be told; "
                f"put back an intact copy, or {START_OVER}"
            ) from None

    def _trained_without_record(self) -> str | None:
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

    def _check_holds_only_a_run(self) -> None:
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

    def plan(self, settings: dict, epochs: int) -> Plan:
        """Decide from the record how this run starts; refuse (FolderRefused) when the record is not this run's.

        Refused: other settings; fewer epochs than trained; a record of training with no last.pt to continue from.
        """
        metrics, run_dir = self._record(), self.path
        state = load_checkpoint(run_dir / LAST, metrics) if (run_dir / LAST).exists() else None
        steps = metrics.get("epochs_completed") or metrics.get("steps_completed")
        if state is None and not steps and not self._trained_without_record():
            self._check_holds_only_a_run()
            note = f"the earlier try in {run_dir} left no checkpoint (status {metrics.get('status')}): starting over"
            return Plan(note=note if metrics else "")
        for then in (self.saved_settings(), state and state.get("settings")):
            if then is not None and (diff := first_difference(then, settings)):
                raise FolderRefused(
                    f"{run_dir} holds a run with other settings ({diff}); rerun with the same overrides, "
                    "or choose a new output folder"
                )
        progress = (state or {}).get("progress") or {}
        done_epochs = progress.get("epoch", metrics.get("epochs_completed") or 0)
        into = done_epochs + (1 if progress.get("step") else 0)  # an epoch begun counts: its steps are in the curves
        status = metrics.get("status")
        if status in FINAL_STATUSES and (status == "diverged" or done_epochs == epochs):
            return Plan(done=metrics, note=finished_line(run_dir, metrics, done_epochs))
        if into > epochs:
            trained = (
                f"trained into epoch {into}" if progress.get("step") else f"trained {plural(done_epochs, 'epoch')}"
            )
            more = done_epochs + 1 if status in FINAL_STATUSES else into
            raise FolderRefused(
                f"{run_dir} has {trained} already (status {status}); trainer.epochs={epochs} asks for fewer. "
                f"Give trainer.epochs={more} or more to continue it, or choose a new output folder"
            )
        if state is None:
            what = (
                f"a run trained for {plural(done_epochs, 'epoch')} (status {status})"
                if metrics
                else f"a trained run ({self._trained_without_record()})"
            )
            raise FolderRefused(
                f"{run_dir} holds {what} but no {LAST} to continue from; restore that file to continue, or {START_OVER}"
            )
        if into == epochs and not progress.get("step"):  # killed after its last epoch, before its final files
            return Plan(state=state, note=f"finishing in {run_dir}: its {plural(epochs, 'epoch')} were trained already")
        step = f", step {progress['step']}" if progress.get("step") else ""
        at = f"epoch {done_epochs + 1}{step} (global step {progress.get('global_step', 0)})"
        return Plan(state=state, note=f"resuming in {run_dir} from {at}")


def finished_line(run_dir: Path, metrics: dict, epochs: int) -> str:
    """One line for a finished run asked for again: what it is, and how to continue it, if it can be."""
    acc = "-" if metrics.get("test_acc") is None else f"{metrics['test_acc']:.4f}"
    status, more = metrics.get("status"), f"trainer.epochs={epochs + 1} or more"
    what = f"{status} after {plural(epochs, 'epoch')} (test acc {acc})"
    if status == "diverged":
        what, how = f"diverged ({metrics.get('error')})", "it cannot continue; rerun with other settings (a lower lr)"
    elif status == "pruned":
        what, how = f"pruned by its search {metrics.get('note') or what}", f"give {more} to continue it"
    else:
        how = f"give {more} to train it longer"
    return f"{run_dir} already holds this run, {what}: not retraining; {how}"
