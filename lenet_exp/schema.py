"""The project's own config keys, declared once: Hydra structured configs the YAML files (conf/) name as their schema.
OmegaConf holds every compose to the key names and types below; each key's rule adds its range, in words that also
explain a value of the wrong type; `check_config` holds a composed config to every rule before anything runs.
Nothing here imports torch."""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from lenet_exp.data import DATASETS, DataError, find_files
from lenet_exp.errors import ConfigError
from lenet_exp.words import plural

Rule = tuple[Callable[[Any], bool], str]  # (predicate on a value of the key's type, what is allowed, in words)


def int_at_least(least: int, most: float = math.inf, null: str = "") -> Rule:
    """An integer in [least, most]; with `null`, also null, which means what `null` says."""
    words = f"an integer >= {least}" + (f" <= {most}" if most < math.inf else "")
    return (lambda v: v is None or least <= v <= most), f"null ({null}) or {words}" if null else words


def one_of(*allowed: Any) -> Rule:
    """A choice, in a field typed `str`: an Enum value in the job config would be pickled as an Enum into the run's
    checkpoint, which torch.load(weights_only=True) refuses."""
    return (lambda v: v in allowed), "one of " + ", ".join(str(a).lower() for a in allowed)


def checked(rule: Rule, default: Any = MISSING) -> Any:
    """A schema field whose value must pass `rule` (the YAML gives its value unless `default` is set)."""
    return field(default=default, metadata={"rule": rule})


INT_GE_0 = int_at_least(0)
INT_GE_1 = int_at_least(1)
BOOL: Rule = (lambda v: isinstance(v, bool), "true or false")
NON_NEGATIVE: Rule = (lambda v: 0 <= v < math.inf, "a finite number >= 0")
FRACTION: Rule = (lambda v: 0 <= v < 1, "a number in [0, 1)")
NO_CUDA = "device=cuda: CUDA is not available on this machine; use device=auto or device=cpu"
LENET = "lenet_exp.model.LeNet"  # the model class whose jobs the fused launcher may train together
PATH_MAX = os.pathconf("/", "PC_PATH_MAX") if hasattr(os, "pathconf") else 260
PATH_ROOM = PATH_MAX - 512  # a sweep's job folder names (<= 200 bytes) and the files in them


@dataclass
class LeNetSettings:
    """model/: LeNet's constructor arguments (its activation comes from the activation group)."""

    _target_: str = MISSING
    in_channels: int = checked(INT_GE_1)
    image_size: int = checked(INT_GE_1)
    conv_channels: list[int] = checked((lambda v: len(v) > 0 and min(v) >= 1, "a non-empty list of integers >= 1"))
    kernel_size: int = checked(INT_GE_1)
    padding: int = checked(INT_GE_0)
    pool: str = checked(one_of("avg", "max"))
    hidden: list[int] = checked((lambda v: all(h >= 1 for h in v), "a list of integers >= 1"))
    num_classes: int = checked(INT_GE_1)
    init: str = checked(one_of("xavier_uniform", "kaiming_uniform", "default"))
    norm: str = checked(one_of("none", "batch"), "none")
    dropout: float = checked(FRACTION, 0.0)


@dataclass
class OptimizerSettings:
    """optimizer/: what every option holds; a `+optimizer.key=value` goes to the class's constructor."""

    _target_: str = MISSING
    _partial_: bool = MISSING
    lr: float = checked((lambda v: 0 < v < math.inf, "a finite number > 0"))


@dataclass
class SGDSettings(OptimizerSettings):
    momentum: float = checked((lambda v: 0 <= v < 1, "a number in [0, 1)"))
    weight_decay: float = checked(NON_NEGATIVE)


@dataclass
class AdamSettings(OptimizerSettings):
    betas: list[float] = checked((lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "two numbers in [0, 1)"))
    weight_decay: float = checked(NON_NEGATIVE)


SCHEDULE_EPOCHS = int_at_least(1, null="trainer.epochs")
POSITIVE: Rule = (lambda v: 0 < v < math.inf, "a finite number > 0")


@dataclass
class NoSchedule:
    """scheduler/: a constant learning rate."""

    name: str = checked(one_of("none"))
    epochs: int | None = checked(SCHEDULE_EPOCHS)


