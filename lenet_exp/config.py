"""Checks a composed config before any work starts and turns it into plain typed settings.

Defaults live in the YAML files under conf/; here are only the rules each key must obey. Every
violation raises ConfigError with one line naming the key, the value given and what is allowed.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, fields
from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lenet_exp.data import DATASETS

_SOURCE_CONF = Path(__file__).resolve().parent.parent / "conf"
# Run from a source checkout, Hydra reads conf/ at the repo top; installed, the copy shipped in the package.
CONFIG_PATH = str(_SOURCE_CONF) if (_SOURCE_CONF / "config.yaml").is_file() else "pkg://lenet_exp.conf"


def compose_config(overrides: list[str], with_hydra: bool = False) -> DictConfig:
    """The composed config outside the command line (tests, the benchmark), from the same config folder.

    `with_hydra` keeps the `hydra` node (run and sweep folders, sweeper, launcher) as the command would see it.
    """
    from hydra import compose, initialize_config_dir, initialize_config_module
    from hydra.version import VersionBase

    before = (
        VersionBase.instance().getbase()
    )  # Hydra keeps the version base process-wide: leave it as it was for whoever runs next
    if CONFIG_PATH.startswith("pkg://"):
        context = initialize_config_module(config_module="lenet_exp.conf", version_base="1.3")
    else:
        context = initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3")
    try:
        with context:
            return compose("config", overrides=overrides, return_hydra_config=with_hydra)
    finally:
        VersionBase.instance().version_base = before


class ConfigError(ValueError):
    """A user mistake in the config or the overrides."""


def group_options() -> dict[str, list[str]]:
    """Each config group (model, optimizer, ...) and its options, read from the config folder."""
    root = files("lenet_exp.conf") if CONFIG_PATH.startswith("pkg://") else Path(CONFIG_PATH)
    groups = [d for d in root.iterdir() if d.is_dir() and d.name not in ("hydra", "__pycache__")]
    return {g.name: sorted(f.name[: -len(".yaml")] for f in g.iterdir() if f.name.endswith(".yaml")) for g in groups}


def quoted(text: str) -> str:
    """An override value Hydra reads back exactly, whatever it holds: `=`, `,`, quotes, spaces, `${`, non-ASCII."""
    text = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", text)  # a literal ${, not an interpolation
    text = re.sub(
        r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), text
    )  # backslashes before a quote or the end
    return f"'{text}'"


def is_hydra_override(arg: str) -> bool:
    """`hydra.run.dir=...` or `hydra/launcher=...`: how to run, not what to train."""
    return arg.lstrip("+~").startswith("hydra")


def check_overrides(overrides: list[str], multirun: bool | None = None, printing: str | None = None) -> DictConfig:
    """Refuse bad command-line overrides in one line before Hydra starts: unknown options and keys, bad syntax, bad values.

    Returns the composed config with its `hydra` node (each sweep at its first value). Every value of a
    swept key is checked; search spaces (`interval(...)`) are left to the sweeper. `multirun=False` refuses
    sweeps; `printing` names a flag that shows one config (--cfg), which refuses them too.
    """
    check_sweep_syntax(overrides, multirun)
    if any(a.lstrip("+").startswith("hydra/sweeper=halving") for a in overrides):
        raise ConfigError(
            "hydra/sweeper=halving: choose it through its preset, hparams_search=halving, which sets its keys "
            "(hydra.sweeper.eta, min_epochs, max_epochs)"
        )
    check_group_overrides([a for a in overrides if not is_hydra_override(a)])
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    parser, single, variants = OverridesParser.create(), [], []
    for arg in overrides:
        try:
            override = parser.parse_override(arg)
        except HydraException as e:
            value = arg.split("=", 1)[1]
            hint = (
                f"; quote a value that holds '=', ',' or spaces: {arg.split('=', 1)[0]}='{value}'"
                if any(c in value for c in "=, ")
                else ""
            )
            raise ConfigError(f"{arg}: not a valid override ({_one_line(e)}){hint}") from None
        if override.is_sweep_override():
            if printing and not is_hydra_override(arg):
                raise ConfigError(f"{arg}: {printing} prints one composed config: give one value per key")
            if multirun is False and not is_hydra_override(arg):
                raise ConfigError(
                    f"{arg}: several values need --multirun: python -m lenet_exp --multirun {' '.join(overrides)}"
                )
            if not override.is_discrete_sweep():
                continue  # a search space (interval, tag): a search sweeper takes it (or the sweep is refused)
            try:
                values = [f"{arg.split('=', 1)[0]}={v}" for v in override.sweep_string_iterator()]
            except Exception as e:
                raise ConfigError(f"{arg}: cannot list the values of this sweep ({_one_line(e)})") from None
            if not values:
                raise ConfigError(f"{arg}: this sweep has no values; give at least one")
            if not is_hydra_override(arg):
                variants += [(len(single), v) for v in values[1:]]
            arg = values[0]
        single.append(arg)
    check_deletions([a for a in single if a.startswith("~") and not is_hydra_override(a)])
    try:
        cfg = compose_config(single, with_hydra=True)
        check_appended_keys([a for a in single if a.startswith("+") and not is_hydra_override(a)])
        check_config(cfg)
        others = [compose_config([*single[:position], value, *single[position + 1 :]]) for position, value in variants]
        for other in others:  # the other values of each swept key, one at a time
            check_config(other)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(_unknown_key_hint(e) or _plugin_hint(e) or _one_line(e)) from None
    if any(v.lstrip("+~").startswith(("model", "activation")) for _, v in variants):
        from lenet_exp.build import check_buildable  # torch loads only for a sweep over the model itself

        for other in [cfg, *others]:
            check_buildable(other)
    return cfg


def check_deletions(deletions: list[str]) -> None:
    """`~key` removes a key lenet_exp reads (its default would silently stand in, or the run would break): refuse it."""
    known = known_keys() if deletions else []
    for arg in deletions:
        key = arg.lstrip("~").split("=", 1)[0]
        if key in known or any(k.startswith(f"{key}.") for k in known):
            raise ConfigError(f"{arg}: lenet_exp reads {key}; set another value (or option) instead of removing it")


def check_sweep_syntax(overrides: list[str], multirun: bool | None = None) -> None:
    """Sweep values typed with spaces (`optimizer.lr=0.1 0.3`, `activation=sigmoid, relu`): one line with the right form."""
    for i, arg in enumerate(overrides):
        if arg.startswith("~"):
            continue  # a deletion: `~key` or `~key=value`
        if "=" not in arg:
            key_value = next((a for a in reversed(overrides[:i]) if "=" in a), None)
            words = [arg]
            for nxt in overrides[i + 1 :]:
                if "=" in nxt:
                    break
                words.append(nxt)
            right = f"{key_value.rstrip(',')},{','.join(w.strip(',') for w in words)}" if key_value else "key=value"
            right = right if multirun or not key_value else f"--multirun {right}"
            raise ConfigError(
                f"{arg}: not an override (key=value); a sweep's values go after one key, joined by commas without spaces: {right}"
            )
        value = arg.split("=", 1)[1]
        if value.endswith(",") or value.startswith(",") or ",," in value:
            following = overrides[i + 1].strip(",") if i + 1 < len(overrides) and "=" not in overrides[i + 1] else ""
            right = ",".join(v for v in [*arg.split("=", 1)[1].split(","), following] if v)
            raise ConfigError(
                f"{arg}: a sweep's values are joined by commas without spaces: {arg.split('=', 1)[0]}={right}"
            )


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


def known_keys() -> list[str]:
    """Every key of the default config, dotted (`optimizer.lr`), with the config groups themselves."""
    cfg = OmegaConf.to_container(compose_config([]), resolve=False)
    groups = list(group_options())
    return groups + [k for k in _dotted(cfg) if k not in groups]


def _dotted(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in tree.items():
        keys += _dotted(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]
    return keys


def did_you_mean(key: str, known: list[str] | None = None) -> str:
    """` Did you mean optimizer.lr?` for a mistyped key: the same name (or a synonym) anywhere, else a close spelling
    of its last part among its own group's keys (or among all keys, for a top-level one)."""
    known = [k for k in (known if known is not None else known_keys()) if k != key]
    group, _, last = key.rpartition(".")
    wanted = {last, SYNONYMS.get(last, last)}
    matches = [k for k in known if k.split(".")[-1] in wanted]
    if not matches:
        pool = {k.split(".")[-1]: k for k in known if not group or k.rpartition(".")[0] == group}
        matches = [pool[c] for c in difflib.get_close_matches(last, list(pool), n=3, cutoff=0.75)]
    return f" Did you mean {' or '.join(matches[:3])}?" if matches else ""


