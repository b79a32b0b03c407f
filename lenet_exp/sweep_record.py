"""A sweep folder's own record: the job folders' names (`3_activation=relu,optimizer.lr=0.1`) and numbers, sweep.json
(what makes a rerun the same sweep, written before the first job), what a search preset set, the refusals of its
last run, and halving.json, the successive-halving search's record (its one writer and its one reader)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shlex
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lenet_exp.cluster import ARRAYS, CANCELLED
from lenet_exp.config import conf_file
from lenet_exp.errors import FolderRefused
from lenet_exp.files import DamagedRecord, flatten, load_json, load_yaml, read_json, write_json
from lenet_exp.metrics import METRICS, is_number
from lenet_exp.overrides import IGNORED, as_dict, grid, key_of, param_overrides, quoted, split, value_text
from lenet_exp.overrides import swept_keys as swept_keys_of
from lenet_exp.plugins import basic_sweeper, fuses, halves, one_at_a_time, samples
from lenet_exp.settings import ADDED_KEYS, settings_of

log = logging.getLogger(__name__)
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
    "summary_importance.csv",
    REFUSED,
    "optimization_results.yaml",
    HALVING,
    CANCELLED,
    ARRAYS,
)
# sweep.json's entries: their type, in words
RECORD_SHAPE = {k: (dict, "mapping") for k in ("sweeper", "settings")} | {
    k: (list, "list of texts") for k in ("overrides", "swept")
}
# Sweeper keys that do not change what any job trains: a rerun may change them.
SWEEPER_EXTENSIONS = ("n_trials", "n_jobs", "max_batch_size", "storage")
MAX_NAME = 200  # bytes of a job folder's name; file systems allow 255


def job_number(name: str) -> int | None:
    """The number of a job from its folder's name (`5_activation=relu`: 5), or None for a folder no sweep named."""
    head, sep, _ = name.partition("_")
    return int(head) if head.isdigit() and sep else None


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


def swept_keys(sweep_dir: Path, sweeper_params: DictConfig | dict | None = None) -> list[str]:
    """The keys a sweep varies, from its sweep.json, else its multirun.yaml and the sweeper's params."""
    record = read_json(sweep_dir / SWEEP_RECORD)
    if record is not None and isinstance(record.get("swept"), list):
        return [k for k in record["swept"] if isinstance(k, str)]
    keys = list(sweeper_params or {})
    saved = sweep_dir / "multirun.yaml"
    if saved.is_file():
        hydra_cfg = OmegaConf.load(saved).hydra
        keys += swept_keys_of(list(hydra_cfg.overrides.task), hydra_cfg.sweeper.get("params"))
    return [k for k in dict.fromkeys(keys) if not k.startswith(IGNORED)]


def preset_names(preset: str) -> dict:
    """What a search preset (`lenet_best`) sets outside its grid, by name: its groups (`optimizer`) and keys
    (`model.pool`), read from its file in conf/hparams_search/; sweep.json keeps them as the sweep started."""
    text = load_yaml(conf_file(f"hparams_search/{preset}.yaml")) or {}
    groups = [
        g.removeprefix("override /")
        for entry in text.get("defaults") or []
        if isinstance(entry, dict)
        for g in entry
        if g.startswith("override /") and not g.startswith("override /hydra")
    ]
    return {
        "name": preset,
        "groups": groups,
        "keys": list(flatten({k: v for k, v in text.items() if k not in ("defaults", "hydra")})),
    }


