"""Folders a command makes, claims and locks: the lock of a run or sweep folder (an flock the OS releases however the
process dies), a new folder no other command uses, a probe that the disk takes writes, and the removal of what a
refused command made, unused."""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from lenet_exp.errors import ConfigError, FolderRefused
from lenet_exp.words import one_line

_held: dict[str, int] = {}  # folders this process has locked: resolved path -> open descriptor


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