def _unknown_key_hint(error: Exception) -> str | None:
    """Hydra's "Could not override 'x'. To append ... use +x" becomes the closest real keys: adding x would do nothing."""
    found = re.search(r"Could not override '([^']+)'", str(error))
    if not found:
        return None
    key = found.group(1)
    if key.startswith("hydra.launcher.") or key.startswith("hydra.sweeper."):
        group = key.split(".")[1]
        return (
            f"{key}: no such key for this {group}; its keys come with the {group} that has them "
            f"(hydra/launcher=parallel for n_jobs, hparams_search=optuna for n_trials); python -m lenet_exp --cfg hydra lists them"
        )
    if key.startswith("hydra."):
        return f"{key}: no such key (python -m lenet_exp --cfg hydra lists Hydra's keys)"
    return f"{key}: no such key.{did_you_mean(key)} (python -m lenet_exp --cfg job lists every key)"


def _plugin_hint(error: Exception) -> str | None:
    """lenet_exp's own Hydra plugins not found: the usual cause is setuptools' default editable install, which hides
    them from Hydra 1.3's plugin scan."""
    found = re.search(r"Could not find 'hydra/(sweeper|launcher)/(halving|fused)'", str(error))
    if not found:
        return None
    return (
        f"hydra/{found.group(1)}={found.group(2)}: Hydra cannot find lenet_exp's {found.group(2)} plugin; reinstall with "
        "pip install -e . --config-settings editable_mode=compat (or a plain pip install .)"
    )


