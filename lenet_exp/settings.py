"""A run's settings as plain data: the config without Hydra's node, flattened to dotted keys, the keys a resumption may
change, and the first key on which two records differ (what a folder's refusal names)."""

from __future__ import annotations

import copy
import json

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from lenet_exp.files import flatten

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
# keys added since an earlier version saved its runs, at the value that trains as that version did
ADDED_KEYS = {
    "scheduler.name": "none",
    "scheduler.epochs": None,
    "data.val_size": 0,
    "data.augment": False,
    "model.norm": "none",
    "model.dropout": 0.0,
}


def task_config(cfg: DictConfig) -> DictConfig:
    """The config a task function sees: a copy without Hydra's node, as Hydra hands it to the task."""
    task = copy.deepcopy(cfg)
    if "hydra" in task:
        with read_write(task), open_dict(task):
            del task["hydra"]
    return task


def plain(cfg: DictConfig | dict) -> dict:
    """The task's config as plain data, resolved where it can be (an interpolation into Hydra's node cannot be)."""
    if isinstance(cfg, dict):
        return {k: v for k, v in cfg.items() if k != "hydra"}
    task = task_config(cfg)
    try:
        return OmegaConf.to_container(task, resolve=True)
    except Exception:
        return OmegaConf.to_container(task, resolve=False)


def all_settings(cfg: DictConfig | dict) -> dict:
    """A run's config as a flat dict (`optimizer.lr` -> 0.9), without Hydra's node."""
    return flatten(plain(cfg))


def settings_of(cfg: DictConfig | dict) -> dict:
    """A run's settings as a flat dict, without the keys a resumption may change."""
    return {k: v for k, v in all_settings(cfg).items() if not k.startswith(RESUMABLE_CHANGES)}


def shown(value) -> str:
    """A value as a user types it: null, true, 0.1, "relu"."""
    return json.dumps(value, default=str)


def first_difference(then: dict, now: dict, added: dict | None = None) -> str | None:
    """`key=<there> there, <now> now` for the first key whose value differs, or None. A record saved before a key was
    `added` holds it at the value that trains as before (ADDED_KEYS by default)."""
    added = ADDED_KEYS if added is None else added
    saved, then = then, {**added, **then}
    changed = sorted(k for k in then.keys() | now.keys() if then.get(k, "<unset>") != now.get(k, "<unset>"))
    if not changed:
        return None
    k = changed[0]
    since = ""
    if k in added and k not in saved:
        since = f" (a key added since; {k}={shown(added[k])} continues it as it was)"
    return f"{k}={shown(then.get(k, '<unset>'))} there, {shown(now.get(k, '<unset>'))} now{since}"
