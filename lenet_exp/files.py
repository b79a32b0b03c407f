"""Files written whole and read back warily: an atomic write (temporary file, fsync, rename), small JSON objects,
the YAML files Hydra writes, and nested settings as dotted keys."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from lenet_exp.words import one_line

MAX_RECORD_BYTES = 16 << 20  # a record (metrics.json, sweep.json) is a few kB; anything near this is not one
YAML_ERRORS = (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError)


class DamagedRecord(ValueError):
    """A JSON record that is there but is not one; the message says what is wrong with it."""


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


def load_yaml(path: Path) -> Any:
    """A YAML file Hydra wrote (`.hydra/*.yaml`, multirun.yaml, a preset) as plain data, interpolations left as text;
    read with the C loader where there is one, as a sweep's summary reads every job's record after each job.
    YAML_ERRORS when unreadable."""
    return yaml.load(Path(path).read_bytes(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def select(data: Any, key: str) -> Any:
    """`data.val_size` of plain nested mappings (None where a part is missing)."""
    for part in key.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def flatten(tree: dict, prefix: str = "") -> dict:
    """Nested mappings as dotted keys (`optimizer.lr` -> 0.9); an empty mapping holds no key."""
    out = {}
    for k, v in tree.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out
