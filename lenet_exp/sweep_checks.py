"""A sweep's pre-flight, before Hydra starts it: sweep syntax where it can work, the launcher's and sweeper's keys held
to their rules (and what the Slurm cluster can run), the halving search's own rules, and a sweep folder that holds
this sweep or nothing (a rerun may change only what cannot change a job's figures)."""

from __future__ import annotations

import importlib.util
import re
import shutil
from dataclasses import fields, is_dataclass
from pathlib import Path

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lenet_exp.cluster import check_cluster
from lenet_exp.config import compose_config, no_plugin_key, refusal
from lenet_exp.errors import ConfigError, FolderRefused
from lenet_exp.files import DamagedRecord
from lenet_exp.overrides import is_hydra_override, is_sweep, key_of, listed, parse, split, swept_keys, value_text
from lenet_exp.plugins import (
    basic_sweeper,
    halves,
    needs_sbatch,
    on_cluster,
    one_at_a_time,
    other_rules,
    ours,
    samples,
)
from lenet_exp.run_folder import RunFolder
from lenet_exp.schema import check, check_config, check_value
from lenet_exp.settings import RESUMABLE_CHANGES, first_difference
from lenet_exp.sweep_record import SWEEP_FILES, earlier_identity, sweep_identity
from lenet_exp.words import one_line, plural


def check_run_mode(cfg: DictConfig, overrides: list[str], multirun: bool) -> None:
    """Sweep syntax where it can work: several values only with --multirun, search spaces only with a sweeper that
    takes them, and job folders that stay inside the sweep folder."""
    swept = [o for o in overrides if not key_of(o).startswith("hydra.") and is_sweep(o)]
    if swept and not multirun:
        raise ConfigError(
            f"{swept[0]}: several values need --multirun: python -m lenet_exp --multirun {' '.join(overrides)}"
        )
    basic = basic_sweeper(cfg)
    if not multirun and not basic:
        preset = next((o for o in overrides if key_of(o) == "hparams_search"), "the sweeper")
        raise ConfigError(f"{preset} searches over a sweep: add --multirun")
    if multirun:
        check_plugin_settings(cfg)
    if multirun and basic:
        for text in (o for o in swept if not parse(o).is_discrete_sweep()):
            raise ConfigError(
                f"{text}: a search space needs a search sweeper (hparams_search=optuna); "
                "the plain sweep takes lists (a,b,c), range(start,stop,step) and choice(a,b)"
            )
    if halves(cfg):
        check_halving(cfg, overrides, multirun, swept)
    if samples(cfg):
        check_ranges(cfg, overrides)
    if one_at_a_time(cfg):
        check_knobs(cfg, overrides)
    for subdir in (split(a)[1].strip("'\"") for a in overrides if a.lstrip("+").startswith("hydra.sweep.subdir=")):
        if not subdir or ".." in Path(subdir).parts or subdir.startswith("/"):
            raise ConfigError(
                f"hydra.sweep.subdir={subdir}: job folders must stay inside the sweep folder (no '..', no absolute "
                "path, not empty)"
            )
        if "/" in subdir.strip("/"):
            raise ConfigError(
                f"hydra.sweep.subdir={subdir}: a job's folder is one name inside the sweep folder, which the summary "
                "reads its jobs from (no '/'): name it with ${{hydra.job.num}} and no folder of folders"
            )
        if not any(part in subdir for part in ("hydra.job.num", "hydra.job.id", "lenet_exp.job_dirname")):
            raise ConfigError(
                f"hydra.sweep.subdir={subdir}: every job needs a folder of its own: keep ${{hydra.job.num}} in it"
            )


