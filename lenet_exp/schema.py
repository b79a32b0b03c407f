"""The project's own config keys, declared once: Hydra structured configs the YAML files name as their schema.

OmegaConf holds every compose to the key names and types below; each key's rule (its allowed range, in
words) is checked on the typed object by `check`, and its words also explain a value of the wrong type.
Defaults stay in the YAML files under conf/. Nothing here imports torch, config.py or build.py.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, ValidationError

from lenet_exp.data import DATASETS


class ConfigError(ValueError):
    """A user mistake in the config or the overrides."""


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any, finite: bool = True) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and (math.isfinite(v) or not finite)


Rule = tuple[Callable[[Any], bool], str]  # (predicate, what is allowed, in words)
INT_GE_0: Rule = (lambda v: is_int(v) and v >= 0, "an integer >= 0")
INT_GE_1: Rule = (lambda v: is_int(v) and v >= 1, "an integer >= 1")
SEED: Rule = (lambda v: is_int(v) and 0 <= v < 2**32, "an integer in [0, 2**32)")
BOOL: Rule = (lambda v: isinstance(v, bool), "true or false")
NUMBER: Rule = (lambda v: is_number(v, finite=False), "a number")
TEXT: Rule = (lambda v: isinstance(v, str) and v != "", "a non-empty string")
POSITIVE: Rule = (lambda v: is_number(v) and v > 0, "a finite number > 0")
NON_NEGATIVE: Rule = (lambda v: is_number(v) and v >= 0, "a finite number >= 0")
FRACTION: Rule = (lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)")
BETAS: Rule = (lambda v: isinstance(v, list) and len(v) == 2 and all(map(FRACTION[0], v)), "two numbers in [0, 1)")
MAX_THREADS = 256  # beyond this torch's thread pool fails outright


def int_at_least(least: int, most: int | None = None, null: str | None = None) -> Rule:
    """An integer in [least, most]; with `null`, also null, which means what `null` says."""
    ok = lambda v: is_int(v) and least <= v <= (most or math.inf)
    words = f"an integer >= {least}" + (f" <= {most}" if most else "")
    return (lambda v: v is None or ok(v), f"null ({null}) or {words}") if null else (ok, words)


def int_list(nonempty: bool) -> Rule:
    ok = lambda v: isinstance(v, list) and (v or not nonempty) and all(map(INT_GE_1[0], v))
    return (ok, f"a {'non-empty ' if nonempty else ''}list of integers >= 1")


def one_of(*allowed: Any) -> Rule:
    """One of the values given, or of an Enum's values."""
    if len(allowed) == 1 and isinstance(allowed[0], type):
        allowed = tuple(m.value for m in allowed[0])
    return (lambda v: v in allowed, "one of " + ", ".join(str(a).lower() for a in allowed))


def checked(rule: Rule, default: Any = MISSING) -> Any:
    """A schema field whose value must pass `rule` (the YAML gives its value unless `default` is set)."""
    return field(default=default, metadata={"rule": rule})


# Choices. A field holding one is typed `str` and checked by its rule: an Enum value in the job config would be
# pickled as an Enum into the run's checkpoint, which torch.load(weights_only=True) refuses.
DatasetName = Enum("DatasetName", {name: name for name in DATASETS})
DeviceName = Enum("DeviceName", {name: name for name in ("auto", "cpu", "cuda", "mps")})
Pool = Enum("Pool", {name: name for name in ("avg", "max")})
Init = Enum("Init", {name: name for name in ("xavier_uniform", "kaiming_uniform", "default")})
NO_CUDA = "device=cuda: CUDA is not available on this machine; use device=auto or device=cpu"


@dataclass
class LeNetSettings:
    """model/: LeNet's constructor arguments (its activation comes from the activation group)."""

    _target_: str = MISSING
    in_channels: int = checked(INT_GE_1)
    image_size: int = checked(INT_GE_1)
    conv_channels: list[int] = checked(int_list(nonempty=True))
    kernel_size: int = checked(INT_GE_1)
    padding: int = checked(INT_GE_0)
    pool: str = checked(one_of(Pool))
    hidden: list[int] = checked(int_list(nonempty=False))
    num_classes: int = checked(INT_GE_1)
    init: str = checked(one_of(Init))


