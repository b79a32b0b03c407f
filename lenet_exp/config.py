"""The config, composed: conf/ wherever it is (the source checkout's or the package's copy), composed by Hydra's
compose API for the tests, the benchmark and the Python API, and Hydra's or OmegaConf's refusals turned into
lenet_exp's one line naming the key, the value given and what is allowed (schema.py declares the rules)."""

from __future__ import annotations

import difflib
import re
from dataclasses import fields, is_dataclass
from importlib.resources import files
from pathlib import Path

from hydra import compose, initialize_config_dir, initialize_config_module
from hydra.errors import HydraException
from hydra.version import VersionBase
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException, ValidationError

from lenet_exp.errors import ConfigError
from lenet_exp.files import flatten
from lenet_exp.schema import check_keys, hint

_SOURCE_CONF = Path(__file__).resolve().parent.parent / "conf"
# Run from a source checkout, Hydra reads conf/ at the repo top; installed, the copy shipped in the package.
CONFIG_PATH = str(_SOURCE_CONF) if (_SOURCE_CONF / "config.yaml").is_file() else "pkg://lenet_exp.conf"


def conf_file(relative: str):
    """A file of the config tree (`hparams_search/halving.yaml`), wherever CONFIG_PATH finds it."""
    if CONFIG_PATH.startswith("pkg://"):
        return files("lenet_exp.conf").joinpath(relative)
    return Path(CONFIG_PATH) / relative


def compose_config(overrides: list[str], with_hydra: bool = False) -> DictConfig:
    """The composed config outside the command line (tests, the benchmark), from the same config folder; a key or
    value the schema refuses raises ConfigError. `with_hydra` keeps the `hydra` node as the command would see it."""
    before = VersionBase.instance().getbase()  # process-wide: leave it as it was for whoever runs next
    initialize = initialize_config_module if CONFIG_PATH.startswith("pkg://") else initialize_config_dir
    try:
        with initialize(CONFIG_PATH.removeprefix("pkg://"), version_base="1.3"):
            cfg = compose("config", overrides=overrides, return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException, ValueError, TypeError) as e:  # Hydra raises these too
        raise ConfigError(refusal(e)) from None
    finally:
        VersionBase.instance().version_base = before
    check_keys(cfg)
    return cfg


def group_options() -> dict[str, list[str]]:
    """Each config group (model, optimizer, ...) and its options, read from the config folder; "" holds the primary
    configs (config) that --config-name may name."""
    root = files("lenet_exp.conf") if CONFIG_PATH.startswith("pkg://") else Path(CONFIG_PATH)
    groups = [root, *(d for d in root.iterdir() if d.is_dir() and d.name not in ("hydra", "__pycache__"))]
    return {
        "" if g == root else g.name: sorted(f.name[: -len(".yaml")] for f in g.iterdir() if f.name.endswith(".yaml"))
        for g in groups
    }


def known_keys() -> list[str]:
    """Every key of the default config, dotted (`optimizer.lr`), with the config groups themselves."""
    cfg = OmegaConf.to_container(compose_config([]), resolve=False)
    groups = [g for g in group_options() if g]
    return groups + [k for k in flatten(cfg) if k not in groups]


EXTRAS = {"lenet_parallel": ("parallel", "joblib's"), "lenet_slurm": ("slurm", "submitit's")}  # a launcher's extra


def _plugin_hint(error: Exception) -> str | None:
    """lenet_exp's own Hydra plugins not found: setuptools' default editable install hides them from Hydra's scan, and
    the parallel and Slurm launchers stand on other projects' plugins, which are extras."""
    if found := re.search(r"Could not find 'hydra/launcher/(lenet_parallel|lenet_slurm)'", str(error)):
        extra, whose = EXTRAS[found.group(1)]
        return (
            f"hydra/launcher={extra}: it stands on {whose} Hydra plugin, which is not installed; "
            f'pip install -e ".[{extra}]" --config-settings editable_mode=compat'
        )
    found = re.search(r"Could not find 'hydra/(sweeper|launcher)/(halving|fused)'", str(error))
    return found and (
        f"hydra/{found.group(1)}={found.group(2)}: Hydra cannot find lenet_exp's {found.group(2)} plugin; "
        "reinstall with pip install -e . --config-settings editable_mode=compat (or a plain pip install .)"
    )


def refusal(error: Exception) -> str:
    """Hydra's or OmegaConf's refusal as lenet_exp's one line: a value of the wrong type in its key's rule's words, a
    key without a value, an unknown key with the closest real ones, a missing plugin, else the message on one line."""
    cause = error.__cause__ if isinstance(error.__cause__, ValidationError) else error
    if isinstance(cause, MissingMandatoryValue) and cause.full_key:
        return f"{cause.full_key}: missing; set it in its YAML file under conf/ or on the command line"
    if isinstance(cause, ValidationError) and cause.full_key:
        node, name = cause.parent_node, cause.key
        if isinstance(node, ListConfig):  # an item of a list: the list's own rule
            node, name = node._get_parent(), node._key()
        kind = OmegaConf.get_type(node)
        rules = {f.name: f.metadata["rule"] for f in fields(kind) if "rule" in f.metadata} if is_dataclass(kind) else {}
        if name in rules:
            return f"{cause.full_key}={cause.value!r} is not allowed: expected {rules[name][1]}"
    key = next(iter(re.findall(r"Could not override '([^']+)'", str(error))), "")
    if key.startswith(("hydra.launcher.", "hydra.sweeper.")):
        return no_plugin_key(key, getattr(error.__cause__, "object_type", None))
    if key.startswith("hydra."):
        return f"{key}: no such key (python -m lenet_exp --cfg hydra lists Hydra's keys)"
    if key:
        return f"{key}: no such key.{hint(key, known_keys())} (python -m lenet_exp --cfg job lists every key)"
    return _plugin_hint(error) or hydra_message(error)


def no_plugin_key(key: str, kind: type | None) -> str:
    """A launcher's or sweeper's key that its plugin's config class (`kind`) does not have, with the closest it has."""
    group = key.split(".")[1]
    known = [f"hydra.{group}.{f.name}" for f in (fields(kind) if is_dataclass(kind) else []) if f.name[0] != "_"]
    return (
        f"{key}: no such key for this {group}.{hint(key, known)} Other keys come with the {group} that has them "
        "(hydra/launcher=parallel for n_jobs, hparams_search=optuna for n_trials); "
        "python -m lenet_exp --cfg hydra lists them"
    )


def hydra_message(error: Exception) -> str:
    """Hydra's multi-line message as one line, without the search path and object details; a list of available
    options stays, comma-separated, with the closest to what was asked for."""
    cause = f"{error}\n{error.__cause__}" if error.__cause__ and str(error.__cause__) not in str(error) else str(error)
    text = cause.split("Config search path")[0]
    parts, options = [], []
    for line in text.splitlines():
        if line.strip() in ("", "None"):
            continue
        if not line.startswith((" ", "\t")):
            parts.append(line.strip())
        elif parts and parts[-1].startswith("Available options"):
            options.append(line.strip())
    if options:
        asked = re.search(r"Could not find '(?:[^']*/)?([^'/]+)'", text)
        close = difflib.get_close_matches(asked.group(1), options, n=1) if asked else []
        parts[-1] += " " + ", ".join(options) + (f". Did you mean {close[0]}?" if close else "")
    return " ".join(parts)