def check_plugin_settings(cfg: DictConfig) -> None:
    """The launcher's and the sweeper's own keys, checked before Hydra hands them to the plugins: lenet_exp's own
    plugins by the rules of their settings classes, the few (typed) keys lenet_exp relies on of the others' by the
    rules in plugins.OTHERS; and what the Slurm cluster can run, before anything is written or submitted."""
    for part in ("launcher", "sweeper"):
        node, prefix, kind = cfg.hydra[part], f"hydra.{part}.", OmegaConf.get_type(cfg.hydra[part])
        if is_dataclass(kind) and (new := [k for k in node if k not in {f.name for f in fields(kind)}]):
            raise ConfigError(no_plugin_key(f"{prefix}{new[0]}", kind))  # a `+key` its plugin would choke on
        if ours(cfg, part):
            check(OmegaConf.to_object(node), prefix)
        for key, rule in other_rules(cfg, part).items():
            check_value(f"{prefix}{key}", node.get(key), rule)
    if on_cluster(cfg):
        check_cluster(OmegaConf.to_container(cfg.hydra.launcher, resolve=True), str(cfg.device.name))
    elif needs_sbatch(cfg) and not shutil.which("sbatch"):
        raise ConfigError(
            "hydra/launcher=submitit_slurm needs Slurm, and sbatch is not found here; use hydra/launcher=parallel "
            "(or submitit_local) on this machine"
        )


def check_halving(cfg: DictConfig, overrides: list[str], multirun: bool, swept: list[str]) -> None:
    """hparams_search=halving (with --multirun, as check_run_mode holds): a grid to halve, a last rung no shorter than
    the first, epochs and folders it sets itself. (Its keys' own rules are checked with the other plugins'.)"""
    for o in overrides if not samples(cfg) else []:
        if "=" in o and re.search(r"\b(interval|tag)\(", split(o)[1]):
            raise ConfigError(
                f"{o}: hparams_search=halving halves a grid (lists, range(...), choice(...)); "
                "interval(...) is a search space for hparams_search=ranged (or optuna)"
            )
    sweeper = cfg.hydra.sweeper
    key = "trainer.epochs" if sweeper.max_epochs is None else "hydra.sweeper.max_epochs"
    if (epochs := OmegaConf.select(cfg, key)) < sweeper.min_epochs:
        raise ConfigError(
            f"{key}={epochs} is below hydra.sweeper.min_epochs={sweeper.min_epochs}: "
            "the last rung must train at least as long as the first"
        )
    for arg in swept:
        if key_of(arg) == "trainer.epochs":
            raise ConfigError(
                f"{arg}: halving sets each rung's epochs itself; give hydra.sweeper.min_epochs and max_epochs "
                "(or trainer.epochs) instead"
            )
    if any(a.lstrip("+").startswith("hydra.sweep.subdir=") for a in overrides):
        raise ConfigError(
            "hydra.sweep.subdir: halving names its job folders itself, so each setting keeps one folder across rungs"
        )
    check_schedule_spans_the_search(cfg, epochs, [a for a in swept if key_of(a) == "scheduler.epochs"])


def check_ranges(cfg: DictConfig, overrides: list[str]) -> None:
    """hparams_search=ranged: Optuna installed, every range one it can draw from, and each range's ends and each
    choice a value the command itself would take (as a list's values are checked)."""
    if importlib.util.find_spec("optuna") is None:
        raise ConfigError("hparams_search=ranged draws with Optuna, which is not installed: pip install '.[optuna]'")
    from lenet_exp.ranged import space  # the search's own module, loaded for a ranged search only

    params = OmegaConf.to_container(cfg.hydra.sweeper.params) if cfg.hydra.sweeper.params else {}
    try:
        found, fixed = space(params, [o for o in overrides if not is_hydra_override(o) and "=" in o])
    except (ValueError, HydraException) as e:
        raise ConfigError(f"{e}" if isinstance(e, ValueError) else f"hydra.sweeper.params: {one_line(e)}") from None
    base = [o for o in fixed if key_of(o) != "seed"]
    for r in found:
        ends = r.choices if r.choices is not None else [f"{r.low:g}", f"{r.high:g}"]
        check_each(base, [(r.key, value) for value in ends], "the search would draw")
        held = OmegaConf.select(compose_config([*base, f"{r.key}={ends[0]}"]), r.key)
        if r.choices is None and not r.integer and isinstance(held, int) and not isinstance(held, bool):
            raise ConfigError(f"{r.key}: it takes whole numbers, and interval() draws fractions; spell the range "
                              f"{r.key}='int(interval({r.low:g}, {r.high:g}))'")  # fmt: skip