@dataclass
class CosineSchedule(NoSchedule):
    name: str = checked(one_of("cosine"))
    warmup: float = checked(FRACTION)


@dataclass
class OneCycleSchedule(NoSchedule):
    name: str = checked(one_of("onecycle"))
    pct_start: float = checked((lambda v: 0 < v < 1, "a number in (0, 1)"))
    div_factor: float = checked(POSITIVE)
    final_div_factor: float = checked(POSITIVE)


SCHEDULES = {"none": NoSchedule, "cosine": CosineSchedule, "onecycle": OneCycleSchedule}  # scheduler.name -> schema


@dataclass
class DataSettings:
    name: str = checked(one_of(*DATASETS))
    root: str = checked((lambda v: v != "", "a non-empty string"))
    download: bool = checked(BOOL)
    batch_size: int = checked(INT_GE_1)
    val_size: int = checked(INT_GE_0)
    augment: bool = checked(BOOL, False)
    limit_train: int | None = checked(int_at_least(1, null="all examples"))
    limit_test: int | None = checked(int_at_least(1, null="all examples"))


@dataclass
class DeviceSettings:
    name: str = checked(one_of("auto", "cpu", "cuda", "mps"))
    channels_last: bool = checked(BOOL)
    amp: bool = checked(BOOL)
    compile: bool = checked(BOOL)
    threads: int | None = checked(int_at_least(1, 256, null="torch's default"))  # 256: torch's pool fails beyond
    eval_batch_size: int = checked(INT_GE_1)


@dataclass
class TrainerSettings:
    epochs: int = checked(INT_GE_1)
    log_points: int = checked(INT_GE_1)
    progress: Any = checked(one_of("auto", True, False))  # a string or a bool: OmegaConf 2.3 has no Union


@dataclass
class Settings:
    """The checked, typed settings of one run, and the schema of the whole job config (conf/config.yaml names it).
    model, activation and optimizer are built from the config's `_target_` nodes (build.py)."""

    model: LeNetSettings = MISSING
    activation: Any = MISSING  # the options hold different keys, each passed to its class
    optimizer: Any = MISSING  # each option names its own schema (SGDSettings, AdamSettings) in its defaults list
    scheduler: Any = MISSING  # likewise (NoSchedule, CosineSchedule, OneCycleSchedule)
    data: DataSettings = MISSING
    device: DeviceSettings = MISSING
    trainer: TrainerSettings = MISSING
    seed: int = checked((lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)"))
    deterministic: bool = checked(BOOL)

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> Settings:
        """The composed config (its `hydra` node aside) as typed objects, checked but the model (see check_config)."""
        check_keys(cfg)
        part = OmegaConf.masked_copy(cfg, [f.name for f in fields(cls)])
        schedule = part.get("scheduler")
        if isinstance(schedule, DictConfig) and not is_dataclass(OmegaConf.get_type(schedule)):  # read from a file
            kind = SCHEDULES.get(schedule.get("name"), NoSchedule)  # (an unknown name: its rule says so)
            part.scheduler = OmegaConf.merge(OmegaConf.structured(kind), schedule)
        settings = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), part))
        check(settings, skip=("model",))
        return settings


def check(obj: Any, prefix: str = "", skip: tuple = ()) -> None:
    """Every field of a typed config object, nested ones too, passes its rule, or ConfigError names the first."""
    for f in (f for f in fields(obj) if f.name not in skip):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            check(value, f"{prefix}{f.name}.")
        elif "rule" in f.metadata:
            check_value(f"{prefix}{f.name}", value, f.metadata["rule"])


def check_value(key: str, value: Any, rule: Rule) -> None:
    """ConfigError unless `value` passes `rule`, the value as typed: `0` for the 0.0 a float key holds for `lr=0`."""
    if not rule[0](value):
        integral = isinstance(value, float) and value.is_integer() and abs(value) < 1e15
        raise ConfigError(f"{key}={int(value) if integral else value!r} is not allowed: expected {rule[1]}")


