"""Checks a composed config before any work starts and turns it into plain typed settings.

Defaults live in the YAML files under conf/; here are only the rules each key must obey. Every
violation raises ConfigError with one line naming the key, the value given and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from lenet_exp.data import DATASETS

_SOURCE_CONF = Path(__file__).resolve().parent.parent / "conf"
# Run from a source checkout, Hydra reads conf/ at the repo top; installed, the copy shipped in the package.
CONFIG_PATH = str(_SOURCE_CONF) if (_SOURCE_CONF / "config.yaml").is_file() else "pkg://lenet_exp.conf"


def compose_config(overrides: list[str]) -> DictConfig:
    """The composed config outside the command line (tests, the benchmark), from the same config folder."""
    from hydra import compose, initialize_config_dir, initialize_config_module

    if CONFIG_PATH.startswith("pkg://"):
        context = initialize_config_module(config_module="lenet_exp.conf", version_base="1.3")
    else:
        context = initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3")
    with context:
        return compose("config", overrides=overrides)


class ConfigError(ValueError):
    """A user mistake in the config or the overrides."""


def group_options() -> dict[str, list[str]]:
    """Each config group (model, optimizer, ...) and its options, read from the config folder."""
    root = files("lenet_exp.conf") if CONFIG_PATH.startswith("pkg://") else Path(CONFIG_PATH)
    groups = [d for d in root.iterdir() if d.is_dir() and d.name not in ("hydra", "__pycache__")]
    return {g.name: sorted(f.name[: -len(".yaml")] for f in g.iterdir() if f.name.endswith(".yaml")) for g in groups}


def check_overrides(argv: list[str]) -> None:
    """Refuse bad command-line overrides in one line before Hydra starts: unknown options, unknown keys, bad syntax.

    Sweeps are checked with their first value; Hydra's own settings (hydra.*) are left to Hydra.
    """
    if any(a in ("-cn", "-cp", "-cd") or a.startswith("--config") for a in argv):
        return  # another primary config: composing it is Hydra's job alone
    args = [a for a in argv if "=" in a and not a.startswith("-") and not a.lstrip("+~").startswith("hydra")]
    check_group_overrides(args)
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    parser, single = OverridesParser.create(), []
    for arg in args:
        try:
            override = parser.parse_override(arg)
        except HydraException as e:
            raise ConfigError(f"{arg}: not a valid override ({_one_line(e)})") from None
        if override.is_sweep_override():
            try:
                arg = f"{arg.split('=', 1)[0]}={next(iter(override.sweep_string_iterator()))}"
            except Exception:
                continue  # a search space (interval, tag): the sweeper checks it
        single.append(arg)
    try:
        compose_config(single)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(_one_line(e)) from None


def _one_line(error: Exception) -> str:
    """Hydra's multi-line message as one line, without the search path and object details."""
    cause = f"{error}\n{error.__cause__}" if error.__cause__ and str(error.__cause__) not in str(error) else str(error)
    text = cause.split("Config search path")[0]
    return " ".join(line.strip() for line in text.splitlines() if line.strip() not in ("", "None") and not line.startswith((" ", "\t")))


def check_group_overrides(args: list[str]) -> None:
    """Refuse `group=option` overrides naming an option that does not exist, listing the options there are."""
    options = group_options()
    for arg in args:
        key, _, value = arg.lstrip("+~").partition("=")
        if key not in options or not value or "(" in value or value == "null":
            continue  # not a group choice, or a sweep function such as choice(...)
        for option in value.split(","):
            if option not in options[key]:
                raise ConfigError(f"{key}={option}: unknown option of group '{key}'; allowed: {', '.join(options[key])}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# Rules: name -> (predicate, what is allowed, in words)
INT_GE_1 = (lambda v: _is_int(v) and v >= 1, "an integer >= 1")
INT_GE_0 = (lambda v: _is_int(v) and v >= 0, "an integer >= 0")
def optional_int_ge_1(null_means: str) -> tuple:
    return (lambda v: v is None or (_is_int(v) and v >= 1), f"null ({null_means}) or an integer >= 1")


LIMIT = optional_int_ge_1("all examples")
BOOL = (lambda v: isinstance(v, bool), "true or false")
TEXT = (lambda v: isinstance(v, str) and v != "", "a non-empty string")


def choice(*allowed: Any) -> tuple:
    return (lambda v: v in allowed, "one of " + ", ".join(str(a).lower() for a in allowed))


def check(key: str, value: Any, rule: tuple) -> None:
    predicate, allowed = rule
    if not predicate(value):
        raise ConfigError(f"{key}={value!r} is not allowed: expected {allowed}")


@dataclass(frozen=True)
class DataSettings:
    name: str
    root: str
    download: bool
    batch_size: int
    limit_train: int | None
    limit_test: int | None


@dataclass(frozen=True)
class TrainerSettings:
    epochs: int
    log_points: int
    progress: str | bool


@dataclass(frozen=True)
class DeviceSettings:
    name: str
    channels_last: bool
    amp: bool
    compile: bool
    threads: int | None
    eval_batch_size: int


RULES = {
    "data": {
        "name": choice(*DATASETS),
        "root": TEXT,
        "download": BOOL,
        "batch_size": INT_GE_1,
        "limit_train": LIMIT,
        "limit_test": LIMIT,
    },
    "trainer": {"epochs": INT_GE_1, "log_points": INT_GE_1, "progress": choice("auto", True, False)},
    "device": {
        "name": choice("auto", "cpu", "cuda", "mps"),
        "channels_last": BOOL,
        "amp": BOOL,
        "compile": BOOL,
        "threads": optional_int_ge_1("torch's default"),
        "eval_batch_size": INT_GE_1,
    },
}
OPTIMIZER_RULES = {
    "lr": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "momentum": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "weight_decay": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
}


def _section(cfg: DictConfig, name: str, cls: type) -> Any:
    values = OmegaConf.to_container(cfg[name], resolve=True)
    allowed = [f.name for f in fields(cls)]
    for key in values:
        if key not in allowed:
            raise ConfigError(f"{name}.{key}: unknown key; allowed keys: {', '.join(allowed)}")
    for key in allowed:
        if key not in values:
            raise ConfigError(f"{name}.{key}: missing; set it in conf/{name}/ or on the command line")
        check(f"{name}.{key}", values[key], RULES[name][key])
    return cls(**values)


@dataclass(frozen=True)
class Settings:
    """The checked, typed settings of one run (model and optimizer stay as `_target_` nodes)."""

    seed: int
    deterministic: bool
    data: DataSettings
    trainer: TrainerSettings
    device: DeviceSettings

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> Settings:
        for key, rule in (("seed", INT_GE_0), ("deterministic", BOOL)):
            check(key, cfg.get(key), rule)
        for key, rule in OPTIMIZER_RULES.items():
            if key in cfg.optimizer:
                check(f"optimizer.{key}", cfg.optimizer[key], rule)
        return cls(
            seed=cfg.seed,
            deterministic=cfg.deterministic,
            data=_section(cfg, "data", DataSettings),
            trainer=_section(cfg, "trainer", TrainerSettings),
            device=_section(cfg, "device", DeviceSettings),
        )


def resolve_device(name: str) -> torch.device:
    """The torch device for `device.name`; auto picks CUDA, then Apple MPS, then the CPU."""
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda: CUDA is not available on this machine; use device=auto or device=cpu")
    if name == "mps" and not has_mps:
        raise ConfigError("device.name=mps: Apple MPS is not available on this machine; use device=auto or device=cpu")
    return torch.device(name)
