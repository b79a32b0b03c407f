"""One folder, one run: the lock a run holds while it writes, the checks made before anything is written, the record.

A run folder keeps one run's true record: `.hydra/` (its settings, written here once the checks pass),
metrics.json (status and figures), checkpoints/last.pt (the state to continue from), TensorBoard events
and train.log. A command takes the folder's lock, then checks that the folder's record belongs to the run
it was asked for, and writes nothing before both pass, so a refused command leaves every file as it was.
The lock is an flock on the folder itself: the OS releases it when the process dies, however it dies.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lenet_exp import run_files
from lenet_exp.config import ConfigError

RECORD = ".hydra"  # config.yaml, hydra.yaml, overrides.yaml: what the run in this folder was asked to do
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
FINAL_STATUSES = ("completed", "diverged")  # a rerun with the same epochs does not train these again
_held: dict[str, int] = {}  # folders this process has locked: resolved path -> open descriptor


class FolderRefused(ConfigError):
    """This folder's record belongs to another run, or another process writes there: nothing was written."""


def first_missing(path: Path) -> Path | None:
    """The top folder of `path` that does not exist yet (what making `path` would create), or None."""
    path, missing = Path(os.path.abspath(path)), None  # `new/../run` makes `run`, not `new`
    while not path.exists() and path != path.parent:
        missing, path = path, path.parent
    return missing


def remove_empty(folder: Path, up_to: Path | None) -> None:
    """Remove `folder` and its parents up to `up_to` while they are empty: what a refused command made and left unused."""
    if up_to is None:
        return
    folder, up_to = Path(os.path.abspath(folder)), Path(os.path.abspath(up_to))
    while True:
        try:
            folder.rmdir()  # only an empty folder goes
        except FileNotFoundError:
            pass  # already gone (the run's own cleanup): on to its parent
        except OSError:
            return
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
                pid = fields[4]
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                cmd = cmd if len(cmd) <= 160 else cmd[:160].rsplit(" ", 1)[0] + " ..."
                return f"process {pid}" + (f" ({cmd})" if cmd else "")
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


@contextmanager
def locked(folder: Path):
    """Hold the folder's exclusive lock for the block; refuse at once when another process holds it.

    A folder this block made or found empty is removed again when the block fails, so a refused
    command leaves no empty run folder behind.
    """
    key = str(folder.resolve())
    if key in _held:  # this process holds it already (a run inside a sweep that locked it)
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    was_empty = not any(folder.iterdir())
    fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if not _try_lock(fd, fcntl.LOCK_EX, patience=1.0):
            raise FolderRefused(
                f"{folder} is in use by {_holder(folder)}; wait for it to end, or choose another folder"
            )
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


def first_difference(then: dict, now: dict) -> str | None:
    """`key=<there> there, <now> now` for the first key whose value differs, or None."""
    changed = sorted(k for k in then.keys() | now.keys() if then.get(k, "<unset>") != now.get(k, "<unset>"))
    if not changed:
        return None
    k = changed[0]
    return f"{k}={then.get(k, '<unset>')!r} there, {now.get(k, '<unset>')!r} now"


def saved_settings(run_dir: Path) -> dict | None:
    """The settings of the run recorded in `.hydra/config.yaml`, or None when there is no record."""
    path = run_dir / RECORD / "config.yaml"
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
            f"{path}: unreadable ({' '.join(str(e).split())[:200]}); move the folder away or choose another"
        ) from None


@dataclass
class Plan:
    """What to do in a run folder: start afresh, continue from `state`, or nothing (`done` holds its figures)."""

    state: dict | None = None  # last.pt's contents, to continue from
    done: dict | None = None  # metrics.json of a finished run asked for again
    note: str = ""  # one line for the log: how this try starts


def _record(run_dir: Path) -> dict:
    """metrics.json as a dict ({} when there is none); refused when it is there but is no run's record."""
    path = run_dir / run_files.METRICS
    if not path.exists() and not path.is_symlink():
        return {}
    metrics = run_files.read_metrics(run_dir)
    counts = (
        [metrics.get(k) or 0 for k in ("epochs_completed", "steps_completed")] if isinstance(metrics, dict) else [None]
    )
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
        raise FolderRefused(
            f"{path} is unreadable or not a run's record, so what this folder holds cannot be told; put back an intact copy, "
            "or move the folder away (or choose a new output folder) to start over"
        )
    return metrics


def _trained_without_record(run_dir: Path) -> str | None:
    """With no metrics.json to tell, traces of training: saved weights, or curves. (With one, it tells: a run that
    failed before its first checkpoint, a full disk say, may have left best.pt and still starts over.)"""
    if (run_dir / run_files.METRICS).exists():
        return None
    for name in (run_files.BEST, run_files.FINAL):
        if (run_dir / name).exists():
            return name
    if any(p.stat().st_size for p in run_dir.glob("events.out.tfevents.*")):
        return "TensorBoard curves"
    return None


