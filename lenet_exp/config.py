"""The command line's pre-flight: overrides checked before Hydra starts, and the composed config turned into
checked, typed settings (keys, types and rules are declared in schema.py, defaults in conf/). Every refusal raises
ConfigError with one line naming the key, the value given and what is allowed."""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import fields, is_dataclass
from importlib.resources import files
from itertools import takewhile
from pathlib import Path

from hydra import compose, initialize_config_dir, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.version import VersionBase
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException, ValidationError

from lenet_exp.data import DATASETS, DataError, find_files
from lenet_exp.schema import INT_GE_0 as INT_GE_0  # rules the bench's arguments obey too
from lenet_exp.schema import INT_GE_1 as INT_GE_1
from lenet_exp.schema import NO_CUDA, ConfigError, Settings, check, check_keys, hint
from lenet_exp.words import plural

_SOURCE_CONF = Path(__file__).resolve().parent.parent / "conf"
# Run from a source checkout, Hydra reads conf/ at the repo top; installed, the copy shipped in the package.
CONFIG_PATH = str(_SOURCE_CONF) if (_SOURCE_CONF / "config.yaml").is_file() else "pkg://lenet_exp.conf"


def conf_file(relative: str):
    """A file of the config tree (`hparams_search/halving.yaml`), wherever CONFIG_PATH finds it."""
    if CONFIG_PATH.startswith("pkg://"):
        from importlib.resources import files

        return files("lenet_exp.conf").joinpath(relative)
    return Path(CONFIG_PATH) / relative


PATH_MAX = os.pathconf("/", "PC_PATH_MAX") if hasattr(os, "pathconf") else 260
PATH_ROOM = PATH_MAX - 512  # a sweep's job folder names (<= 200 bytes, see sweep.MAX_NAME) and the files in them
LENET = "lenet_exp.model.LeNet"  # the model class whose jobs the fused launcher may train together


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


def quoted(text: str) -> str:
    """An override value Hydra reads back exactly, whatever it holds: `=`, `,`, quotes, spaces, `${`, non-ASCII."""
    text = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", text)  # a literal ${, not an interpolation
    # backslashes before a quote or the end
    text = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), text)
    return f"'{text}'"


def is_hydra_override(arg: str) -> bool:
    """`hydra.run.dir=...` or `hydra/launcher=...`: how to run, not what to train."""
    return arg.lstrip("+~").startswith("hydra")


def check_overrides(overrides: list[str], multirun: bool | None = None, printing: str | None = None) -> DictConfig:
    """Refuse bad command-line overrides before Hydra starts, every value of a swept key (search spaces aside); return
    the composed config with its `hydra` node, each sweep at its first value. `multirun=False` refuses sweeps, and so
    does `printing`, a flag that shows one config (--cfg)."""
    check_each_override(overrides, multirun)
    parser, single, variants = OverridesParser.create(), [], []  # each override at its first value; other values
    given: dict[str, tuple[str, bool]] = {}  # key -> (its override, a sweep)
    for arg in overrides:
        key, _, value = arg.partition("=")
        try:
            override = parser.parse_override(arg)
        except HydraException as e:
            tip = f"; quote a value that holds '=', ',' or spaces: {key}='{value}'" if re.search("[=, ]", value) else ""
            raise ConfigError(f"{arg}: not a valid override ({_one_line(e)}){tip}") from None
        own = not is_hydra_override(arg)
        name, swept = key.lstrip("+~"), override.is_sweep_override()
        if own and name in given and (swept or given[name][1]):  # Hydra would keep the last, whichever the folder says
            raise ConfigError(
                f"{arg}: {name} is given twice ({given[name][0]} too), so the sweep would not train the values it "
                f"names; give {name} once"
            )
        given[name] = (arg, swept)
        if not override.is_sweep_override():
            single.append(arg)
        elif own and printing:
            raise ConfigError(f"{arg}: {printing} prints one composed config: give one value per key")
        elif own and multirun is False:
            raise ConfigError(
                f"{arg}: several values need --multirun: python -m lenet_exp --multirun {' '.join(overrides)}"
            )
        elif override.is_discrete_sweep():  # a search space (interval, tag) is left to a search sweeper
            try:
                values, parsed = list(override.sweep_string_iterator()), list(override.sweep_iterator())
            except Exception as e:
                raise ConfigError(f"{arg}: cannot list the values of this sweep ({_one_line(e)})") from None
            if not values:
                raise ConfigError(f"{arg}: this sweep has no values; give at least one")
            if twice := next((values[i] for i, v in enumerate(parsed) if v in parsed[:i]), None):
                raise ConfigError(f"{arg}: {key} takes the value {twice} twice; give each value once")
            values = [f"{key}={v}" for v in values]
            variants += [(len(single), v) for v in values[1:]] if own else []
            single.append(values[0])
    try:
        cfg = compose_config(single, with_hydra=True)
        here = "lenet_exp_slurm" not in str(OmegaConf.select(cfg, "hydra.launcher._target_", default=""))
        check_config(cfg, here)
        others = [compose_config([*single[:position], value, *single[position + 1 :]]) for position, value in variants]
        for other in others:  # the other values of each swept key, one at a time
            check_config(other, here)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(refusal(e)) from None
    check_same_values(cfg, single, variants, others)
    if any(v.lstrip("+~").startswith(("model", "activation")) for _, v in variants):
        from lenet_exp.build import check_buildable  # torch loads only for a sweep over the model itself

        for other in [cfg, *others]:
            check_buildable(other)
    return cfg


