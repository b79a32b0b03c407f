"""What a sweep varies: its swept keys, and job folder names made of them (`3_activation=relu,optimizer.lr=0.1`).

Swept keys are the command-line overrides with several values or a sweep function
(`optimizer.lr=0.1,0.3`, `range(...)`, `choice(...)`) and the keys of `hydra.sweeper.params`
(what the Optuna preset searches). Keys every job shares stay out of the folder names.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import fields, is_dataclass
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from lenet_exp.cluster import CANCELLED
from lenet_exp.config import ConfigError, conf_file, no_plugin_key
from lenet_exp.run_folder import (
    METRICS,
    RESUMABLE_CHANGES,
    DamagedRecord,
    FolderRefused,
    RunFolder,
    first_difference,
    load_yaml,
    read_json,
    select,
    settings_of,
    write_json,
)
from lenet_exp.words import plural

IGNORED = ("hydra.", "hparams_search")  # overrides that say how to sweep, not what is trained
SWEEP_RECORD = "sweep.json"  # what makes the folder's sweep the same sweep, written before the first job
HALVING = "halving.json"  # a halving search's own record: its rungs, choices and wall time
REFUSED = ".refused"  # jobs refused by their folders in the last run of the sweep command, one JSON line each
SWEEP_FILES = (
    "multirun.yaml",
    SWEEP_RECORD,
    "summary.csv",
    "summary.md",
    "summary.png",
    "summary_by_setting.csv",
    REFUSED,
    "optimization_results.yaml",
    HALVING,
    CANCELLED,
)
# sweep.json's entries: their type, in words
RECORD_SHAPE = {k: (dict, "mapping") for k in ("sweeper", "settings")} | {
    k: (list, "list of texts") for k in ("overrides", "swept")
}
# Sweeper keys that do not change what any job trains: a rerun may change them.
SWEEPER_EXTENSIONS = ("n_trials", "n_jobs", "max_batch_size", "storage")


def preset_settings(job_dir: Path) -> list[str]:
    """What the search preset of a job's sweep (`hparams_search=lenet_best`) set outside its grid, at the job's own
    values: its groups (`optimizer=adam`) and keys (`data.val_size=5000`, `model.pool=max`), so that the job continued
    alone, or rerun from its summary, trains as it did in the search. [] without a preset, or where unreadable (the
    run's own record is judged where it is used)."""
    record = Path(job_dir) / ".hydra"
    try:
        given = [o for o in load_yaml(record / "overrides.yaml") if key_of(o) == "hparams_search"]
        if not given:
            return []
        preset = load_yaml(conf_file(f"hparams_search/{given[-1].split('=', 1)[1]}.yaml"))
        choices = load_yaml(record / "hydra.yaml")["hydra"]["runtime"]["choices"]
        saved = load_yaml(record / "config.yaml")
    except Exception:
        return []
    groups = [
        g.removeprefix("override /")
        for entry in preset.get("defaults") or []
        if isinstance(entry, dict)
        for g in entry
        if g.startswith("override /") and not g.startswith("override /hydra")
    ]
    keys = _leaf_keys({k: v for k, v in preset.items() if k not in ("defaults", "hydra")})
    return [f"{g}={choices[g]}" for g in groups if g in choices] + [f"{k}={_typed(select(saved, k))}" for k in keys]


def _leaf_keys(node: dict, prefix: str = "") -> list[str]:
    """`model.pool`, `data.val_size`: the dotted keys of a preset's plain settings."""
    keys = []
    for k, v in node.items():
        keys += _leaf_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return keys


def _typed(value) -> str:
    """A saved value as an override writes it: `max`, `5000`, `[6,16]`, `null`."""
    if isinstance(value, str):  # quoted where Hydra's grammar would read it otherwise: "my data,v2"
        return value if re.fullmatch(r"[\w./@+-]*", value) else json.dumps(value)
    return json.dumps(value, separators=(",", ":"))


def key_of(override: str) -> str:
    """The key an override sets: `optimizer.lr` of `+optimizer.lr=0.1`."""
    return override.split("=", 1)[0].lstrip("+~")


def swept_keys(sweep_dir: Path, sweeper_params: DictConfig | dict | None = None) -> list[str]:
    """The keys a sweep varies, from its sweep.json, else its multirun.yaml and the sweeper's params."""
    record = read_json(sweep_dir / SWEEP_RECORD)
    if record is not None and isinstance(record.get("swept"), list):
        return [k for k in record["swept"] if isinstance(k, str)]
    keys = list(sweeper_params or {})
    saved = sweep_dir / "multirun.yaml"
    if saved.is_file():
        hydra_cfg = OmegaConf.load(saved).hydra
        keys += list(hydra_cfg.sweeper.get("params") or {})
        parsed = OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task))
        keys += [o.key_or_group for o in parsed if o.is_sweep_override()]
    return [k for k in dict.fromkeys(keys) if not k.startswith(IGNORED)]