def preset_settings(job_dir: Path) -> list[str]:
    """What the search preset of a job's sweep (`hparams_search=lenet_best`) set outside its grid, at the job's own
    values: its groups (`optimizer=adam`) and keys (`data.val_size=5000`, `model.pool=max`), so that the job continued
    alone, or rerun from its summary, trains as it did in the search. The names are those the sweep recorded as it
    started (a preset file edited since changes nothing); a key added to lenet_exp since the job ran, at the value that
    trains as it did. [] without a preset, or where unreadable (the run's own record is judged where it is used)."""
    record = Path(job_dir) / ".hydra"
    try:
        given = [o for o in load_yaml(record / "overrides.yaml") if key_of(o) == "hparams_search"]
        if not given:
            return []
        recorded = (read_json(Path(job_dir).parent / SWEEP_RECORD) or {}).get("preset")
        names = recorded if isinstance(recorded, dict) else preset_names(split(given[-1])[1])  # older sweeps: the file
        choices = load_yaml(record / "hydra.yaml")["hydra"]["runtime"]["choices"]
        saved = flatten(load_yaml(record / "config.yaml"))
    except Exception:
        return []
    values = {
        k: saved[k] if k in saved else ADDED_KEYS[k] for k in names.get("keys", []) if k in saved or k in ADDED_KEYS
    }
    groups = [f"{g}={choices[g]}" for g in names.get("groups", []) if g in choices]
    return groups + [f"{k}={value_text(v)}" for k, v in values.items()]


def sweep_identity(overrides: list[str], cfg: DictConfig) -> dict:
    """What makes a sweep the same sweep: its overrides, its swept keys, its sweeper's settings, its fixed settings."""
    swept = swept_keys_of(overrides, OmegaConf.select(cfg, "hydra.sweeper.params", default=None))
    fixed = {k: v for k, v in settings_of(cfg).items() if not k.startswith(tuple(swept)) or not swept}
    return {
        "overrides": overrides,
        "swept": swept,
        "sweeper": {k: v for k, v in OmegaConf.to_container(cfg.hydra.sweeper).items() if k not in SWEEPER_EXTENSIONS},
        "settings": fixed,
    }


def record_sweep(sweep_dir: Path, overrides: list[str], cfg: DictConfig, command: list[str] | None = None) -> None:
    """sweep.json, written once the checks pass: every sweeper's folder (Optuna's, which writes no multirun.yaml,
    too) then carries what a rerun is compared with, and how this run of it is launched: its launcher (a fused one
    says its figures may differ alone), its whole `command` (what continues it), whether its jobs are a grid whose
    folders can be named before they start. The refusals of the last run are cleared."""
    (sweep_dir / REFUSED).unlink(missing_ok=True)
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default={})
    launcher = {"choice": choices.get("hydra/launcher"), "fused": fuses(cfg)}
    preset = {"preset": preset_names(choices["hparams_search"])} if choices.get("hparams_search") else {}
    # the command's overrides, Hydra's too, but its folder: what continues the sweep, with hydra.sweep.dir added
    given = [a for a in command or overrides if key_of(a) != "hydra.sweep.dir"]
    named = not any(key_of(a) == "hydra.sweep.subdir" for a in given)  # folders the sweep names itself
    grid = (basic_sweeper(cfg) or halves(cfg) and not samples(cfg)) and named
    count = {"jobs": n} if (n := jobs_asked(cfg, overrides)) else {}
    extra = {"launcher": launcher, **preset, "command": given, "grid": bool(grid), "design": design_of(cfg), **count}
    write_json(sweep_dir / SWEEP_RECORD, {**sweep_identity(overrides, cfg), **extra})


def design_of(cfg: DictConfig) -> str:
    """How the sweep's settings were chosen, which decides what its figures can tell: `around` (one knob at a time
    around a base), `grid` (every listed value met every other), `drawn` (a sampler's draws from ranges)."""
    if one_at_a_time(cfg):
        return "around"
    return "grid" if basic_sweeper(cfg) or halves(cfg) and not samples(cfg) else "drawn"


def jobs_asked(cfg: DictConfig, overrides: list[str]) -> int | None:
    """How many jobs the sweep asks for, where the summary cannot list them by their folders' names: a plain grid's
    size, a search's trials (Optuna's n_trials); None where it cannot tell, or the search keeps its own count."""
    if halves(cfg):
        return None  # halving.json counts them
    trials = OmegaConf.select(cfg, "hydra.sweeper.n_trials", default=None)
    if isinstance(trials, int):
        return trials
    if basic_sweeper(cfg):
        params = param_overrides(OmegaConf.select(cfg, "hydra.sweeper.params", default=None))
        with contextlib.suppress(Exception):  # the checks before the sweep refused what Hydra cannot read
            return len(grid([*params, *(o for o in overrides if "=" in o and not o.startswith("hydra"))]))
    return None


