"""lenet_exp's Hydra plugins as the package knows them, without importing them: their settings, declared once here
(each plugin's config class in hydra_plugins/ extends one of these with its `_target_`), and every launcher and
sweeper recognised by its config class, never by matching class paths."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lenet_exp.schema import INT_GE_0, INT_GE_1, Rule, checked, int_at_least, one_of


@dataclass
class PluginSettings:
    """What every settings class of lenet_exp's own plugins is: its keys are held to their rules before any job."""


@dataclass
class HalvingSettings(PluginSettings):
    """hydra/sweeper=halving, set by the hparams_search=halving (and lenet_best) presets."""

    eta: int = checked(int_at_least(2))  # keep the best 1/eta of the settings after each rung
    min_epochs: int = checked(INT_GE_1)  # epochs of the first rung
    max_epochs: int | None = checked(int_at_least(1, null="trainer.epochs"))  # epochs of the last rung
    params: Any | None = None  # sweep overrides held in the config, as the basic sweeper's


@dataclass
class RangedSettings(HalvingSettings):
    """hydra/sweeper=ranged, set by the hparams_search=ranged (and lenet_ranged) presets: settings drawn from ranges,
    pruned on the rungs of successive halving."""

    n_trials: int = checked(INT_GE_1)  # settings drawn in all (each with every seed of `seed`'s list)
    batch: int = checked(INT_GE_1)  # settings drawn at once: each wave trains to the first rung before the next
    sampler: str = checked(one_of("tpe", "random"))  # Optuna's sampler: tpe (its first wave at random), random
    seed: int = checked(INT_GE_0)  # the sampler's seed: the same seed, the same draws


@dataclass
class AroundSettings(PluginSettings):
    """hydra/sweeper=around, set by the hparams_search=exercises preset: one knob at a time around a base setting."""

    params: Any | None = None  # key -> the values to try it at, one key at a time (the rest at the config's own)


@dataclass
class FusedSettings(PluginSettings):
    """hydra/launcher=fused: jobs that can train together as one fused model do."""

    max_models: int = checked((INT_GE_1[0], "an integer >= 1 (1: every job alone)"), default=64)


@dataclass
class ParallelSettings(PluginSettings):
    """hydra/launcher=parallel: joblib's local processes, a dead worker reported in one line."""


@dataclass
class SlurmSettings(PluginSettings):
    """hydra/launcher=slurm (and fused_slurm): submitit's Slurm keys, with defaults for a CPU partition."""

    cpus_per_task: int | None = checked(int_at_least(1), default=1)  # the job's torch threads follow it
    gpus_per_node: int | None = checked(int_at_least(0, null="1 with device=cuda, none otherwise"), default=None)
    mem_gb: int | None = checked(int_at_least(1, null="the partition's default"), default=4)
    timeout_min: int = checked(INT_GE_1, default=60)
    array_parallelism: int = checked(INT_GE_1, default=64)
    max_num_timeout: int = checked(INT_GE_0, default=3)  # tries that may end at the time limit before a job fails
    nodes: int = checked(int_at_least(1, 1), default=1)  # one node a job: lenet_exp trains on one device
    tasks_per_node: int = checked(int_at_least(1, 1), default=1)  # one process a job
    max_models: int = checked((INT_GE_1[0], "an integer >= 1 (1: a Slurm job for each sweep job)"), default=1)


# The few keys of other projects' plugins that lenet_exp relies on, by the name of their config class (or a base of it)
OTHERS: dict[str, dict[str, Rule]] = {
    "JobLibLauncherConf": {"n_jobs": (lambda v: v != 0, "a non-zero integer (-1: one per CPU core)")},
    "BaseQueueConf": {"timeout_min": (lambda v: v > 0, "minutes > 0")},
    "OptunaSweeperConf": {
        "n_trials": INT_GE_1,
        "n_jobs": INT_GE_1,
        "direction": (
            lambda v: str(v).removeprefix("Direction.") in ("maximize", "minimize"),
            "maximize (the task returns test accuracy)",
        ),
        "storage": (
            lambda v: v is None or re.match(r"^[a-z][a-z0-9+]*://", str(v)) is not None,
            "null (in memory) or a database URL such as sqlite:///optuna.db",
        ),
    },
}


def config_class(cfg: DictConfig, part: str) -> type | None:
    """The config class of the composed config's launcher or sweeper (`part`), as Hydra stored it."""
    kind = OmegaConf.get_type(cfg.hydra[part]) if OmegaConf.select(cfg, f"hydra.{part}") is not None else None
    return kind if isinstance(kind, type) else None


def _is(cfg: DictConfig, part: str, kind: type | str) -> bool:
    """Whether the launcher's or sweeper's config class is (or extends) `kind`, a class of ours or a class's name."""
    found = config_class(cfg, part)
    if found is None:
        return False
    return issubclass(found, kind) if isinstance(kind, type) else kind in (c.__name__ for c in found.__mro__)


def ours(cfg: DictConfig, part: str) -> bool:
    return _is(cfg, part, PluginSettings)


def halves(cfg: DictConfig) -> bool:
    """The sweeper is lenet_exp's successive halving."""
    return _is(cfg, "sweeper", HalvingSettings)


def samples(cfg: DictConfig) -> bool:
    """The sweeper draws its settings from ranges (lenet_exp's ranged search), rather than halving a grid."""
    return _is(cfg, "sweeper", RangedSettings)


def one_at_a_time(cfg: DictConfig) -> bool:
    """The sweeper changes one knob at a time around the config's own setting."""
    return _is(cfg, "sweeper", AroundSettings)


def basic_sweeper(cfg: DictConfig) -> bool:
    """The sweeper is Hydra's basic one (a grid of lists, no search space)."""
    return _is(cfg, "sweeper", "BasicSweeperConf")


def on_cluster(cfg: DictConfig) -> bool:
    """Jobs train on a Slurm cluster's nodes through lenet_exp's launcher, not on this machine."""
    return _is(cfg, "launcher", SlurmSettings)


def needs_sbatch(cfg: DictConfig) -> bool:
    """submitit's own Slurm launcher (hydra/launcher=submitit_slurm), which needs Slurm here."""
    return _is(cfg, "launcher", "SlurmQueueConf") and not on_cluster(cfg)


def fuses(cfg: DictConfig) -> bool:
    """Jobs may train together as one fused model: the fused launcher, or the Slurm one with max_models > 1."""
    models = OmegaConf.select(cfg, "hydra.launcher.max_models", default=1) or 1
    return _is(cfg, "launcher", FusedSettings) or (on_cluster(cfg) and models > 1)


def other_rules(cfg: DictConfig, part: str) -> dict[str, Rule]:
    """The rules lenet_exp holds another project's launcher or sweeper to (OTHERS), by its config class."""
    found = config_class(cfg, part)
    names = [c.__name__ for c in found.__mro__] if found else []
    return next((rules for name, rules in OTHERS.items() if name in names), {})