def check_appended_keys(appended: list[str]) -> None:
    """A `+key=value` outside the groups that pass keys on (model, activation, optimizer) is read by nothing: refuse it."""
    groups = group_options()
    for arg in appended:
        key = arg.lstrip("+").split("=", 1)[0]
        if key not in groups and key.split(".")[0] not in (*PASSED_ON, *RULES):
            raise ConfigError(
                f"{arg}: nothing reads {key}, so it would be ignored.{did_you_mean(key)} (python -m lenet_exp --cfg job lists every key)"
            )


PASSED_ON = (
    "model",
    "activation",
    "optimizer",
)  # groups whose keys go to a class's constructor, which refuses unknown ones


def _one_line(error: Exception) -> str:
    """Hydra's multi-line message as one line, without the search path and object details; a list of available
    options stays, comma-separated, with the closest to what was asked for."""
    cause = f"{error}\n{error.__cause__}" if error.__cause__ and str(error.__cause__) not in str(error) else str(error)
    text = cause.split("Config search path")[0]
    parts, options = [], []
    for line in text.splitlines():
        if line.strip() in ("", "None"):
            continue
        if line.startswith((" ", "\t")):
            if parts and parts[-1].startswith("Available options"):
                options.append(line.strip())
            continue
        parts.append(line.strip())
    if options:
        asked = re.search(r"Could not find '(?:[^']*/)?([^'/]+)'", text)
        close = difflib.get_close_matches(asked.group(1), options, n=1) if asked else []
        parts[-1] += " " + ", ".join(options) + (f". Did you mean {close[0]}?" if close else "")
    return " ".join(parts)