MAX_NAME = 200  # bytes of a job folder's name; file systems allow 255


def dirname_for(overrides: list[str], swept: list[str]) -> str:
    """A job's folder name after its number: its values of the swept keys, sorted, as `key=value,...` (too long a
    name is cut, with a digest of the whole to keep it unique)."""
    keys = set(swept)
    name = ",".join(sorted(o.lstrip("+~") for o in overrides if key_of(o) in keys)).replace("/", "_") or "job"
    if len(name.encode()) > MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:12]
        name = name.encode()[: MAX_NAME - 13].decode(errors="ignore") + "," + digest
    return name


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
        raise ConfigError(
            f"{swept[0][0]}: several values need --multirun: python -m lenet_exp --multirun {' '.join(overrides)}"
        )
    sweeper = str(OmegaConf.select(cfg, "hydra.sweeper._target_", default=""))
    basic = sweeper.endswith("BasicSweeper")
    if not multirun and not basic:
        preset = next((o for o in overrides if o.split("=", 1)[0] == "hparams_search"), "the sweeper")
        raise ConfigError(f"{preset} searches over a sweep: add --multirun")
    if multirun:
        check_plugin_settings(cfg)
    if multirun and basic:
        for text, override in swept:
            if not override.is_discrete_sweep():
                raise ConfigError(
                    f"{text}: a search space needs a search sweeper (hparams_search=optuna); "
                    "the plain sweep takes lists (a,b,c), range(start,stop,step) and choice(a,b)"
                )
    if str(OmegaConf.select(cfg, "hydra.sweeper._target_", default="")).endswith("HalvingSweeper"):
        check_halving(cfg, overrides, multirun, [o for o, _ in swept])
    for subdir in (
        a.split("=", 1)[1].strip("'\"") for a in overrides if a.lstrip("+").startswith("hydra.sweep.subdir=")
    ):
        if not subdir or ".." in Path(subdir).parts or subdir.startswith("/"):
            raise ConfigError(
                f"hydra.sweep.subdir={subdir}: job folders must stay inside the sweep folder (no '..', no absolute "
                "path, not empty)"
            )
        if not any(part in subdir for part in ("hydra.job.num", "hydra.job.id", "lenet_exp.job_dirname")):
            raise ConfigError(
                f"hydra.sweep.subdir={subdir}: every job needs a folder of its own: keep ${{hydra.job.num}} in it"
            )


def check_plugin_settings(cfg: DictConfig) -> None:
    """The launcher's and the sweeper's own keys, checked before Hydra hands them to the plugins: lenet_exp's own
    plugins by the rules of their config classes, the others' few (typed) keys lenet_exp relies on by the rules here."""
    from lenet_exp.schema import INT_GE_1, check, check_value

    others = {  # part of a plugin's class path, lower case -> its key -> rule
        "joblib": {"n_jobs": (lambda v: v != 0, "a non-zero integer (-1: one per CPU core)")},
        "submitit": {"timeout_min": (lambda v: v > 0, "minutes > 0")},
        "optuna": {
            "n_trials": INT_GE_1,
            "n_jobs": INT_GE_1,
            "direction": (
                lambda v: str(v).removeprefix("Direction.") in ("maximize", "minimize"),
                "maximize (the task returns test accuracy)",
            ),
            "storage": (
                lambda v: v is None or re.match(r"^[a-z][a-z0-9+]*://", str(v)) is not None,
                "null (in memory) or a database URL such as sqlite:///optuna.db",
            ),
        },
    }
    for part in ("launcher", "sweeper"):
        node, prefix = cfg.hydra[part], f"hydra.{part}."
        target, kind = str(node.get("_target_", "")), OmegaConf.get_type(node)
        if is_dataclass(kind) and (new := [k for k in node if k not in {f.name for f in fields(kind)}]):
            raise ConfigError(no_plugin_key(f"{prefix}{new[0]}", kind))  # a `+key` its plugin would choke on
        if "lenet_exp" in target:  # lenet_exp's own plugins, by their config classes' rules
            check(OmegaConf.to_object(node), prefix)
        for key, rule in next((rules for name, rules in others.items() if name in target.lower()), {}).items():
            check_value(f"{prefix}{key}", node.get(key), rule)
        if "lenet_exp_slurm" in target:  # what this cluster can run, before anything is written or submitted
            from hydra_plugins.lenet_exp_slurm._core import check_cluster

            check_cluster(OmegaConf.to_container(node, resolve=True), str(cfg.device.name))
        elif "SlurmLauncher" in target and not shutil.which("sbatch"):
            raise ConfigError(
                "hydra/launcher=submitit_slurm needs Slurm, and sbatch is not found here; use hydra/launcher=parallel "
                "(or submitit_local) on this machine"
            )


