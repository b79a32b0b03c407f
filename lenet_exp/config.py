"""The command line's pre-flight: overrides checked in one line before Hydra starts, and the composed config
turned into checked, typed settings.

The keys, their types and rules are declared once, in schema.py; defaults live in the YAML files under conf/.
Every refusal raises ConfigError with one line naming the key, the value given and what is allowed.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import fields
from importlib.resources import files
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lenet_exp.schema import INT_GE_0 as INT_GE_0  # rules the bench's arguments obey too
from lenet_exp.schema import INT_GE_1 as INT_GE_1
from lenet_exp.schema import (
    NO_CUDA,
    ConfigError,
    Settings,
    check_keys,
    check_model,
    hint,
    refused_value,
)

_SOURCE_CONF = Path(__file__).resolve().parent.parent / "conf"
# Run from a source checkout, Hydra reads conf/ at the repo top; installed, the copy shipped in the package.
CONFIG_PATH = str(_SOURCE_CONF) if (_SOURCE_CONF / "config.yaml").is_file() else "pkg://lenet_exp.conf"


def compose_config(overrides: list[str], with_hydra: bool = False) -> DictConfig:
    """The composed config outside the command line (tests, the benchmark), from the same config folder; a key or
    value the schema refuses raises ConfigError. `with_hydra` keeps the `hydra` node as the command would see it."""
    from hydra import compose, initialize_config_dir, initialize_config_module
    from hydra.errors import HydraException
    from hydra.version import VersionBase
    from omegaconf.errors import OmegaConfBaseException

    before = VersionBase.instance().getbase()  # process-wide: leave it as it was for whoever runs next
    if CONFIG_PATH.startswith("pkg://"):
        context = initialize_config_module(config_module="lenet_exp.conf", version_base="1.3")
    else:
        context = initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3")
    try:
        with context:
            cfg = compose("config", overrides=overrides, return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(refusal(e)) from None
    finally:
        VersionBase.instance().version_base = before
    check_keys(cfg)
    return cfg


def group_options() -> dict[str, list[str]]:
    """Each config group (model, optimizer, ...) and its options, read from the config folder."""
    root = files("lenet_exp.conf") if CONFIG_PATH.startswith("pkg://") else Path(CONFIG_PATH)
    groups = [d for d in root.iterdir() if d.is_dir() and d.name not in ("hydra", "__pycache__")]
    return {g.name: sorted(f.name[: -len(".yaml")] for f in g.iterdir() if f.name.endswith(".yaml")) for g in groups}


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
    """Refuse bad command-line overrides in one line before Hydra starts: unknown options and keys, bad syntax and
    bad values.

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
    check_appended_keys([a for a in overrides if a.startswith("+") and not is_hydra_override(a)])
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    parser, single, variants = OverridesParser.create(), [], []
    for arg in overrides:
        try:
            override = parser.parse_override(arg)
        except HydraException as e:
            key, value = arg.split("=", 1)
            quote = (
                f"; quote a value that holds '=', ',' or spaces: {key}='{value}'" if re.search("[=, ]", value) else ""
            )
            raise ConfigError(f"{arg}: not a valid override ({_one_line(e)}){quote}") from None
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
        check_config(cfg)
        others = [compose_config([*single[:position], value, *single[position + 1 :]]) for position, value in variants]
        for other in others:  # the other values of each swept key, one at a time
            check_config(other)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(refusal(e)) from None
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
    """Sweep values typed with spaces (`optimizer.lr=0.1 0.3`, `activation=sigmoid, relu`): one line with the right
    form."""
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
                f"{arg}: not an override (key=value); a sweep's values go after one key, joined by commas without "
                f"spaces: {right}"
            )
        value = arg.split("=", 1)[1]
        if value.endswith(",") or value.startswith(",") or ",," in value:
            following = overrides[i + 1].strip(",") if i + 1 < len(overrides) and "=" not in overrides[i + 1] else ""
            right = ",".join(v for v in [*arg.split("=", 1)[1].split(","), following] if v)
            raise ConfigError(
                f"{arg}: a sweep's values are joined by commas without spaces: {arg.split('=', 1)[0]}={right}"
            )


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
    """` Did you mean optimizer.lr?` for a mistyped key, among `known` (every key of the config when not given)."""
    return hint(key, known if known is not None else known_keys())