def check_group_overrides(args: list[str]) -> None:
    """Refuse `group=option` overrides naming an option that does not exist, listing the options there are."""
    options = group_options()
    for arg in args:
        key, _, value = arg.lstrip("+~").partition("=")
        if key in options and value == "null":
            raise ConfigError(
                f"{key}=null: a group takes one of its options ({', '.join(options[key])}); "
                f"leave {key} out for its default" + (" (no search)" if key == "hparams_search" else "")
            )
        if key not in options or not value or "(" in value:
            continue  # not a group choice, or a sweep function such as choice(...)
        for option in value.split(","):
            if option not in options[key]:
                raise ConfigError(
                    f"{key}={option}: unknown option of group '{key}'; allowed: {', '.join(options[key])}"
                )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# Rules: name -> (predicate, what is allowed, in words)
INT_GE_1 = (lambda v: _is_int(v) and v >= 1, "an integer >= 1")
INT_GE_0 = (lambda v: _is_int(v) and v >= 0, "an integer >= 0")
SEED = (lambda v: _is_int(v) and 0 <= v < 2**32, "an integer in [0, 2**32)")
MAX_THREADS = 256  # beyond this torch's thread pool fails outright


def optional_int_ge_1(null_means: str, most: int | None = None) -> tuple:
    upper, words = (most, f" <= {most}") if most else (math.inf, "")
    return (lambda v: v is None or (_is_int(v) and 1 <= v <= upper), f"null ({null_means}) or an integer >= 1{words}")


def int_list(least: int, nonempty: bool) -> tuple:
    ok = lambda v: isinstance(v, (list, tuple)) and (v or not nonempty) and all(_is_int(x) and x >= least for x in v)  # noqa: E731
    return (ok, f"a {'non-empty ' if nonempty else ''}list of integers >= {least}")


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
        "threads": optional_int_ge_1("torch's default", MAX_THREADS),
        "eval_batch_size": INT_GE_1,
    },
}
OPTIMIZER_RULES = {
    "lr": (lambda v: _is_number(v) and v > 0, "a finite number > 0"),
    "momentum": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "weight_decay": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
    "betas": (
        lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v),
        "two numbers in [0, 1)",
    ),
    "eps": (lambda v: _is_number(v) and v > 0, "a finite number > 0"),
}
LENET = "lenet_exp.model.LeNet"
MODEL_RULES = {  # the keys of model/lenet.yaml
    "in_channels": INT_GE_1,
    "image_size": INT_GE_1,
    "conv_channels": int_list(1, nonempty=True),
    "kernel_size": INT_GE_1,
    "padding": INT_GE_0,
    "pool": choice("avg", "max"),
    "hidden": int_list(1, nonempty=False),
    "num_classes": INT_GE_1,
    "init": choice("xavier_uniform", "kaiming_uniform", "default"),
}


def _section(cfg: DictConfig, name: str, cls: type) -> Any:
    values = OmegaConf.to_container(cfg[name], resolve=True)
    allowed = [f.name for f in fields(cls)]
    for key in values:
        if key not in allowed:
            hint = did_you_mean(key, allowed).replace(" Did you mean ", f" Did you mean {name}.")
            raise ConfigError(f"{name}.{key}: unknown key; allowed keys: {', '.join(allowed)}.{hint}")
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
        for key, rule in (("seed", SEED), ("deterministic", BOOL)):
            check(key, cfg.get(key), rule)
        optimizer = OmegaConf.to_container(cfg.optimizer, resolve=True)
        for key, rule in OPTIMIZER_RULES.items():
            if key in optimizer:
                check(f"optimizer.{key}", optimizer[key], rule)
        return cls(
            seed=cfg.seed,
            deterministic=cfg.deterministic,
            data=_section(cfg, "data", DataSettings),
            trainer=_section(cfg, "trainer", TrainerSettings),
            device=_section(cfg, "device", DeviceSettings),
        )