def earlier_identity(sweep_dir: Path) -> dict | None:
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


def _holds(value, kind: tuple[type, str]) -> bool:
    """An entry of sweep.json of its kind, or absent (as an older lenet_exp may have left it)."""
    return value is None or isinstance(value, kind[0]) and (kind[0] is dict or all(isinstance(v, str) for v in value))


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


def refusals(sweep_dir: Path) -> dict[str, dict]:
    """Jobs this sweep's command was refused by their folders (in use, other settings), as run_dir -> note.

    A note no longer applies once the job's metrics.json has changed since (its other process finished it, say).
    """
    try:
        lines = (sweep_dir / REFUSED).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    notes = {}
    for line in lines:
        with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
            note = json.loads(line)
            metrics = sweep_dir / note["run_dir"] / METRICS
            if note.get("metrics_mtime") == (metrics.stat().st_mtime_ns if metrics.exists() else None):
                notes[note["run_dir"]] = note
    return notes


def earlier_seconds(path: Path) -> float:
    """The wall time an earlier run of the search recorded in halving.json: 0 where there is none, and, with a warning,
    where the record is damaged (it holds only figures for the summary; the search itself reads its jobs' folders)."""
    try:
        seconds = (load_json(path) or {}).get("wall_seconds", 0.0)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
            raise DamagedRecord(f"{path.name}: wall_seconds is {seconds!r:.40}, not a number of seconds")
    except DamagedRecord as e:
        log.warning("%s (in %s): rewritten, its wall time counted from now", e, path.parent)
        return 0.0
    return float(seconds)


class HalvingRecord:
    """halving.json: the rungs, each rung's choice and the search's wall time. A rerun of the same search (the same eta,
    jobs and settings) keeps the choices recorded so far, which the search then never makes again; the file is
    written anew as the search starts (so a damaged one is replaced before any job reads it) and after each rung."""

    def __init__(self, sweep_dir: Path, eta: int, rungs: list[int], jobs: int, settings: int, started: float) -> None:
        self.path, self.started = sweep_dir / HALVING, started
        self.previous_seconds = earlier_seconds(self.path)
        earlier = read_halving(sweep_dir) or {}
        same = [earlier.get(k) for k in ("eta", "jobs", "settings")] == [eta, jobs, settings]
        self.earlier = earlier if same else {}
        self.state = {
            "eta": eta,
            "rungs": rungs,
            "jobs": jobs,
            "settings": settings,
            "rung_choices": [c for c in earlier.get("rung_choices", []) if c["epochs"] in rungs] if same else [],
            "finished": False,
        }
        self.save()

    def drawn(self, space: dict) -> list[dict]:
        """A ranged search's settings drawn so far (key -> override text, in order), kept in the record from here on:
        an earlier run's where it searched the same `space`, else none yet."""
        earlier = self.earlier.get("drawn") if self.earlier.get("space") == space else None
        ok = isinstance(earlier, list) and all(isinstance(d, dict) for d in earlier)
        self.state.update(space=space, drawn=list(earlier) if ok else [])
        if not ok:
            self.state["rung_choices"] = []  # choices among other settings than these
        return self.state["drawn"]

    def decided(self, epochs: int) -> dict | None:
        """The choice recorded for the rung of `epochs` epochs, if one was made."""
        return next((c for c in self.state["rung_choices"] if c["epochs"] == epochs), None)

    def rung(self, epochs: int, ranked: list[int], kept: int, scores: dict) -> None:
        """A rung's choice, in place of any recorded for it (and for the rungs after it, which follow from it)."""
        choices = [c for c in self.state["rung_choices"] if c["epochs"] < epochs]
        choices.append({"epochs": epochs, "ranked_jobs": ranked, "kept": kept, "scores": scores})
        self.state["rung_choices"] = choices
        self.save()

    def finish(self) -> None:
        self.state["finished"] = True
        self.save()

    def save(self) -> None:
        seconds = self.previous_seconds + time.monotonic() - self.started
        write_json(self.path, {**self.state, "wall_seconds": seconds})