def _unknown_key_hint(error: Exception) -> str | None:
    """Hydra's "Could not override 'x'. To append ... use +x" becomes the closest real keys: adding x would do
    nothing."""
    found = re.search(r"Could not override '([^']+)'", str(error))
    if not found:
        return None
    key = found.group(1)
    if key.startswith("hydra.launcher.") or key.startswith("hydra.sweeper."):
        group = key.split(".")[1]
        return (
            f"{key}: no such key for this {group}; its keys come with the {group} that has them "
            "(hydra/launcher=parallel for n_jobs, hparams_search=optuna for n_trials); "
            "python -m lenet_exp --cfg hydra lists them"
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
        f"hydra/{found.group(1)}={found.group(2)}: Hydra cannot find lenet_exp's {found.group(2)} plugin; "
        "reinstall with pip install -e . --config-settings editable_mode=compat (or a plain pip install .)"
    )


def check_appended_keys(appended: list[str]) -> None:
    """A `+key=value` outside the config's own keys is read by nothing: refuse it. (A new key in a section is the
    schema's to refuse, or, in the groups that pass keys on, the constructor's.)"""
    groups, top = group_options(), [f.name for f in fields(Settings)]
    for arg in appended:
        key = arg.lstrip("+").split("=", 1)[0]
        if key not in groups and key.split(".")[0] not in top:
            raise ConfigError(
                f"{arg}: nothing reads {key}, so it would be ignored.{did_you_mean(key)} "
                "(python -m lenet_exp --cfg job lists every key)"
            )


def refusal(error: Exception) -> str:
    """Hydra's or OmegaConf's multi-line refusal as lenet_exp's one line: a value against its key's rule, an unknown
    key with the closest real ones, a plugin Hydra cannot find, else the message itself on one line."""
    return refused_value(error) or _unknown_key_hint(error) or _plugin_hint(error) or _one_line(error)


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


LENET = "lenet_exp.model.LeNet"  # the model class whose jobs the fused launcher may train together


def check_folder_path(path: Path, key: str, writable: bool = True) -> None:
    """Refuse a folder path that is a file, a broken link, lies under a file, or (`writable`) cannot be written,
    naming the key."""
    if "${" in str(path):
        raise ConfigError(
            f"{key}={path}: a folder name holding '${{' would be read as an interpolation by Hydra; rename the folder"
        )
    if any(len(part.encode()) > 255 for part in path.parts):
        raise ConfigError(
            f"{key}: a folder name in {str(path)[:60]}... is longer than the 255 bytes a file system allows; "
            "give a shorter one"
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
            f"{key}={path}: {existing} is not writable here (read-only or no permission); "
            "give a folder you can write to"
        )


def cuda_surely_absent() -> bool:
    """True where no GPU driver is visible at all (Linux), so `device=cuda` can be refused without loading torch."""
    if not Path("/proc").is_dir():
        return False  # not Linux: only torch can tell
    devices = [*Path("/dev").glob("nvidia*"), Path("/dev/dxg"), Path("/dev/kfd"), Path("/proc/driver/nvidia")]
    return not any(p.exists() for p in devices)


def check_config(cfg: DictConfig) -> Settings:
    """Every rule a composed config must obey before anything runs: the typed settings, the model's keys against
    the data set, the data folder, a CUDA device where one is asked for."""
    settings = Settings.from_cfg(cfg)
    check_model(settings)
    check_folder_path(Path(settings.data.root), "data.root", writable=False)  # written only by a download, checked then
    if settings.device.name == "cuda" and cuda_surely_absent():
        raise ConfigError(NO_CUDA)
    return settings