def check_folder_path(path: Path, key: str, writable: bool = True) -> None:
    """Refuse a folder path that is a file, a broken link, lies under a file, or (`writable`) cannot be written, naming the key."""
    if "${" in str(path):
        raise ConfigError(
            f"{key}={path}: a folder name holding '${{' would be read as an interpolation by Hydra; rename the folder"
        )
    if any(len(part.encode()) > 255 for part in path.parts):
        raise ConfigError(
            f"{key}: a folder name in {str(path)[:60]}... is longer than the 255 bytes a file system allows; give a shorter one"
        )
    if path.is_symlink() and not path.exists():
        raise ConfigError(f"{key}={path}: is a broken link (it points to nothing); give a folder path")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}={path}: is a file, not a folder; give a folder path")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{key}={path}: {existing} is a file, so no folder can be made under it; give another path")
    if writable and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{key}={path}: {existing} is not writable here (read-only or no permission); give a folder you can write to"
        )


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


def check_model_keys(cfg: DictConfig) -> None:
    """LeNet's keys obey their rules and fit the data set: its channels, image size and number of classes."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    if model.get("_target_") != LENET:
        return  # another model class: building it and one training step check it (train.check_trainable)
    for key in model:
        if key != "_target_" and key not in MODEL_RULES:
            raise ConfigError(
                f"model.{key}: unknown key; allowed keys: {', '.join(MODEL_RULES)}.{did_you_mean(key, list(MODEL_RULES))}"
            )
    for key, rule in MODEL_RULES.items():
        if key in model:
            check(f"model.{key}", model[key], rule)
    spec = DATASETS[cfg.data.name]
    for key, needed in (("in_channels", spec.channels), ("image_size", spec.image_size)):
        if key in model and model[key] != needed:
            raise ConfigError(
                f"model.{key}={model[key]} does not fit {cfg.data.name} ({spec.channels}x{spec.image_size}x{spec.image_size} images): expected {needed}"
            )
    if model.get("num_classes", spec.classes) < spec.classes:
        raise ConfigError(
            f"model.num_classes={model['num_classes']} cannot fit {cfg.data.name}: its labels are 0-{spec.classes - 1}, so expected >= {spec.classes}"
        )
    if all(k in model for k in ("conv_channels", "kernel_size", "padding")):
        sizes = lenet_image_sizes(spec.image_size, model["conv_channels"], model["kernel_size"], model["padding"])
        if shrunk := [i + 1 for i, size in enumerate(sizes) if size < 1]:
            raise ConfigError(f"model: {shrink_message(spec.image_size, shrunk[0])}")


def cuda_surely_absent() -> bool:
    """True where no GPU driver is visible at all (Linux), so `device=cuda` can be refused without loading torch."""
    if not Path("/proc").is_dir():
        return False  # not Linux: only torch can tell
    devices = [*Path("/dev").glob("nvidia*"), Path("/dev/dxg"), Path("/dev/kfd"), Path("/proc/driver/nvidia")]
    return not any(p.exists() for p in devices)


def check_config(cfg: DictConfig) -> Settings:
    """Every rule a composed config must obey before anything runs: typed settings, optimizer values, the model's keys."""
    settings = Settings.from_cfg(cfg)
    check_model_keys(cfg)
    check_folder_path(Path(settings.data.root), "data.root", writable=False)  # written only by a download, checked then
    if settings.device.name == "cuda" and cuda_surely_absent():
        raise ConfigError(NO_CUDA)
    return settings


NO_CUDA = "device=cuda: CUDA is not available on this machine; use device=auto or device=cpu"