def check_keys(cfg: DictConfig) -> None:
    """Refuse a key the schema does not declare: Hydra adds a `+key=value` even to a typed section. (activation and
    optimizer pass a new key on to their class's constructor, which judges it.)"""
    if not is_dataclass(OmegaConf.get_type(cfg)):  # read back from a file, or a dict: the schema's sections only
        declared = [f.name for f in fields(Settings)]
        for key in [str(k) for k in cfg if k not in declared and k != "hydra"]:
            shown = key if len(key) <= 60 else f"{key[:57]}..."  # a file that is no config holds anything
            raise ConfigError(f"{shown}: unknown key; allowed keys: {', '.join(declared)}." + hint(shown, declared))
    sections = {"": cfg, **{f"{k}.": cfg._get_node(k) for k in cfg if k not in ("activation", "optimizer", "hydra")}}
    for prefix, node in sections.items():
        kind = OmegaConf.get_type(node)
        if not is_dataclass(kind):
            continue  # a value, or an untyped config read back from a file
        declared = [f.name for f in fields(kind)]
        for key in [k for k in node if k not in declared and f"{prefix}{k}" != "hydra"]:
            allowed = [k for k in declared if not k.startswith("_")]  # Hydra's own keys (_target_) go unsaid
            raise ConfigError(
                f"{prefix}{key}: unknown key; allowed keys: {', '.join(allowed)}."
                + hint(f"{prefix}{key}", [f"{prefix}{k}" for k in allowed])
            )


SYNONYMS = {  # words users type -> the key lenet_exp has
    word: key
    for key, words in {
        "lr": "learning_rate",
        "epochs": "epoch n_epochs num_epochs max_epochs",
        "batch_size": "batch bs batchsize",
        "weight_decay": "wd",
        "activation": "act",
        "optimizer": "opt",
        "data": "dataset",
        "device": "gpu",
        "threads": "workers num_threads",
    }.items()
    for word in words.split()
}


def hint(key: str, known: list[str]) -> str:
    """` Did you mean optimizer.lr?` for a mistyped key: the same name (or a synonym) among the known keys, else a
    close spelling of its last part among its own group's keys (or among all keys, for a top-level one)."""
    known = [k for k in known if k != key]
    group, _, last = key.rpartition(".")
    wanted = {last, SYNONYMS.get(last, last)}
    matches = [k for k in known if k.split(".")[-1] in wanted]
    matches = [k for k in matches if k.rpartition(".")[0] == group] or matches  # its own group's first
    if not matches:
        pool = {k.split(".")[-1]: k for k in known if not group or k.rpartition(".")[0] == group}
        matches = [pool[c] for c in difflib.get_close_matches(last, list(pool), n=3, cutoff=0.75)]
    return f" Did you mean {' or '.join(matches[:3])}?" if matches else ""


# the schemas conf/config.yaml and conf/optimizer/*.yaml name in their defaults lists
for _name, _node in (
    ("lenet_exp_schema", Settings),
    ("sgd_schema", SGDSettings),
    ("adam_schema", AdamSettings),
    ("none_schedule_schema", NoSchedule),
    ("cosine_schedule_schema", CosineSchedule),
    ("onecycle_schedule_schema", OneCycleSchedule),
):
    ConfigStore.instance().store(name=_name, node=_node, provider="lenet_exp")


def check_folder_path(path: Path, key: str, writable: bool = True) -> None:
    """Refuse (naming the key) a folder path that is a file, a broken link, under a file, or (`writable`) read-only."""
    if "${" in str(path):
        raise ConfigError(
            f"{key}={path}: a folder name holding '${{' would be read as an interpolation by Hydra; rename the folder"
        )
    if any(len(part.encode()) > 255 for part in path.parts):
        raise ConfigError(
            f"{key}: a folder name in {str(path)[:60]}... is longer than the 255 bytes a file system allows; "
            "give a shorter one"
        )
    if len(os.path.abspath(path).encode()) > PATH_ROOM:
        raise ConfigError(
            f"{key}: the path {str(path)[:60]}... leaves no room for a run's files within the "
            f"{PATH_MAX} bytes a path may have here; give a shorter one"
        )
    if path.is_symlink() and not path.exists():
        raise ConfigError(f"{key}={path}: is a broken link (it points to nothing); give a folder path")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}={path}: is a file, not a folder; give a folder path")
    existing = next(p for p in (path, *path.parents) if p.exists())  # "." or "/" at the latest
    if not existing.is_dir():
        raise ConfigError(f"{key}={path}: {existing} is a file, so no folder can be made under it; give another path")
    if writable and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{key}={path}: {existing} is not writable here (read-only or no permission); "
            "give a folder you can write to"
        )


