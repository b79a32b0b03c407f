"""What a sweep varies: its swept keys, and job folder names made of them (`3_activation=relu,optimizer.lr=0.1`).

Swept keys are the command-line overrides with several values or a sweep function
(`optimizer.lr=0.1,0.3`, `range(...)`, `choice(...)`) and the keys of `hydra.sweeper.params`
(what the Optuna preset searches). Keys every job shares stay out of the folder names.
"""

from __future__ import annotations

import json
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from lenet_exp.config import ConfigError
from lenet_exp.run_folder import RESUMABLE_CHANGES, FolderRefused, first_difference, settings_of

IGNORED = ("hydra.", "hparams_search")  # overrides that say how to sweep, not what is trained
SWEEP_FILES = ("multirun.yaml", "summary.csv", "summary.md", "summary.png", "summary_by_setting.csv", ".refused", "optimization_results.yaml", "halving.json")
# Sweeper keys that do not change what any job trains: a rerun may change them.
SWEEPER_EXTENSIONS = ("n_trials", "n_jobs", "max_batch_size", "storage")


def key_of(override: str) -> str:
    """The key an override sets: `optimizer.lr` of `+optimizer.lr=0.1`."""
    return override.split("=", 1)[0].lstrip("+~")


def swept_keys(sweep_dir: Path, sweeper_params: DictConfig | dict | None = None) -> list[str]:
    """The keys a sweep varies, from its multirun.yaml (basic sweeper) and the sweeper's params."""
    keys = list(sweeper_params or {})
    saved = sweep_dir / "multirun.yaml"
    if saved.is_file():
        hydra_cfg = OmegaConf.load(saved).hydra
        keys += list(hydra_cfg.sweeper.get("params") or {})
        parsed = OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task))
        keys += [o.key_or_group for o in parsed if o.is_sweep_override()]
    return [k for k in dict.fromkeys(keys) if not k.startswith(IGNORED)]


def dirname_for(overrides: list[str], swept: list[str]) -> str:
    """A job's folder name after its number: its values of the swept keys, sorted, as `key=value,...`."""
    keys = set(swept)
    return ",".join(sorted(o.lstrip("+~") for o in overrides if key_of(o) in keys)).replace("/", "_") or "job"


def job_dirname(*, _root_: DictConfig) -> str:
    """Resolver for hydra.sweep.subdir (`3_activation=relu,optimizer.lr=0.1`, after the job number)."""
    hc = _root_.hydra
    return dirname_for(list(hc.overrides.task), swept_keys(Path(hc.sweep.dir), hc.sweeper.get("params")))


OmegaConf.register_new_resolver("lenet_exp.job_dirname", job_dirname, replace=True)


def check_run_mode(cfg: DictConfig, overrides: list[str], multirun: bool) -> None:
    """Sweep syntax where it can work: several values only with --multirun, search spaces only with a sweeper that
    takes them, and job folders that stay inside the sweep folder."""
    parsed = [(o, p) for o, p in zip(overrides, OverridesParser.create().parse_overrides(overrides))]
    swept = [(o, p) for o, p in parsed if p.is_sweep_override() and not o.lstrip("+~").startswith("hydra.")]
    if swept and not multirun:
        raise ConfigError(f"{swept[0][0]}: several values need --multirun: python -m lenet_exp --multirun {' '.join(overrides)}")
    basic = str(OmegaConf.select(cfg, "hydra.sweeper._target_", default="")).endswith("BasicSweeper")
    if multirun and basic:
        for text, override in swept:
            if not override.is_discrete_sweep():
                raise ConfigError(f"{text}: a search space needs a search sweeper (hparams_search=optuna); "
                                  "the plain sweep takes lists (a,b,c), range(start,stop,step) and choice(a,b)")
    if str(OmegaConf.select(cfg, "hydra.sweeper._target_", default="")).endswith("HalvingSweeper"):
        check_halving(cfg, overrides, multirun, [o for o, _ in swept])
    for subdir in (a.split("=", 1)[1] for a in overrides if a.lstrip("+").startswith("hydra.sweep.subdir=")):
        if ".." in Path(subdir).parts or subdir.startswith("/"):
            raise ConfigError(f"hydra.sweep.subdir={subdir}: job folders must stay inside the sweep folder (no '..', no absolute path)")


def check_halving(cfg: DictConfig, overrides: list[str], multirun: bool, swept: list[str]) -> None:
    """hparams_search=halving: its keys in range, a sweep to halve, epochs it sets itself, folders it names itself."""
    if not multirun:
        raise ConfigError("hparams_search=halving searches over a sweep: add --multirun and the values to search")
    sweeper = cfg.hydra.sweeper
    rules = {
        "hydra.sweeper.eta": (sweeper.eta, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 2, "an integer >= 2"),
        "hydra.sweeper.min_epochs": (sweeper.min_epochs, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
        "hydra.sweeper.max_epochs": (sweeper.max_epochs, lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= sweeper.min_epochs),
                                     "null (trainer.epochs) or an integer >= hydra.sweeper.min_epochs"),
    }
    for key, (value, ok, allowed) in rules.items():
        if not ok(value):
            raise ConfigError(f"{key}={value!r} is not allowed: expected {allowed}")
    if (sweeper.max_epochs or cfg.trainer.epochs) < sweeper.min_epochs:
        raise ConfigError(f"trainer.epochs={cfg.trainer.epochs} is below hydra.sweeper.min_epochs={sweeper.min_epochs}: the last rung must train at least as long as the first")
    for arg in swept:
        if key_of(arg) == "trainer.epochs":
            raise ConfigError(f"{arg}: halving sets each rung's epochs itself; give hydra.sweeper.min_epochs and max_epochs (or trainer.epochs) instead")
    if any(a.lstrip("+").startswith("hydra.sweep.subdir=") for a in overrides):
        raise ConfigError("hydra.sweep.subdir: halving names its job folders itself, so each setting keeps one folder across rungs")