@dataclass
class OptimizerSettings:
    """optimizer/: what every option holds; a `+optimizer.key=value` goes to the class's constructor, which judges
    it."""

    _target_: str = MISSING
    _partial_: bool = MISSING
    lr: float = checked(POSITIVE)


@dataclass
class SGDSettings(OptimizerSettings):
    momentum: float = checked(FRACTION)
    weight_decay: float = checked(NON_NEGATIVE)


@dataclass
class AdamSettings(OptimizerSettings):
    betas: list[float] = checked(BETAS)
    weight_decay: float = checked(NON_NEGATIVE)


@dataclass
class DataSettings:
    name: str = checked(one_of(DatasetName))
    root: str = checked(TEXT)
    download: bool = checked(BOOL)
    batch_size: int = checked(INT_GE_1)
    limit_train: int | None = checked(int_at_least(1, null="all examples"))
    limit_test: int | None = checked(int_at_least(1, null="all examples"))


@dataclass
class DeviceSettings:
    name: str = checked(one_of(DeviceName))
    channels_last: bool = checked(BOOL)
    amp: bool = checked(BOOL)
    compile: bool = checked(BOOL)
    threads: int | None = checked(int_at_least(1, MAX_THREADS, null="torch's default"))
    eval_batch_size: int = checked(INT_GE_1)


@dataclass
class TrainerSettings:
    epochs: int = checked(INT_GE_1)
    log_points: int = checked(INT_GE_1)
    progress: Any = checked(one_of("auto", True, False))  # a string or a bool: OmegaConf 2.3 has no Union


PASSED_ON = ("activation", "optimizer")  # groups whose new keys go to their class's constructor, which judges them


@dataclass
class Settings:
    """The checked, typed settings of one run, and the schema of the whole job config (conf/config.yaml names it).

    model, activation and optimizer are built from the config's `_target_` nodes (build.py); their objects here
    only carry the checked values.
    """

    model: LeNetSettings = MISSING
    activation: Any = MISSING  # the options hold different keys, each passed to its class
    optimizer: Any = MISSING  # each option names its own schema (SGDSettings, AdamSettings) in its defaults list
    data: DataSettings = MISSING
    device: DeviceSettings = MISSING
    trainer: TrainerSettings = MISSING
    seed: int = checked(SEED)
    deterministic: bool = checked(BOOL)

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> Settings:
        """The composed config (its `hydra` node aside) as typed objects, every value checked against its rule but
        the model's, which check_config holds against the data set too."""
        check_keys(cfg)
        names = [f.name for f in fields(cls)]
        settings = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.masked_copy(cfg, names)))
        check(settings, skip=("model",))
        return settings


def check(obj: Any, prefix: str = "", skip: tuple = ()) -> None:
    """Every field of a typed config object, nested ones too, passes its rule; ConfigError names the first that
    fails."""
    for f in (f for f in fields(obj) if f.name not in skip):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            check(value, f"{prefix}{f.name}.")
        elif "rule" in f.metadata:
            check_value(f"{prefix}{f.name}", value, f.metadata["rule"])


def check_node(node: DictConfig, prefix: str) -> None:
    """A config node typed by a class with rules (a plugin's settings), checked by them."""
    kind = OmegaConf.get_type(node)
    if is_dataclass(kind) and any("rule" in f.metadata for f in fields(kind)):
        check(OmegaConf.to_object(node), prefix)


def check_value(key: str, value: Any, rule: Rule) -> None:
    if not rule[0](value):
        raise ConfigError(f"{key}={shown(value)} is not allowed: expected {rule[1]}")


def shown(value: Any) -> str:
    """A checked value as it was likely typed: `0` for the 0.0 a float key holds after `optimizer.lr=0`."""
    integral = isinstance(value, float) and value.is_integer() and abs(value) < 1e15
    return repr(int(value)) if integral else repr(value)


def check_model(settings: Settings) -> None:
    """LeNet's keys obey their rules and fit the data set: its channels, image size and number of classes."""
    check(settings.model, "model.")
    model, name = settings.model, settings.data.name
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