def check_config(cfg: DictConfig, here: bool = True) -> Settings:
    """Every rule a composed config must obey before anything runs: the typed settings, the model's keys (which must
    fit the data set's channels, image size and classes), the schedule, the data folder, a GPU driver where CUDA is
    asked for and the jobs train `here` (not on a cluster's nodes)."""
    settings = Settings.from_cfg(cfg)
    check(settings.model, "model.")
    check_model_fits(settings.model, settings.data.name)
    check_norm_batches(settings)
    check_schedule(settings, OmegaConf.select(cfg, "optimizer.lr"))
    check_folder_path(Path(settings.data.root), "data.root", writable=False)  # written only by a download, checked then
    try:
        find_files(settings.data.name, settings.data.root, settings.data.download)  # each swept data set too
    except DataError as e:
        raise ConfigError(str(e)) from None
    if here and settings.device.name == "cuda" and Path("/proc").is_dir():  # Linux: no GPU driver visible means no CUDA
        devices = [*Path("/dev").glob("nvidia*"), Path("/dev/dxg"), Path("/dev/kfd"), Path("/proc/driver/nvidia")]
        if not any(p.exists() for p in devices):  # refused without loading torch
            raise ConfigError(NO_CUDA)
    return settings


def check_model_fits(model: LeNetSettings, name: str) -> None:
    """The model's input and output sizes fit the data set's channels, image size and classes."""
    spec = DATASETS[name]
    for key, needed in (("in_channels", spec.channels), ("image_size", spec.image_size)):
        if getattr(model, key) != needed:
            raise ConfigError(
                f"model.{key}={getattr(model, key)} does not fit {name} "
                f"({spec.channels}x{spec.image_size}x{spec.image_size} images): expected {needed}"
            )
    if model.num_classes < spec.classes:
        raise ConfigError(
            f"model.num_classes={model.num_classes} cannot fit {name}: its labels are 0-{spec.classes - 1}, "
            f"so expected >= {spec.classes}"
        )


def check_norm_batches(s: Settings) -> None:
    """Batch normalisation needs two or more examples in every training batch, the epoch's last one included."""
    if s.model.norm != "batch":
        return
    n = DATASETS[s.data.name].counts["train"] - s.data.val_size
    n = min(n, s.data.limit_train or n)
    if s.data.batch_size == 1 or n % s.data.batch_size == 1:
        where = "every batch holds one" if s.data.batch_size == 1 else f"the last batch of an epoch of {n} holds one"
        raise ConfigError(
            f"model.norm=batch needs two or more examples in every training batch, but {where} "
            f"(data.batch_size={s.data.batch_size}); change data.batch_size or data.limit_train"
            + (" or data.val_size" if s.data.val_size else "")
        )


RATES = (2.0**-126, 3.4028235e38)  # a learning rate a float32 step holds: its smallest normal number and its largest


def check_schedule(settings: Settings, lr: float | None) -> None:
    """A schedule ends no earlier than the run, and its rates stay finite and positive at every step (onecycle's start
    and end are the base rate divided by its factors)."""
    schedule, epochs = settings.scheduler, settings.trainer.epochs
    if schedule.name != "none" and schedule.epochs is not None and epochs > schedule.epochs:
        raise ConfigError(
            f"trainer.epochs={epochs} runs past the end of the learning-rate schedule (scheduler.epochs="
            f"{schedule.epochs}): its last {plural(epochs - schedule.epochs, 'epoch')} would train at rate 0; give "
            f"trainer.epochs={schedule.epochs} or less (a run's schedule cannot change once it has trained)"
        )
    if schedule.name != "onecycle" or not isinstance(lr, (int, float)):
        return
    ends = {
        "scheduler.div_factor": ("starts", lr / schedule.div_factor),
        "scheduler.final_div_factor": ("ends", lr / schedule.div_factor / schedule.final_div_factor),
    }
    for key, (where, rate) in ends.items():
        if not RATES[0] <= rate <= RATES[1]:
            value = getattr(schedule, key.split(".")[1])
            raise ConfigError(
                f"{key}={value:g}: onecycle {where} at a learning rate of {rate:g} (optimizer.lr={lr:g}), outside what "
                f"a training step can take ({RATES[0]:.3g} to {RATES[1]:.3g}); give a {key.split('.')[1]} nearer 1"
            )