def check_sweep_folder(sweep_dir: Path, overrides: list[str], cfg: DictConfig) -> None:
    """Refuse to sweep into a folder that holds something else: a single run, other files, or a sweep of other settings.

    A rerun may change only what cannot change a job's figures: more epochs to train to, the data's
    location, the device, the launcher. Fewer epochs than its jobs have trained are refused too.
    """
    saved = sweep_dir / "multirun.yaml"
    if not saved.is_file():
        others = sorted(p.name for p in sweep_dir.iterdir() if p.name != ".submitit")
        if others:
            what = "a single run" if (sweep_dir / ".hydra").is_dir() else f"other files ({', '.join(others[:3])})"
            raise FolderRefused(f"{sweep_dir} holds {what}, not a sweep; choose a new hydra.sweep.dir")
        return
    strangers = sorted(p.name for p in sweep_dir.iterdir() if not p.is_dir() and p.name not in SWEEP_FILES)
    if strangers:
        raise FolderRefused(f"{sweep_dir} holds files no sweep writes ({', '.join(strangers[:3])}); move them away, or choose a new hydra.sweep.dir")
    try:
        then = OmegaConf.load(saved)
        given = [str(o) for o in then.hydra.overrides.task]
    except Exception as e:
        raise FolderRefused(f"{saved}: unreadable ({' '.join(str(e).split())[:200]}); choose a new hydra.sweep.dir") from None
    refuse = f"{sweep_dir} holds a sweep of other settings ({{}}); rerun it as it was ({' '.join(given)}), or choose a new hydra.sweep.dir"
    if diff := _override_difference(_bykey_of(given), _bykey_of(overrides)):
        raise FolderRefused(refuse.format(diff))
    if _swept_order(given) != _swept_order(overrides):
        raise FolderRefused(refuse.format(f"the swept keys in another order ({', '.join(_swept_order(overrides))}), which numbers the jobs differently"))
    sweeper_then, sweeper_now = (_without(OmegaConf.to_container(c.hydra.sweeper), SWEEPER_EXTENSIONS) for c in (then, cfg))
    if diff := first_difference(sweeper_then, sweeper_now):
        raise FolderRefused(refuse.format(f"hydra.sweeper: {diff}"))
    swept = tuple(swept_keys(sweep_dir))
    fixed = lambda c: {k: v for k, v in settings_of(_task_part(c)).items() if not k.startswith(swept)}  # noqa: E731
    if diff := first_difference(fixed(then), fixed(cfg)):
        raise FolderRefused(refuse.format(diff))
    if "trainer.epochs" not in swept:
        trained = max((_epochs_trained(job) for job in sweep_dir.iterdir() if job.is_dir()), default=0)
        if cfg.trainer.epochs < trained:
            raise FolderRefused(
                f"{sweep_dir} holds jobs trained for {trained} epochs already; trainer.epochs={cfg.trainer.epochs} asks for fewer. "
                f"Give trainer.epochs={trained} or more to continue them, or choose a new hydra.sweep.dir"
            )


def _bykey_of(overrides: list[str]) -> dict[str, str]:
    """Overrides as key -> value text, without the keys a rerun may change."""
    pairs = (o.split("=", 1) for o in overrides if "=" in o)
    return {k: v for k, v in pairs if not k.lstrip("+~").startswith(RESUMABLE_CHANGES)}


def _override_difference(then: dict[str, str], now: dict[str, str]) -> str | None:
    for key in [*then, *(k for k in now if k not in then)]:
        if key not in now:
            return f"{key}={then[key]} is missing"
        if key not in then:
            return f"{key}={now[key]} is new"
        if then[key] != now[key]:
            return f"{key}={now[key]} where it has {key}={then[key]}"
    return None


def _swept_order(overrides: list[str]) -> list[str]:
    parsed = OverridesParser.create().parse_overrides([o for o in overrides if "=" in o])
    return [o.key_or_group for o in parsed if o.is_sweep_override()]


def _epochs_trained(job_dir: Path) -> int:
    """Epochs a job folder has trained, from its metrics.json (0 when it has none)."""
    try:
        return int(json.loads((job_dir / "metrics.json").read_text()).get("epochs_completed") or 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def _without(d: dict, keys: tuple) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def _task_part(cfg: DictConfig) -> dict:
    """The config without its hydra node, resolved where it can be."""
    tree = {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}
    try:
        return OmegaConf.to_container(OmegaConf.create(tree), resolve=True)
    except Exception:
        return OmegaConf.to_container(OmegaConf.create(tree), resolve=False)
