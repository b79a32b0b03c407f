"""A sweep's summary: every job folder read into a row (completed and best first), a row per setting over seeds, the
halving search's place for each job; written as summary.csv, summary.md and summary.png (summary_table.py and
summary_plot.py draw them) into the sweep folder, and summary_by_setting.csv when `seed` is swept. Each job refreshes
it when it ends, and the sweep once more at its end; `python -m lenet_exp.summarize` rebuilds it at any time."""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lenet_exp.files import YAML_ERRORS, atomic_write, load_yaml, read_json, select
from lenet_exp.folders import in_use
from lenet_exp.importance import IMPORTANCE_HEADER, Importance, importance_rows, measure
from lenet_exp.metrics import (
    FIGURES,
    METRICS,
    VAL_FIGURES,
    chosen_on,
    figure_at,
    learning,
    learning_note,
    not_learning,
    rank_key,
)
from lenet_exp.overrides import as_dict, setting_of, split, value_of
from lenet_exp.run_folder import RECORD, RunFolder
from lenet_exp.signals import signals_held, stop
from lenet_exp.summary_plot import to_png
from lenet_exp.summary_table import counts_text, csv_text, job_order, settings_csv, to_csv, to_markdown
from lenet_exp.sweep_record import (
    SWEEP_RECORD,
    continue_command,
    grid_jobs,
    job_number,
    preset_settings,
    read_halving,
    refusals,
    sweep_command,
    swept_keys,
)
from lenet_exp.words import one_line, plural

UNFINISHED = ("interrupted", "not started", "unfinished", "running", "refused")  # what a rerun of the sweep continues


def is_job(folder: Path) -> bool:
    return folder.is_dir() and ((folder / ".hydra" / "overrides.yaml").is_file() or (folder / METRICS).is_file())


def _overrides(job_dir: Path) -> dict:
    """The job's overrides as key -> value text; ValueError when the file cannot be read as a list of overrides."""
    try:
        overrides = load_yaml(job_dir / ".hydra" / "overrides.yaml") or []
    except YAML_ERRORS as e:
        raise ValueError(f".hydra/overrides.yaml: {' '.join(str(e).split())[:160]}") from None
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ValueError(".hydra/overrides.yaml: not a list of overrides")
    return as_dict(overrides)


def _row(run_dir: str, overrides: dict, metrics: dict) -> dict:
    """A job's row: number, overrides, figures."""
    num, lazy, on = job_number(run_dir), not_learning(metrics), chosen_on(metrics)
    history = metrics.get("history") or {}
    note = metrics.get("note") if metrics.get("status") == "pruned" else ""  # where a halving search stopped it
    return {
        "job": run_dir if num is None else num,
        "run_dir": run_dir,
        "overrides": overrides,
        **{c: metrics.get(c) for c in ("status", *VAL_FIGURES, *FIGURES)},
        "error": metrics.get("error") or "",
        "on": on,  # the figure that chooses: val_acc where the job held out a split, else test_acc
        "acc": metrics.get(on),
        "best_acc": metrics.get(f"best_{on}"),
        "histories": history,  # every split's accuracy per epoch
        "history": history.get(on) or [],  # the choosing split's accuracy per epoch
        "test_history": history.get("test_acc") or [],
        "chance": metrics.get("chance_test_acc"),
        "not_learning": lazy,
        "learning": learning(metrics),  # learned, never, or collapsed (learned, then ended at chance)
        "note": "; ".join(n for n in (note, learning_note(metrics)) if n),
        "cpu_threads": metrics.get("cpu_threads"),
    }


def read_job(job_dir: Path, name: str | None = None) -> dict:
    """One job's row from its folder (`name`: how the summary names it, its folder's name by default); a job whose
    files cannot be read is `unreadable`, with the reason. metrics.json as it stands: a `running` no process backs
    shows as interrupted."""
    overrides = {}
    try:
        overrides = _overrides(job_dir)
        metrics = RunFolder(job_dir).live_metrics() or {"status": "not started", "epochs_completed": 0}
    except ValueError as e:
        metrics = {"status": "unreadable", "error": str(e)}
    return _row(name or job_dir.name, overrides, metrics)