def check_same_values(cfg: DictConfig, single: list[str], variants: list[tuple[int, str]], others: list) -> None:
    """Two values of a swept key that the config reads as one (`seed=0,00`: both 0) would train one job twice."""
    for position, first in enumerate(single):
        key = first.partition("=")[0].lstrip("+~")
        composed = [(first, cfg)] + [(v, o) for (p, v), o in zip(variants, others, strict=True) if p == position]
        if len(composed) < 2:
            continue  # not swept
        read = [  # a group's own options: not keys
            OmegaConf.select(c, key, default=composed, throw_on_resolution_failure=False) for _, c in composed
        ]
        if len(read) < 2 or any(r is composed for r in read):
            continue
        read = [OmegaConf.to_container(r) if isinstance(r, (DictConfig, ListConfig)) else r for r in read]
        if twice := next((i for i, r in enumerate(read) if r in read[:i]), None):
            then = composed[read.index(read[twice])][0].partition("=")[2]
            raise ConfigError(
                f"{key}={composed[twice][0].partition('=')[2]}: {key} reads it as {read[twice]!r}, the same as "
                f"{key}={then}, so one job would train twice; give each value once"
            )


def check_each_override(overrides: list[str], multirun: bool | None = None) -> None:
    """Each override on its own, before Hydra reads it: sweep values typed with spaces (`optimizer.lr=0.1 0.3`) get
    their right form; refused are a group's unknown option or null, the halving sweeper without its preset, a `+key`
    nothing reads and a `~key` lenet_exp reads (its default would silently stand in, or the run would break)."""
    options, top, seen = group_options(), [f.name for f in fields(Settings)], {}
    for i, arg in enumerate(overrides):
        name, eq, value = arg.partition("=")
        key, loose = name.lstrip("+~"), list(takewhile(lambda a: "=" not in a, overrides[i + 1 :]))
        if not key:
            raise ConfigError(f"{arg}: no key before '='; an override is key=value, such as optimizer.lr=0.1")
        if max(len(part.encode()) for part in re.split("[./@]", key)) > 250:  # Hydra looks for a file of that name
            raise ConfigError(f"{key[:60]}...: a key longer than a file name may be (250 bytes); no key is so long")
        if key in seen:  # Hydra would keep one of the options without a word (a value's last one is documented)
            raise ConfigError(f"{arg}: the config group {key} is given twice ({seen[key]} too); give it once")
        if key in options or "/" in key:
            seen[key] = arg
        if not eq and not arg.startswith("~"):  # `~key` deletes a key
            before = next((a for a in reversed(overrides[:i]) if "=" in a), None)
            right = ",".join([before.rstrip(","), *(w.strip(",") for w in [arg, *loose])]) if before else "key=value"
            raise ConfigError(
                f"{arg}: not an override (key=value); a sweep's values go after one key, joined by commas without "
                f"spaces: {'--multirun ' if before and not multirun else ''}{right}"
            )
        if not arg.startswith("~") and (value.startswith(",") or value.endswith(",") or ",," in value):
            right = ",".join(v for v in [*value.split(","), *(w.strip(",") for w in loose[:1])] if v)
            raise ConfigError(f"{arg}: a sweep's values are joined by commas without spaces: {name}={right}")
        if arg.lstrip("+").startswith("hydra/sweeper=halving"):
            raise ConfigError(
                "hydra/sweeper=halving: choose it through its preset, hparams_search=halving, which sets its keys "
                "(hydra.sweeper.eta, min_epochs, max_epochs)"
            )
        if is_hydra_override(arg):
            continue
        if key in options and value == "null":
            raise ConfigError(
                f"{key}=null: a group takes one of its options ({', '.join(options[key])}); "
                f"leave {key} out for its default" + (" (no search)" if key == "hparams_search" else "")
            )
        if key in options and value and (unknown := [o for o in listed(arg) if o not in options[key]]):
            what = "unknown option" if unknown[0] == value else f"{unknown[0]} is not an option"
            raise ConfigError(f"{arg}: {what} of group '{key}'; allowed: {', '.join(options[key])}")
        if arg.startswith("+") and key not in options and key.split(".")[0] not in top:
            raise ConfigError(
                f"{arg}: nothing reads {key}, so it would be ignored.{hint(key, known_keys())} "
                "(python -m lenet_exp --cfg job lists every key)"
            )
        if arg.startswith("~") and any(k == key or k.startswith(f"{key}.") for k in known_keys()):
            raise ConfigError(f"{arg}: lenet_exp reads {key}; set another value (or option) instead of removing it")


