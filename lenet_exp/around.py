"""One knob at a time around a base setting: the jobs of `hydra/sweeper=around` (the hparams_search=exercises preset).

The base is the config as composed: the preset's values and the command's single values. Each key the sweeper lists
(its params, or a list given on the command line) is changed alone to each of its other values, every other key
staying at the base; every setting trains with each seed of `seed`'s list. The jobs are numbered and named as a
sweep's, base first, and each job's overrides hold every listed key, so that the summary's "What mattered" reads
each key against the base.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lenet_exp.overrides import is_sweep, key_of, listed, param_overrides, parse, value_of


def knobs(params: dict, arguments: list[str]) -> tuple[dict[str, list[str]], list[str], list[list[str]]]:
    """The knobs with the values to try them at, the overrides every job takes as they are, and the seeds' overrides.
    The sweeper's params are knobs, one value or several; on the command line several values make a knob (or replace
    its list) and one value moves the base (and drops that knob). ValueError, naming it, for a search space
    (interval, tag), which lists no values."""
    values, fixed, seeds = {}, [], [[]]
    for override, from_params in [(o, True) for o in param_overrides(params)] + [(a, False) for a in arguments]:
        key = key_of(override)
        if is_sweep(override) and not parse(override).is_discrete_sweep():
            raise ValueError(f"{override}: one knob at a time tries listed values (a,b or choice(a,b)), not a range")
        if key == "seed":
            seeds = [[f"seed={v}"] for v in listed(override)]
        elif from_params or is_sweep(override):
            values[key] = listed(override)
        else:
            values.pop(key, None)
            fixed = [o for o in fixed if key_of(o) != key] + [override]
    return values, fixed, seeds


def jobs(config: DictConfig, params: dict, arguments: list[str]) -> list[list[str]]:
    """Every job's overrides, base setting first: the base as `config` holds it, then each listed key at each of its
    values other than the base's, each setting with every seed."""
    values, fixed, seeds = knobs(params, arguments)
    choices = OmegaConf.to_container(config.hydra.runtime.choices) if "hydra" in config else {}
    held = OmegaConf.to_container(config, resolve=False)
    base = {key: value_of(held, choices, key) or "null" for key in values}  # a key the config leaves null: null
    settings = [base] + [{**base, key: v} for key, listed_values in values.items() for v in listed_values
                         if v != base[key]]  # fmt: skip
    plain = [o for o in fixed if key_of(o) not in values]
    return [[*plain, *(f"{k}={v}" for k, v in setting.items()), *seed] for setting in settings for seed in seeds]


def start(config: DictConfig) -> Path:
    """The sweep folder, with the config the sweep ran with (multirun.yaml, as every sweeper of lenet_exp leaves)."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, sweep_dir / "multirun.yaml")
    return sweep_dir