@dataclass
class Summary:
    """What a sweep folder holds, ready to write: a row per job (best first), the swept keys, the halving search's
    record when the sweep was one, and a row per setting (mean over seeds) when `seed` is swept."""

    sweep_dir: Path
    rows: list[dict]
    keys: list[str]
    search: dict | None = None
    settings: list[dict] | None = None
    fused: bool = False  # trained by the fused launcher: a rerun alone may differ slightly
    command: list[str] | None = None  # the sweep's own command, from sweep.json, but its folder
    on: str = "test_acc"  # the figure that chose: val_acc where the jobs held out a validation split
    continue_with: str = ""  # where jobs are not finished: the command that continues the sweep
    runs: bool = False  # single runs compared (outputs/), not a sweep
    importance: Importance | None = None  # what mattered: each swept key's share of the variance
    resumes: list[tuple[str, str]] | None = None  # single runs not finished: (run, the command that continues it)
    missing: int = 0  # jobs the sweep asked for that have no folder, where their names cannot be told (Optuna's)
    running: list | None = None  # jobs training now


def collect(sweep_dir: Path, runs: bool = False) -> Summary:
    """Read every job folder of a sweep into a Summary, with a row for each job of its grid not started yet; with
    `runs`, the single runs a folder holds (outputs/<date>/<time>), compared as a sweep's jobs are."""
    rows = [read_job(p, str(p.relative_to(sweep_dir))) for p in single_runs(sweep_dir)] if runs else job_rows(sweep_dir)
    hydra = _hydra_record(sweep_dir, rows)
    keys = _columns(sweep_dir, rows, hydra.get("sweeper", {}).get("params"))
    if runs:  # a run that left a key at its default holds no override for it: the value it ran with, from its record
        for r in rows:
            r["own"] = r["overrides"]  # what its command gave: what trains it again
            r["overrides"] = {**{k: used(sweep_dir / r["run_dir"], k) for k in keys}, **r["overrides"]}
    search = read_halving(sweep_dir)
    if search:
        _place_in_search(rows, keys, search)
    _short_of_asked(rows, search["rungs"][-1] if search else _asked_epochs(sweep_dir))
    rows.sort(key=lambda r: rank_key(r["acc"], job_order(r), complete=r["status"] == "completed"))
    record = read_json(sweep_dir / SWEEP_RECORD) or {}
    launch = record.get("launcher") if isinstance(record.get("launcher"), dict) else {}  # (older records: none)
    choice = launch.get("choice") or (hydra.get("runtime", {}).get("choices") or {}).get("hydra/launcher")
    for r in rows:  # what the search preset set, for the rerun command: the job's own value
        preset = dict(map(split, preset_settings(sweep_dir / r["run_dir"])))
        r["overrides"] = {**r["overrides"], **{k: v for k, v in preset.items() if k not in r["overrides"]}}
    fused = launch.get("fused", choice in ("fused", "fused_slurm")) is True
    command = (sweep_command(sweep_dir) or [""])[:-1]  # the sweep's own command but its folder
    on = choosing_split(rows)
    summary = Summary(sweep_dir, rows, keys, search, by_setting(rows, keys, on), fused, command, on, runs=runs)
    summary.importance = measure(rows, keys, on, search, record.get("design"))
    asked = record.get("jobs")
    summary.missing = asked - len(rows) if isinstance(asked, int) and not (search or runs) else 0
    summary.running = [r["job"] for r in sorted(rows, key=job_order) if r["status"] == "running"]
    if runs:  # separate runs: each continues on its own
        summary.resumes = [(r["run_dir"], continue_command(sweep_dir / r["run_dir"], sweep=False)) for r in
                           sorted(rows, key=job_order) if r["status"] in UNFINISHED]  # fmt: skip
    elif summary.running:
        pass  # the sweep goes on: no command to continue it yet
    elif any(r["status"] in UNFINISHED for r in rows) or summary.missing > 0 or (search and not search.get("finished")):
        summary.continue_with = continue_command(sweep_dir, sweep=True)
    return summary


