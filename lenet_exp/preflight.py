"""The command line's pre-flight: every override checked before Hydra starts, each swept value composed and held to
the schema's rules (schema.check_config), so a refused command writes nothing and no sweep fails at its fifth job.
Every refusal raises ConfigError with one line naming the key, the value given and what is allowed."""

from __future__ import annotations

import re
from dataclasses import fields
from itertools import takewhile

from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lenet_exp.config import compose_config, group_options, hydra_message, known_keys, refusal
from lenet_exp.errors import ConfigError
from lenet_exp.overrides import is_hydra_override, listed, parse, split
from lenet_exp.plugins import on_cluster
from lenet_exp.schema import Settings, check_config, hint


def check_overrides(overrides: list[str], multirun: bool | None = None, printing: str | None = None) -> DictConfig:
    """Refuse bad command-line overrides before Hydra starts, every value of a swept key (search spaces aside); return
    the composed config with its `hydra` node, each sweep at its first value. `multirun=False` refuses sweeps, and so
    does `printing`, a flag that shows one config (--cfg)."""
    check_each_override(overrides, multirun)
    single, variants = first_values(overrides, multirun, printing)
    try:
        cfg = compose_config(single, with_hydra=True)
        here = not on_cluster(cfg)  # jobs on a cluster's nodes need no GPU here
        check_config(cfg, here)
        others = [compose_config([*single[:position], value, *single[position + 1 :]]) for position, value in variants]
        for other in others:  # the other values of each swept key, one at a time
            check_config(other, here)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(refusal(e)) from None
    except AssertionError:  # OmegaConf's own check, where an override reaches into a node Hydra holds as null
        named = " ".join(a for a in single if split(a)[0].startswith(("hydra.sweeper.", "hydra.launcher."))) or "hydra"
        raise ConfigError(f"{named}: no such part of Hydra's config with this sweeper and launcher") from None
    check_same_values(cfg, single, variants, others)
    check_one_split(cfg, others)
    if any(split(v)[0].startswith(("model", "activation")) for _, v in variants):
        from lenet_exp.build import check_buildable  # torch loads only for a sweep over the model itself

        for other in [cfg, *others]:
            check_buildable(other)
    return cfg


def check_one_split(cfg: DictConfig, others: list[DictConfig]) -> None:
    """A sweep's jobs all choose on the same split: with data.val_size > 0 on validation, with 0 on the test set, and
    jobs that chose on different splits cannot be ranked against each other (a search sweeper's values too)."""
    sizes = [OmegaConf.select(c, "data.val_size", default=0) for c in (cfg, *others)]
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    if "data.val_size" in params:
        given = listed(f"data.val_size={params['data.val_size']}")
        sizes += [int(v) for v in given if v.isdigit()]
    if len({size > 0 for size in sizes}) > 1:
        raise ConfigError(
            f"data.val_size: this sweep holds out a validation split for some jobs ({max(sizes)}) and none for others "
            "(0), so they would choose on different splits (validation, test) and could not be ranked against each "
            "other; sweep values above 0 only, or sweep the jobs without a split apart"
        )


def first_values(overrides: list[str], multirun: bool | None, printing: str | None) -> tuple[list, list]:
    """The overrides with each sweep at its first value, and the other values of each swept key as (position in the
    first list, override); a search space (interval, tag) is left to its search sweeper."""
    single, variants = [], []
    given: dict[str, tuple[str, bool]] = {}  # key -> (its override, a sweep)
    for arg in overrides:
        name, own, override = split(arg)[0], not is_hydra_override(arg), readable(arg)
        swept = override.is_sweep_override()
        if own and name in given and (swept or given[name][1]):  # Hydra would keep the last, whichever the folder says
            raise ConfigError(
                f"{arg}: {name} is given twice ({given[name][0]} too), so the sweep would not train the values it "
                f"names; give {name} once"
            )
        given[name] = (arg, swept)
        if swept and name.startswith("hydra.") and not name.startswith("hydra.sweeper.params."):  # one value a run
            raise ConfigError(
                f"{arg}: {name} is a setting of the sweep itself and takes one value; sweep keys of "
                "the experiment, or run the sweep once for each value in its own hydra.sweep.dir"
            )
        if not swept:
            single.append(arg)
        elif own and printing:
            raise ConfigError(f"{arg}: {printing} prints one composed config: give one value per key")
        elif own and multirun is False:
            raise ConfigError(
                f"{arg}: several values need --multirun: python -m lenet_exp --multirun {' '.join(overrides)}"
            )
        elif override.is_discrete_sweep():
            values = sweep_values(arg, override)
            variants += [(len(single), v) for v in values[1:]] if own else []
            single.append(values[0])
    return single, variants


def readable(arg: str):
    """Hydra's reading of an override, or a one-line refusal (with how to quote a value that needs it)."""
    try:
        return parse(arg)
    except HydraException as e:
        key, _, value = arg.partition("=")
        tip = f"; quote a value that holds '=', ',' or spaces: {key}='{value}'" if re.search("[=, ]", value) else ""
        raise ConfigError(f"{arg}: not a valid override ({hydra_message(e)}){tip}") from None


def sweep_values(arg: str, override) -> list[str]:
    """A sweep's values as overrides of its key; refused when it has none, or one value twice."""
    key = arg.partition("=")[0]
    try:
        values, parsed = list(override.sweep_string_iterator()), list(override.sweep_iterator())
    except Exception as e:
        raise ConfigError(f"{arg}: cannot list the values of this sweep ({hydra_message(e)})") from None
    if not values:
        raise ConfigError(f"{arg}: this sweep has no values; give at least one")
    if twice := next((values[i] for i, v in enumerate(parsed) if v in parsed[:i]), None):
        raise ConfigError(f"{arg}: {key} takes the value {twice} twice; give each value once")
    return [f"{key}={v}" for v in values]


def check_same_values(cfg: DictConfig, single: list[str], variants: list[tuple[int, str]], others: list) -> None:
    """Two values of a swept key that the config reads as one (`seed=0,00`: both 0) would train one job twice."""
    for position, first in enumerate(single):
        key = split(first)[0]
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
            then = split(composed[read.index(read[twice])][0])[1]
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
        if arg.lstrip("+").startswith(("hydra/sweeper=halving", "hydra/sweeper=ranged")):
            chosen = split(arg)[1]
            raise ConfigError(
                f"hydra/sweeper={chosen}: choose it through its preset, hparams_search={chosen}, which sets its keys "
                "(hydra.sweeper.eta, min_epochs, max_epochs"
                + (", n_trials, batch, sampler, seed)" if chosen == "ranged" else ")")
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
