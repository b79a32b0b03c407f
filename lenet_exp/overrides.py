"""Command-line overrides, read one way everywhere: an override's key and value, whether it sweeps, the keys a sweep
varies, a value written back as an override, and a grid expanded into its jobs' overrides.

Swept keys are the overrides with several values or a sweep function (`optimizer.lr=0.1,0.3`, `range(...)`,
`choice(...)`) and the keys of `hydra.sweeper.params` (what a search preset searches); keys that say how to sweep
(`hydra.*`, `hparams_search`) are none of them.
"""

from __future__ import annotations

import itertools
import json
import re

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException

IGNORED = ("hydra.", "hparams_search")  # overrides that say how to sweep, not what is trained


def split(override: str) -> tuple[str, str]:
    """(key, value as typed) of `+optimizer.lr=0.1`: ("optimizer.lr", "0.1"); the key without its + or ~."""
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def key_of(override: str) -> str:
    """The key an override sets: `optimizer.lr` of `+optimizer.lr=0.1`."""
    return split(override)[0]


def as_dict(overrides: list | None) -> dict[str, str]:
    """Overrides as key -> value text, without those that say how to sweep (IGNORED)."""
    pairs = [split(o) for o in overrides or [] if isinstance(o, str) and "=" in o]
    return {k: v for k, v in pairs if not k.startswith(IGNORED)}


def parse(override: str) -> Override:
    """Hydra's reading of one override; HydraException where its grammar refuses it."""
    return OverridesParser.create().parse_override(override)


def is_sweep(override: str) -> bool:
    """`key=a,b` or a sweep function: several values (an override Hydra cannot read is judged later)."""
    try:
        return parse(override).is_sweep_override()
    except HydraException:
        return False


def is_hydra_override(override: str) -> bool:
    """`hydra.run.dir=...` or `hydra/launcher=...`: how to run, not what to train."""
    return override.lstrip("+~").startswith("hydra")


def swept_keys(overrides: list[str], sweeper_params=None) -> list[str]:
    """The keys a command sweeps, in order: a search sweeper's params, then the overrides with several values."""
    keys = [*(sweeper_params or {}), *(key_of(o) for o in overrides if "=" in o and is_sweep(o))]
    return [k for k in dict.fromkeys(keys) if not k.startswith(IGNORED)]


def listed(override: str) -> list[str]:
    """The values an override gives, as text: each of a sweep's (`a,b`, `choice(a,b)`, `range(...)`), else its one
    value, unquoted; the value as typed where Hydra cannot read it (its refusal comes later)."""
    try:
        parsed = parse(override)
    except HydraException:
        return [split(override)[1]]
    if parsed.is_discrete_sweep():
        return list(parsed.sweep_string_iterator())
    return [parsed.value() if isinstance(parsed.value(), str) else split(override)[1]]


def quoted(text: str) -> str:
    """An override value Hydra reads back exactly, whatever it holds: `=`, `,`, quotes, spaces, `${`, non-ASCII."""
    text = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", text)  # a literal ${, not an interpolation
    # backslashes before a quote or the end
    text = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), text)
    return f"'{text}'"


def value_text(value) -> str:
    """A saved value as an override writes it: `max`, `5000`, `[6,16]`, `null`."""
    if isinstance(value, str):  # quoted where Hydra's grammar would read it otherwise: "my data,v2"
        return value if re.fullmatch(r"[\w./@+-]*", value) else json.dumps(value)
    return json.dumps(value, separators=(",", ":"))


def param_overrides(params) -> list[str]:
    """A sweeper's `params` as overrides, each value as its YAML gave it: a sweep (`0.1,0.3`) as typed, a single
    value as a user types it (`true`, not Python's `True`)."""
    return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in (params or {}).items()]


def value_of(config: dict, choices: dict, key: str) -> str:
    """The value a config holds for `key`, as an override writes it: a config group's choice (`activation` ->
    `relu`), else the composed value (`optimizer.lr` -> `0.9`, `model.conv_channels` -> `[6,16]`); empty where it
    holds none."""
    if key in choices:
        return str(choices[key])
    value = config
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None or isinstance(value, dict) else value_text(value)


def grid(overrides: list[str]) -> list[list[str]]:
    """Every combination of the overrides' values, each a job's overrides, in the order Hydra's basic sweeper gives
    them (a key given twice: its last value); ValueError for a search space (interval, tag), which no grid lists."""
    choices: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        if override.is_sweep_override() and not override.is_discrete_sweep():
            raise ValueError(f"{key}: a search space, not a list of values; a grid takes lists, range() and choice()")
        values = override.sweep_string_iterator() if override.is_sweep_override() else []
        choices[key] = [f"{key}={v}" for v in values] or [f"{key}={override.get_value_element_as_str()}"]
    return [list(point) for point in itertools.product(*choices.values())]


def setting_of(overrides: dict[str, str], keys: list[str] | None = None) -> tuple:
    """A job's setting: its values of `keys` (all its overrides by default) but seed; jobs that differ only in seed
    share one."""
    return tuple((k, overrides.get(k)) for k in (keys if keys is not None else overrides) if k != "seed")