def used(run_dir: Path, key: str) -> str:
    """The value a run ran with for `key`, as an override writes it (overrides.value_of); empty where its record
    cannot tell."""
    choices, config = {}, {}
    with contextlib.suppress(Exception):
        choices = load_yaml(run_dir / ".hydra" / "hydra.yaml")["hydra"]["runtime"]["choices"] or {}
    with contextlib.suppress(Exception):
        config = load_yaml(run_dir / ".hydra" / "config.yaml") or {}
    return value_of(config if isinstance(config, dict) else {}, choices if isinstance(choices, dict) else {}, key)


def single_runs(folder: Path) -> list[Path]:
    """The run folders in a folder of single runs, a level or two down (outputs/<date>/<time>), in order."""
    return sorted(p for p in (*folder.iterdir(), *folder.glob("*/*")) if p.is_dir() and (p / RECORD).is_dir())


def job_rows(sweep_dir: Path) -> list[dict]:
    """A row per job folder; a job its folder refused, from the sweep's note; a job of its grid not started yet."""
    refused = refusals(sweep_dir)
    rows = [read_job(p) for p in sweep_dir.iterdir() if is_job(p)]
    seen = {r["run_dir"] for r in rows}  # a refused job whose folder holds nothing of its own yet: from the note
    rows += [_row(name, as_dict(note.get("overrides")), {}) for name, note in refused.items() if name not in seen]
    for r in rows:
        if r["run_dir"] in refused:
            r["status"], r["error"] = "refused", refused[r["run_dir"]]["reason"]
    seen = {r["run_dir"] for r in rows}
    for name, overrides in (grid_jobs(sweep_dir) or {}).items():
        if name not in seen:
            rows.append(_row(name, overrides, {"status": "not started", "epochs_completed": 0}))
    return rows


def choosing_split(rows: list[dict]) -> str:
    """The figure that chose across the sweep: `val_acc` or `test_acc` as its jobs chose, or `mixed` where jobs with
    figures chose on different splits (they cannot be ranked against each other). A job without figures says none."""
    found = {r["on"] for r in rows if r["history"] or r["acc"] is not None}
    return "mixed" if len(found) > 1 else found.pop() if found else "test_acc"


def _hydra_record(sweep_dir: Path, rows: list[dict]) -> dict:
    """The hydra node of the first readable job record ({} when none is): the sweeper's search space, the launcher."""
    for r in rows:
        with contextlib.suppress(Exception):
            node = load_yaml(sweep_dir / r["run_dir"] / ".hydra" / "hydra.yaml")["hydra"]
            return {k: v for k, v in node.items() if isinstance(v, dict)}  # a damaged part counts as none
    return {}


def _place_in_search(rows: list[dict], keys: list[str], search: dict) -> None:
    """Each job's rung: the last rung whose choice ranked its setting (its first job stands for it), not what its
    epochs would reach, so a job continued by hand past where the search pruned it says so and claims no rung."""
    first: dict[tuple, int] = {}
    for r in sorted(rows, key=job_order):
        first.setdefault(setting_of(r["overrides"], keys), r["job"])
    reached, pruned = {}, {}
    for c in search["rung_choices"]:
        rung = search["rungs"].index(c["epochs"]) + 1
        for place, num in enumerate(c["ranked_jobs"]):
            reached[num] = rung
            if place >= c["kept"]:
                pruned[num] = rung
    for r in rows:
        num = first.get(setting_of(r["overrides"], keys))
        r["rung"] = reached.get(num, 0)
        if num in pruned and (r["epochs_completed"] or 0) > search["rungs"][pruned[num] - 1]:
            rung = pruned[num]
            note = f"pruned after rung {rung}, continued by hand to {plural(r['epochs_completed'], 'epoch')}"
            r["note"], r["beyond_search"] = "; ".join(n for n in (note, r["note"]) if n), True


def _asked_epochs(sweep_dir: Path) -> int | None:
    """The epochs the sweep's last command asked of its jobs, from multirun.yaml (None when it cannot tell)."""
    with contextlib.suppress(Exception):
        epochs = select(load_yaml(sweep_dir / "multirun.yaml"), "trainer.epochs")
        return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None
    return None