def check_halving(cfg: DictConfig, overrides: list[str], multirun: bool, swept: list[str]) -> None:
    """hparams_search=halving (with --multirun, as check_run_mode holds): a grid to halve, a last rung no shorter than
    the first, epochs and folders it sets itself. (Its keys' own rules are checked with the other plugins'.)"""
    for o in overrides:
        if "=" in o and re.search(r"\b(interval|tag)\(", o.split("=", 1)[1]):
            raise ConfigError(
                f"{o}: hparams_search=halving halves a grid (lists, range(...), choice(...)); "
                "interval(...) is a search space for hparams_search=optuna"
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


def swept_in(overrides: list[str], sweeper_params=None) -> list[str]:
    """The keys a command sweeps: overrides with several values or a sweep function, and a search sweeper's params."""
    parsed = OverridesParser.create().parse_overrides([o for o in overrides if "=" in o])
    keys = [*(sweeper_params or {}), *(o.key_or_group for o in parsed if o.is_sweep_override())]
    return [k for k in dict.fromkeys(keys) if not k.startswith(IGNORED)]


def sweep_identity(overrides: list[str], cfg: DictConfig) -> dict:
    """What makes a sweep the same sweep: its overrides, its swept keys, its sweeper's settings, its fixed settings."""
    swept = swept_in(overrides, OmegaConf.select(cfg, "hydra.sweeper.params", default=None))
    fixed = {k: v for k, v in settings_of(_task_part(cfg)).items() if not k.startswith(tuple(swept)) or not swept}
    return {
        "overrides": overrides,
        "swept": swept,
        "sweeper": _without(OmegaConf.to_container(cfg.hydra.sweeper), SWEEPER_EXTENSIONS),
        "settings": fixed,
    }


def record_sweep(sweep_dir: Path, overrides: list[str], cfg: DictConfig) -> None:
    """sweep.json, written once the checks pass: every sweeper's folder (Optuna's, which writes no multirun.yaml,
    too) then carries what a rerun is compared with; and the refusals of the last run are cleared."""
    (sweep_dir / REFUSED).unlink(missing_ok=True)
    write_json(sweep_dir / SWEEP_RECORD, sweep_identity(overrides, cfg))


def _earlier_identity(sweep_dir: Path) -> dict | None:
    """The folder's sweep record: sweep.json, or for a folder an older lenet_exp made, its multirun.yaml."""
    record = read_json(sweep_dir / SWEEP_RECORD)
    if record is not None:
        if wrong := next((k for k, kind in RECORD_SHAPE.items() if not _holds(record.get(k), kind)), None):
            raise FolderRefused(
                f"{sweep_dir / SWEEP_RECORD}: damaged ({wrong} is not a {RECORD_SHAPE[wrong][1]}), so the sweep it "
                "records cannot be compared with this command; restore the file, or choose a new hydra.sweep.dir"
            )
        return record
    saved = sweep_dir / "multirun.yaml"
    if not saved.is_file():
        return None
    try:
        return sweep_identity([str(o) for o in OmegaConf.load(saved).hydra.overrides.task], OmegaConf.load(saved))
    except Exception as e:
        raise FolderRefused(
            f"{saved}: unreadable ({' '.join(str(e).split())[:200]}); choose a new hydra.sweep.dir"
        ) from None


def check_sweep_folder(sweep_dir: Path, overrides: list[str], cfg: DictConfig) -> None:
    """Refuse to sweep into a folder that holds something else: a single run, other files, or a sweep of other settings.

    A rerun may change only what cannot change a job's figures (more epochs to train to, the data's location,
    the device, the launcher) and only where the sweep does not vary it. Fewer epochs than its jobs have trained
    are refused too.
    """
    then = _earlier_identity(sweep_dir)
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
    if diff := _override_difference(_by_key(given, swept), _by_key(overrides, swept)):
        raise FolderRefused(refuse.format(diff))
    if _swept_order(given) != _swept_order(overrides):
        raise FolderRefused(
            refuse.format(
                f"the swept keys in another order ({', '.join(_swept_order(overrides))}), which numbers the jobs "
                "differently"
            )
        )
    if diff := _sweeper_difference(then.get("sweeper") or {}, now["sweeper"]):
        raise FolderRefused(
            f"{sweep_dir} holds a sweep run with other sweeper settings (hydra.sweeper: {diff}); rerun it with the "
            f"hydra.sweeper values it had, or choose a new hydra.sweep.dir"
        )
    if diff := first_difference(then.get("settings") or {}, now["settings"]):
        raise FolderRefused(refuse.format(diff))
    if "trainer.epochs" not in swept:
        _check_epochs(sweep_dir, cfg)


def _check_epochs(sweep_dir: Path, cfg: DictConfig) -> None:
    """Refuse fewer epochs than the folder's jobs have trained (a halving search trains to its last rung)."""
    trained = max((_epochs_trained(job) for job in sweep_dir.iterdir() if job.is_dir()), default=0)
    key, asked = "trainer.epochs", cfg.trainer.epochs
    halving = "Halving" in str(OmegaConf.select(cfg, "hydra.sweeper._target_"))
    if halving and OmegaConf.select(cfg, "hydra.sweeper.max_epochs"):
        key, asked = "hydra.sweeper.max_epochs", cfg.hydra.sweeper.max_epochs
    if asked < trained:
        raise FolderRefused(
            f"{sweep_dir} holds jobs trained for {plural(trained, 'epoch')} already; {key}={asked} asks for fewer. "
            f"Give {key}={trained} or more to continue them, or choose a new hydra.sweep.dir"
        )


def _sweeper_difference(then: dict, now: dict) -> str | None:
    """The first key of the sweeper's settings that differs; keys the training config gained since (scheduler...)
    are no sweeper's, so none stands in for a key the record lacks."""
    changed = sorted(k for k in then.keys() | now.keys() if then.get(k, "<unset>") != now.get(k, "<unset>"))
    if not changed:
        return None
    k, shown = changed[0], lambda v: json.dumps(v, default=str)  # as a user types a value: null, true, 0.1
    return f"{k}={shown(then.get(k, '<unset>'))} there, {shown(now.get(k, '<unset>'))} now"


def _by_key(overrides: list[str], swept: set[str]) -> dict[str, str]:
    """Overrides as key -> value text, without the keys a rerun may change (unless the sweep varies them)."""
    pairs = (o.split("=", 1) for o in overrides if "=" in o)
    return {k: v for k, v in pairs if k.lstrip("+~") in swept or not k.lstrip("+~").startswith(RESUMABLE_CHANGES)}


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
    """Epochs a job folder has trained, from its metrics.json (0 when it has none or it is not a run's record)."""
    try:
        return (RunFolder(job_dir).metrics() or {}).get("epochs_completed") or 0
    except DamagedRecord:
        return 0


def _holds(value, kind: tuple[type, str]) -> bool:
    """An entry of sweep.json of its kind, or absent (as an older lenet_exp may have left it)."""
    return value is None or isinstance(value, kind[0]) and (kind[0] is dict or all(isinstance(v, str) for v in value))


def _without(d: dict, keys: tuple) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def _task_part(cfg: DictConfig) -> dict:
    """The config without its hydra node, resolved where it can be."""
    tree = {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}
    try:
        return OmegaConf.to_container(OmegaConf.create(tree), resolve=True)
    except Exception:
        return OmegaConf.to_container(OmegaConf.create(tree), resolve=False)


def note_refusal(sweep_dir: Path, run_dir: Path, reason: str, overrides: list[str]) -> None:
    """A job refused by its folder writes nothing there; the sweep folder keeps why, for summary and exit status."""
    metrics = run_dir / METRICS
    line = {
        "run_dir": run_dir.name,
        "reason": reason,
        "overrides": overrides,
        "metrics_mtime": metrics.stat().st_mtime_ns if metrics.exists() else None,
    }
    with open(sweep_dir / REFUSED, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