def plan_run(run_dir: Path, settings: dict, epochs: int) -> Plan:
    """Decide from the folder's record how this run starts; refuse (FolderRefused) when the record is not this run's.

    Refused: other settings; fewer epochs than already trained; a record of training with no last.pt to continue from.
    """
    metrics = _record(run_dir)
    last = run_dir / run_files.LAST
    state = run_files.load_checkpoint(last) if last.exists() else None
    trained = (
        state is not None
        or metrics.get("epochs_completed")
        or metrics.get("steps_completed")
        or _trained_without_record(run_dir)
    )
    if not trained:
        _check_holds_only_a_run(run_dir)
        note = (
            f"the earlier try in {run_dir} left no checkpoint (status {metrics.get('status')}): starting over"
            if metrics
            else ""
        )
        return Plan(note=note)
    for then in (saved_settings(run_dir), state and state.get("settings")):
        if then is not None and (diff := first_difference(then, settings)):
            raise FolderRefused(
                f"{run_dir} holds a run with other settings ({diff}); rerun with the same overrides, or choose a new output folder"
            )
    progress = (state or {}).get("progress") or {}
    done_epochs = progress.get("epoch", metrics.get("epochs_completed") or 0)
    into = done_epochs + (1 if progress.get("step") else 0)  # an epoch begun counts: its steps are in the curves
    status = metrics.get("status")
    if status in FINAL_STATUSES and (status == "diverged" or done_epochs == epochs):
        return Plan(done=metrics)
    if into > epochs:
        trained = f"trained into epoch {into}" if progress.get("step") else f"trained {done_epochs} epochs"
        raise FolderRefused(
            f"{run_dir} has {trained} already; trainer.epochs={epochs} asks for fewer. "
            f"Give trainer.epochs={into} or more to continue it, or choose a new output folder"
        )
    if state is None:
        what = (
            f"a run trained for {done_epochs} epochs (status {status})"
            if metrics
            else f"a trained run ({_trained_without_record(run_dir)})"
        )
        raise FolderRefused(
            f"{run_dir} holds {what} but no {run_files.LAST} to continue from; "
            "restore that file to continue, or move the folder away (or choose a new output folder) to start over"
        )
    step = f", step {progress['step']}" if progress.get("step") else ""
    return Plan(
        state=state,
        note=f"resuming in {run_dir} from epoch {done_epochs + 1}{step} (global step {progress.get('global_step', 0)})",
    )


RUN_FILES = (RECORD, run_files.METRICS, "checkpoints", "train.log")


def _check_holds_only_a_run(run_dir: Path) -> None:
    """Refuse a folder that holds something other than a run (a sweep, a project, someone's files)."""
    if (run_dir / "multirun.yaml").exists():
        raise FolderRefused(
            f"{run_dir} holds a sweep, not a single run; resume one of its job folders, or choose a new output folder"
        )
    others = sorted(
        p.name for p in run_dir.iterdir() if p.name not in RUN_FILES and not p.name.startswith("events.out.tfevents.")
    )
    if others:
        listed = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise FolderRefused(f"{run_dir} holds other files ({listed}), not a run; choose an empty or new folder")


def write_record(run_dir: Path, cfg: DictConfig, hydra_cfg: DictConfig | None = None) -> None:
    """`.hydra/config.yaml`, `hydra.yaml` and `overrides.yaml` as Hydra writes them, once the checks have passed."""
    record = run_dir / RECORD
    run_files.atomic_write(record / "config.yaml", OmegaConf.to_yaml(cfg).encode())
    if hydra_cfg is not None:
        run_files.atomic_write(record / "hydra.yaml", OmegaConf.to_yaml(hydra_cfg).encode())
        run_files.atomic_write(record / "overrides.yaml", OmegaConf.to_yaml(hydra_cfg.hydra.overrides.task).encode())
    elif not (record / "overrides.yaml").exists():
        run_files.atomic_write(record / "overrides.yaml", b"[]\n")


def record_failure(run_dir: Path, error: str, status: str = "failed") -> None:
    """Mark the run in metrics.json as failed (or interrupted) with a one-line reason, keeping its figures so far."""
    metrics = run_files.read_metrics(run_dir) or {"epochs_completed": 0, "steps_completed": 0}
    run_files.write_metrics(run_dir, {**metrics, "status": status, "error": " ".join(error.split())[:500]})


def live_status(run_dir: Path, metrics: dict) -> dict:
    """metrics.json as it stands, with a `running` no process backs shown as `interrupted` (the process was killed)."""
    if metrics.get("status") == "running" and not in_use(run_dir):
        return {
            **metrics,
            "status": "interrupted",
            "error": metrics.get("error") or "the process ended without a word (killed?); rerun to continue",
        }
    return metrics