def _short_of_asked(rows: list[dict], asked: int | None) -> None:
    """A `completed` job with fewer epochs than asked (a folder that refused the later epochs' writes, a rung not
    reached yet) is `unfinished`, never completed; a job's own swept trainer.epochs is what it was asked."""
    for r in rows:
        wanted = None if "rung" in r else r["overrides"].get("trainer.epochs")  # a rung's epochs are not what is asked
        wanted = int(wanted) if isinstance(wanted, str) and wanted.isdigit() else asked
        done = r["epochs_completed"] or 0
        if r["status"] == "completed" and wanted and done < wanted and not r.get("beyond_search"):
            note = f"trained {done} of {plural(wanted, 'epoch')} asked"
            r["status"], r["note"] = "unfinished", "; ".join(n for n in (note, r["note"]) if n)


def _figures_at(row: dict, epochs: int) -> tuple:
    """The job's accuracy and best accuracy on the choosing split, and its test accuracy, after `epochs` epochs: its
    final ones, or from its curves."""
    if (row.get("epochs_completed") or 0) == epochs:
        return row["acc"], row["best_acc"], row["test_acc"]
    record, curve = {"history": row["histories"]}, row["history"][:epochs]
    best = max((a for a in curve if a is not None), default=None)
    return figure_at(record, epochs, row["on"]), best, figure_at(record, epochs, "test_acc")


def _mean_std(values: list[float], name: str) -> dict:
    return {
        f"{name}_mean": statistics.fmean(values) if values else None,
        f"{name}_std": statistics.stdev(values) if len(values) > 1 else None,
    }


def by_setting(rows: list[dict], keys: list[str], on: str = "test_acc") -> list[dict] | None:
    """With `seed` swept, jobs that differ only in seed form one setting: its mean and spread, best mean first.
    Seeds trained for different epochs are compared at the epochs every one of them reached (like with like)."""
    if "seed" not in keys:
        return None
    groups: dict[tuple, list[dict]] = {}
    for r in sorted(rows, key=job_order):
        groups.setdefault(setting_of(r["overrides"], keys), []).append(r)
    chosen = "val_acc" if on == "mixed" else on  # mixed: the columns of the split most figures are on; none ranked
    settings = []
    for values, members in groups.items():
        # a pruned setting's mean is at its last rung (the plot shows it apart); only completed ones rank as complete
        scored = [m for m in members if m["status"] in ("completed", "pruned") and m["acc"] is not None]
        lengths = sorted({m.get("epochs_completed") or 0 for m in scored})
        epochs = lengths[0] if lengths else None
        figures = [_figures_at(m, epochs) for m in scored]
        accs = [acc for acc, _, _ in figures if acc is not None]
        bests = [best for _, best, _ in figures if best is not None]
        tests = [test for _, _, test in figures if test is not None]
        on = chosen
        threads = {m.get("cpu_threads") for m in members}
        mixed = f"seeds trained {lengths[0]}-{lengths[-1]} epochs: figures after {epochs}" if len(lengths) > 1 else ""
        settings.append(
            {
                "values": dict(values),
                "n": len(accs),  # the seeds with a figure, not the jobs
                "accs": accs,
                **_mean_std(accs, "acc"),  # on the choosing split
                **_mean_std(accs, on),
                "best_acc_mean": statistics.fmean(bests) if bests else None,
                f"best_{on}_mean": statistics.fmean(bests) if bests else None,
                **_mean_std(tests, "test_acc"),  # beside a validation choice, the test figure that never chose
                "statuses": counts_text(m["status"] for m in members),
                "epochs": epochs,
                "note": mixed,
                "complete": len(accs) == len(members) and all(m["status"] == "completed" for m in members),
                "not_learning": all(m["not_learning"] for m in members),
                "jobs": [m["job"] for m in members],
                "seeds": [m["overrides"].get("seed") for m in members],
                "overrides": {k: v for k, v in members[0]["overrides"].items() if k != "seed"},
                "cpu_threads": threads.pop() if len(threads) == 1 else None,
            }
        )
    return sorted(settings, key=lambda g: rank_key(g["acc_mean"], job_order({"job": g["jobs"][0]}), g["complete"]))