def check_keys(cfg: DictConfig) -> None:
    """Refuse a key the schema does not declare: Hydra adds a `+key=value` even to a typed section."""
    sections = {"": cfg, **{f"{k}.": cfg._get_node(k) for k in cfg if k not in (*PASSED_ON, "hydra")}}
    for prefix, node in sections.items():
        kind = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
        if not is_dataclass(kind):
            continue  # a value, or an untyped config read back from a file
        declared = [f.name for f in fields(kind)]
        for key in [k for k in node if k not in declared and f"{prefix}{k}" != "hydra"]:
            allowed = [k for k in declared if not k.startswith("_")]  # Hydra's own keys (_target_) go unsaid
            raise ConfigError(
                f"{prefix}{key}: unknown key; allowed keys: {', '.join(allowed)}."
                + hint(f"{prefix}{key}", [f"{prefix}{k}" for k in allowed])
            )


def refused_value(error: Exception) -> str | None:
    """OmegaConf's refusal of a value of the wrong type (`data.batch_size=2.5`) in the words of its key's rule, or of
    a key left without a value."""
    cause = error.__cause__ if isinstance(error.__cause__, ValidationError) else error
    if isinstance(cause, MissingMandatoryValue) and cause.full_key:
        return f"{cause.full_key}: missing; set it in its YAML file under conf/ or on the command line"
    if not isinstance(cause, ValidationError) or not cause.full_key:
        return None
    node, name = cause.parent_node, cause.key
    if isinstance(node, ListConfig):  # an item of a list: the list's own rule
        node, name = node._get_parent(), node._key()
    kind = OmegaConf.get_type(node) if node is not None else None
    rule = next((f.metadata.get("rule") for f in fields(kind) if f.name == name), None) if is_dataclass(kind) else None
    return f"{cause.full_key}={cause.value!r} is not allowed: expected {rule[1]}" if rule else None


SYNONYMS = {  # words users type for the keys lenet_exp has
    "learning_rate": "lr",
    "epoch": "epochs",
    "n_epochs": "epochs",
    "num_epochs": "epochs",
    "max_epochs": "epochs",
    "batch": "batch_size",
    "bs": "batch_size",
    "batchsize": "batch_size",
    "wd": "weight_decay",
    "act": "activation",
    "opt": "optimizer",
    "dataset": "data",
    "gpu": "device",
    "workers": "threads",
    "num_threads": "threads",
}


def hint(key: str, known: list[str]) -> str:
    """` Did you mean optimizer.lr?` for a mistyped key: the same name (or a synonym) among the known keys, else a
    close spelling of its last part among its own group's keys (or among all keys, for a top-level one)."""
    known = [k for k in known if k != key]
    group, _, last = key.rpartition(".")
    wanted = {last, SYNONYMS.get(last, last)}
    matches = [k for k in known if k.split(".")[-1] in wanted]
    if not matches:
        pool = {k.split(".")[-1]: k for k in known if not group or k.rpartition(".")[0] == group}
        matches = [pool[c] for c in difflib.get_close_matches(last, list(pool), n=3, cutoff=0.75)]
    return f" Did you mean {' or '.join(matches[:3])}?" if matches else ""


def lenet_image_sizes(image_size: int, conv_channels: list[int], kernel_size: int, padding: int) -> list[int]:
    """The side of LeNet's feature maps after each conv + 2x2 pool (only the first conv pads, as in the textbook)."""
    sizes, size = [], image_size
    for i in range(len(conv_channels)):
        size = (size + 2 * (padding if i == 0 else 0) - kernel_size + 1) // 2
        sizes.append(size)
    return sizes


def shrink_message(image_size: int, conv: int) -> str:
    return (
        f"a {image_size}x{image_size} input shrinks to nothing after conv {conv}; "
        "use fewer conv_channels, a smaller kernel_size or more padding"
    )


_store = ConfigStore.instance()
_store.store(name="lenet_exp_schema", node=Settings, provider="lenet_exp")  # conf/config.yaml
_store.store(name="sgd_schema", node=SGDSettings, provider="lenet_exp")  # conf/optimizer/sgd.yaml
_store.store(name="adam_schema", node=AdamSettings, provider="lenet_exp")  # conf/optimizer/adam.yaml