def read_halving(sweep_dir: Path) -> dict | None:
    """halving.json when it reads as the search writes it; None for none or a damaged one (the jobs are summarised
    without it)."""
    search = read_json(sweep_dir / HALVING)
    if not search or not all(isinstance(v, int) and v > 0 for v in search.get("rungs") or [None]):
        return None
    choices = search.get("rung_choices")
    fields = ("settings", "jobs", "eta")
    if not isinstance(choices, list) or not all(isinstance(search.get(f), int) for f in fields):
        return None
    for c in choices:
        if not (
            isinstance(c, dict)
            and c.get("epochs") in search["rungs"]
            and isinstance(c.get("kept"), int)
            and isinstance(c.get("ranked_jobs"), list)
            and all(isinstance(j, int) for j in c["ranked_jobs"])
            and isinstance(c.get("scores", {}), dict)
            and all(map(is_number, c.get("scores", {}).values()))
        ):
            return None
    return search


def sweep_command(sweep_dir: Path) -> list[str] | None:
    """The overrides of the command that continues a sweep, from its sweep.json (its own command, Hydra's overrides
    among them, then its folder); None without a readable record."""
    record = read_json(sweep_dir / SWEEP_RECORD) or {}
    given = record.get("command")
    if not isinstance(given, list) or not all(isinstance(o, str) for o in given):
        overrides = record.get("overrides")
        if not isinstance(overrides, list):
            return None
        choice = (record.get("launcher") or {}).get("choice") if isinstance(record.get("launcher"), dict) else None
        given = [*([f"hydra/launcher={choice}"] if choice and choice != "basic" else []), *overrides]  # older records
    given = [o for o in given if key_of(o) != "hydra.sweep.dir"]
    return [*given, f"hydra.sweep.dir={hydra_text(str(sweep_dir))}"]


def hydra_text(text: str) -> str:
    """A value as Hydra reads it back: plain where it can be, quoted where its grammar would read it otherwise."""
    return text if re.fullmatch(r"[\w./@:+-]+", text) else quoted(text)


def continue_command(folder: Path, sweep: bool | None = None) -> str:
    """The command that continues what stopped in `folder`, as one shell line: a sweep's own command with its
    hydra.sweep.dir, or `resume=<folder>` for a run (`sweep`: which it is, where the folder cannot tell yet)."""
    folder = Path(os.path.abspath(folder))
    command = sweep_command(folder) if sweep is not False else None
    if command is not None:
        return "python -m lenet_exp --multirun " + " ".join(shlex.quote(o) for o in command)
    return f"python -m lenet_exp resume={shlex.quote(str(folder))}"


def grid_jobs(sweep_dir: Path) -> dict[str, dict] | None:
    """Every job of a grid sweep (the basic sweeper's, or a halving search's), started or not: its folder's name ->
    its overrides, numbered as the sweep numbers them; None where the jobs are no grid (a search that samples) or the
    record cannot tell."""
    record = read_json(sweep_dir / SWEEP_RECORD) or {}
    overrides, sweeper = record.get("overrides"), record.get("sweeper")
    if record.get("grid") is not True or not isinstance(overrides, list) or not isinstance(sweeper, dict):
        return None
    params = param_overrides(sweeper.get("params"))
    try:
        points = grid([*params, *overrides])
    except Exception:  # a record no sweep wrote
        return None
    swept = swept_keys(sweep_dir)
    return {f"{num}_{dirname_for(point, swept)}": as_dict(point) for num, point in enumerate(points)}