def _columns(sweep_dir: Path, rows: list[dict], params: dict | None) -> list[str]:
    """The swept keys (`params`: the search space a sweeper such as Optuna drew from); failing that (no sweep record),
    the override keys whose values differ between jobs."""
    try:
        keys = swept_keys(sweep_dir, params)
    except Exception:  # a damaged multirun.yaml: fall back on what differs between the jobs
        keys = []
    if keys:
        return keys
    keys = list(dict.fromkeys(k for r in rows for k in r["overrides"]))
    return [k for k in keys if len({r["overrides"].get(k) for r in rows}) > 1] if len(rows) > 1 else keys


def _write(path: Path, data: bytes) -> None:
    """A summary file written whole; an error names that file, not the temporary one beside it."""
    try:
        atomic_write(path, data)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None


PLOT_EVERY_S = 30.0  # while a sweep runs, summary.png is redrawn at most this often (a drawing costs about 0.4 s)


def write_summary(sweep_dir: Path, live: bool = False, runs: bool = False) -> list[dict]:
    """Rebuild summary.csv, summary.md, summary.png, summary_importance.csv (and summary_by_setting.csv) in a sweep
    folder; rows best first. `live` (a job's end while the sweep goes on) keeps a plot drawn in the last PLOT_EVERY_S
    (the sweep's end and every interruption redraw it), and says nothing of how to continue a sweep that goes on."""
    summary = collect(sweep_dir, runs)
    if not summary.rows:
        return summary.rows
    if live:
        summary.continue_with = ""
    _write(sweep_dir / "summary.csv", to_csv(summary).encode())
    if summary.settings is not None:
        _write(sweep_dir / "summary_by_setting.csv", settings_csv(summary).encode())
    _write(sweep_dir / "summary.md", to_markdown(summary).encode())
    if summary.importance is not None:
        found = importance_rows(summary.importance)
        _write(sweep_dir / "summary_importance.csv", csv_text(IMPORTANCE_HEADER, found).encode())
    png = sweep_dir / "summary.png"
    if not (live and png.exists() and time.time() - png.stat().st_mtime < PLOT_EVERY_S):
        _write(png, to_png(summary))
    return summary.rows


def refresh_summary(sweep_dir: Path, in_worker: bool = False, live: bool = False) -> None:
    """Rewrite the sweep's summary with signals held (`live`: at a job's end, the plot only now and then); a full disk
    leaves the jobs' own records to stand."""
    with signals_held() as came:
        try:
            write_summary(sweep_dir, live)
        except OSError as e:
            print(f"Error: summary not written: {one_line(e)}", file=sys.stderr)
    if came:
        how = continue_command(sweep_dir, sweep=True)
        stop(came[0], f"the summary in {sweep_dir} is up to date; continue with: {how}", in_worker)


def settle_jobs(sweep_dir: Path, patience: float = 0.0) -> None:
    """Every job left `running` with no process behind it is recorded `interrupted` (RunFolder.settle); a job whose
    process still holds its folder gets `patience` seconds to end and record itself first."""
    running = [p for p in sweep_dir.iterdir() if is_job(p) and RunFolder(p).recorded_status() == "running"]
    deadline = time.monotonic() + patience
    while any(in_use(p) for p in running) and time.monotonic() < deadline:
        time.sleep(0.2)
    for job in running:
        RunFolder(job).settle()


def sweep_end(sweep_dir: Path) -> str:
    """Where a sweep stopped short stands, for its last line: its jobs' records settled, its summary refreshed, and
    how to go on."""
    with contextlib.suppress(OSError):
        settle_jobs(sweep_dir, patience=10.0)  # a worker the broken pool kills after this still holds its folder
        write_summary(sweep_dir)
    return (
        f"the jobs it started stay at their last checkpoints (see {sweep_dir / 'summary.md'}); continue with: "
        f"{continue_command(sweep_dir, sweep=True)}"
    )