def listed(arg: str) -> list[str]:
    """The values an override gives, as text: each of a sweep's (`a,b`, `choice(a,b)`, `range(...)`), else its one
    value, unquoted; the value as typed where Hydra cannot read it (its refusal comes later)."""
    try:
        override = OverridesParser.create().parse_override(arg)
    except HydraException:
        return [arg.partition("=")[2]]
    if override.is_discrete_sweep():
        return list(override.sweep_string_iterator())
    return [override.value() if isinstance(override.value(), str) else arg.partition("=")[2]]


def known_keys() -> list[str]:
    """Every key of the default config, dotted (`optimizer.lr`), with the config groups themselves."""
    cfg = OmegaConf.to_container(compose_config([]), resolve=False)
    groups = [g for g in group_options() if g]
    return groups + [k for k in _dotted(cfg) if k not in groups]


def _dotted(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in tree.items():
        keys += _dotted(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]
    return keys


def _plugin_hint(error: Exception) -> str | None:
    """lenet_exp's own Hydra plugins not found: setuptools' default editable install hides them from Hydra's scan."""
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
    return _plugin_hint(error) or _one_line(error)


def no_plugin_key(key: str, kind: type | None) -> str:
    """A launcher's or sweeper's key that its plugin's config class (`kind`) does not have, with the closest it has."""
    group = key.split(".")[1]
    known = [f"hydra.{group}.{f.name}" for f in (fields(kind) if is_dataclass(kind) else []) if f.name[0] != "_"]
    return (
        f"{key}: no such key for this {group}.{hint(key, known)} Other keys come with the {group} that has them "
        "(hydra/launcher=parallel for n_jobs, hparams_search=optuna for n_trials); "
        "python -m lenet_exp --cfg hydra lists them"
    )


def _one_line(error: Exception) -> str:
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
    fit the data set's channels, image size and classes), the data folder, a GPU driver where CUDA is asked for and
    the jobs train `here` (not on a cluster's nodes)."""
    settings = Settings.from_cfg(cfg)
    check(settings.model, "model.")
    model, name, spec = settings.model, settings.data.name, DATASETS[settings.data.name]
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
    schedule, epochs = settings.scheduler, settings.trainer.epochs
    if schedule.name != "none" and schedule.epochs is not None and epochs > schedule.epochs:
        raise ConfigError(
            f"trainer.epochs={epochs} runs past the end of the learning-rate schedule (scheduler.epochs="
            f"{schedule.epochs}): its last {plural(epochs - schedule.epochs, 'epoch')} would train at rate 0; give "
            f"trainer.epochs={schedule.epochs} or less (a run's schedule cannot change once it has trained)"
        )
    check_folder_path(Path(settings.data.root), "data.root", writable=False)  # written only by a download, checked then
    try:
        find_files(name, settings.data.root, settings.data.download)  # each swept data set too, before any job
    except DataError as e:
        raise ConfigError(str(e)) from None
    if here and settings.device.name == "cuda" and Path("/proc").is_dir():  # Linux: no GPU driver visible means no CUDA
        devices = [*Path("/dev").glob("nvidia*"), Path("/dev/dxg"), Path("/dev/kfd"), Path("/proc/driver/nvidia")]
        if not any(p.exists() for p in devices):  # refused without loading torch
            raise ConfigError(NO_CUDA)
    return settings