def check_knobs(cfg: DictConfig, overrides: list[str]) -> None:
    """hydra/sweeper=around (hparams_search=exercises): lists to try, each value one the command itself would take
    with the rest at the base (a model it can build too)."""
    from lenet_exp.around import knobs  # the sweeper's own module, loaded for its sweeps only

    params = OmegaConf.to_container(cfg.hydra.sweeper.params) if cfg.hydra.sweeper.params else {}
    try:
        values, fixed, _ = knobs(params, [o for o in overrides if not is_hydra_override(o) and "=" in o])
    except (ValueError, HydraException) as e:
        raise ConfigError(f"{e}" if isinstance(e, ValueError) else f"hydra.sweeper.params: {one_line(e)}") from None
    base = [o for o in fixed if key_of(o) != "seed"]
    check_each(base, [(key, value) for key, listed_values in values.items() for value in listed_values], "it would try")


def check_each(base: list[str], pairs: list[tuple[str, str]], doing: str) -> None:
    """Each (key, value) with the rest at `base`: a config the command would take, and a model it can build."""
    for key, value in pairs:
        try:
            composed = compose_config([*base, f"{key}={value}"])
            check_config(composed)
            if key.startswith(("model", "activation")):
                from lenet_exp.build import check_buildable  # torch loads only for a knob of the model itself

                check_buildable(composed)
        except (ConfigError, HydraException, OmegaConfBaseException) as e:
            why = e if isinstance(e, ConfigError) else refusal(e)
            raise ConfigError(f"{key}: {doing} {value}, which is refused: {why}") from None


def check_schedule_spans_the_search(cfg: DictConfig, last_rung: int, swept: list[str]) -> None:
    """A schedule given its own length must reach the search's last rung, or the jobs that get there would train past
    its end (null, the search makes it as long as its last rung)."""
    values = [v for a in swept for v in listed(a)] if swept else [OmegaConf.select(cfg, "scheduler.epochs")]
    short = next((int(v) for v in values if v not in (None, "null") and int(v) < last_rung), None)
    if short is not None and (OmegaConf.select(cfg, "scheduler.name") != "none" or swept):
        raise ConfigError(
            f"scheduler.epochs={short} ends the learning-rate schedule before the search's last rung ({last_rung} "
            f"epochs): the jobs that reach it would train past its end; give scheduler.epochs={last_rung} or more, or "
            "leave it null (the search then makes it as long as its last rung)"
        )


def check_sweep_folder(sweep_dir: Path, overrides: list[str], cfg: DictConfig) -> None:
    """Refuse to sweep into a folder that holds something else: a single run, other files, or a sweep of other settings.

    A rerun may change only what cannot change a job's figures (more epochs to train to, the data's location,
    the device, the launcher) and only where the sweep does not vary it. Fewer epochs than its jobs have trained
    are refused too.
    """
    then = earlier_identity(sweep_dir)
    if then is None:
        others = sorted(p.name for p in sweep_dir.iterdir() if p.name != ".submitit")
        if others:
            what = "a single run" if (sweep_dir / ".hydra").is_dir() else f"other files ({', '.join(others[:3])})"
            raise FolderRefused(f"{sweep_dir} holds {what}, not a sweep; choose a new hydra.sweep.dir")
        return
    # a file no sweep writes, or a folder where a sweep writes a file: not this project's doing
    strangers = sorted(
        p.name for p in sweep_dir.iterdir() if (p.is_dir() == (p.name in SWEEP_FILES)) and p.name != ".submitit"
    )
    if strangers:
        raise FolderRefused(
            f"{sweep_dir} holds things no sweep writes there ({', '.join(strangers[:3])}); move them away, or choose "
            "a new hydra.sweep.dir"
        )
    now = sweep_identity(overrides, cfg)
    given = then.get("overrides") or []
    refuse = (
        f"{sweep_dir} holds a sweep of other settings ({{}}); rerun it as it was ({' '.join(given)}), "
        "or choose a new hydra.sweep.dir"
    )
    swept = set(then.get("swept") or []) | set(now["swept"])
    before = _by_key(given, swept)
    if diff := _override_difference(before, _unrestored(before, _by_key(overrides, swept), then.get("settings") or {})):
        raise FolderRefused(refuse.format(diff))
    if swept_keys(given) != swept_keys(overrides):
        raise FolderRefused(
            refuse.format(
                f"the swept keys in another order ({', '.join(swept_keys(overrides))}), which numbers the jobs "
                "differently"
            )
        )
    if diff := first_difference(then.get("sweeper") or {}, now["sweeper"], added={}):
        raise FolderRefused(
            f"{sweep_dir} holds a sweep run with other sweeper settings (hydra.sweeper: {diff}); rerun it with the "
            f"hydra.sweeper values it had, or choose a new hydra.sweep.dir"
        )
    if diff := first_difference(then.get("settings") or {}, now["settings"]):
        raise FolderRefused(_settings_refusal(sweep_dir, diff, given, then.get("settings") or {}, refuse))
    if "trainer.epochs" not in swept:
        _check_epochs(sweep_dir, cfg)


def _settings_refusal(sweep_dir: Path, diff: str, given: list[str], settings: dict, refuse: str) -> str:
    """Why a fixed setting differs, and the command that reruns the sweep as it was: its own, or, where no override
    of it set the key (a config file, a preset, changed since), its own with the key at its earlier value."""
    key = key_of(diff)
    if key in {key_of(o) for o in given} or key not in settings:
        return refuse.format(diff)
    again = " ".join([*given, f"{key}={value_text(settings[key])}"])
    return (
        f"{sweep_dir} holds a sweep of other settings ({diff}; a config file has changed since); rerun it as it was "
        f"({again}), or choose a new hydra.sweep.dir"
    )


def _check_epochs(sweep_dir: Path, cfg: DictConfig) -> None:
    """Refuse fewer epochs than the folder's jobs have trained (a halving search trains to its last rung)."""
    trained = max((_epochs_trained(job) for job in sweep_dir.iterdir() if job.is_dir()), default=0)
    key, asked = "trainer.epochs", cfg.trainer.epochs
    if halves(cfg) and OmegaConf.select(cfg, "hydra.sweeper.max_epochs"):
        key, asked = "hydra.sweeper.max_epochs", cfg.hydra.sweeper.max_epochs
    if asked < trained:
        raise FolderRefused(
            f"{sweep_dir} holds jobs trained for {plural(trained, 'epoch')} already; {key}={asked} asks for fewer. "
            f"Give {key}={trained} or more to continue them, or choose a new hydra.sweep.dir"
        )


def _by_key(overrides: list[str], swept: set[str]) -> dict[str, str]:
    """Overrides as key -> value text, without the keys a rerun may change (unless the sweep varies them)."""
    pairs = (o.partition("=")[::2] for o in overrides if "=" in o)  # the key as typed: +key and key are two
    return {k: v for k, v in pairs if key_of(k) in swept or not key_of(k).startswith(RESUMABLE_CHANGES)}


def _unrestored(before: dict[str, str], now: dict[str, str], settings: dict) -> dict[str, str]:
    """The overrides of a rerun less those that only restore what the sweep ran with (a key no override of it gave,
    added at its recorded value, as a refusal asks where a config file has changed since): the same sweep."""
    return {k: v for k, v in now.items() if k in before or k not in settings or v != value_text(settings[k])}


def _override_difference(then: dict[str, str], now: dict[str, str]) -> str | None:
    for key in [*then, *(k for k in now if k not in then)]:
        if key not in now:
            return f"{key}={then[key]} is missing"
        if key not in then:
            return f"{key}={now[key]} is new"
        if then[key] != now[key]:
            return f"{key}={now[key]} where it has {key}={then[key]}"
    return None


def _epochs_trained(job_dir: Path) -> int:
    """Epochs a job folder has trained, from its metrics.json (0 when it has none or it is not a run's record)."""
    try:
        return (RunFolder(job_dir).metrics() or {}).get("epochs_completed") or 0
    except DamagedRecord:
        return 0
