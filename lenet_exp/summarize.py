"""Sweep summary: one row per job from its metrics.json, best test accuracy first.

Writes summary.csv, summary.md (with the command that reruns the best setting) and summary.png
into the sweep folder. Each job refreshes it when it ends, and the sweep once more at its end; it
can be rebuilt at any time, for a finished, running or interrupted sweep:

    python -m lenet_exp.summarize multirun/2026-11-27/21-40-00
"""

from __future__ import annotations

import csv
import io
import json
import sys
from itertools import groupby
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lenet_exp.run_files import CHANCE_MARGIN, MAX_METRICS_BYTES, METRICS, atomic_write, not_learning
from lenet_exp.run_folder import live_status
from lenet_exp.summary_plot import to_png
from lenet_exp.sweep import IGNORED, swept_keys

REFUSED = ".refused"  # jobs refused by their folders in the last run of the sweep command, one JSON line each
METRIC_COLUMNS = ["status", "test_acc", "best_test_acc", "train_loss", "train_acc", "epochs_completed", "examples_per_sec"]


def _value(text: str):
    """An override's value as YAML reads it (0.1 -> float, relu -> str)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _is_job(folder: Path) -> bool:
    return folder.is_dir() and ((folder / ".hydra" / "overrides.yaml").is_file() or (folder / METRICS).is_file())


def _overrides(job_dir: Path) -> dict:
    """The job's overrides as key -> value text; ValueError when the file cannot be read as a list of overrides."""
    try:
        overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ValueError(f".hydra/overrides.yaml: {' '.join(str(e).split())[:160]}") from None
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ValueError(".hydra/overrides.yaml: not a list of overrides")
    pairs = [o.lstrip("+~").split("=", 1) for o in overrides if "=" in o]
    return {k: v for k, v in pairs if not k.startswith(IGNORED)}


def _metrics(job_dir: Path) -> dict:
    """metrics.json as it stands (a `running` that no process backs shows as interrupted); ValueError when unreadable."""
    path = job_dir / METRICS
    if not path.exists():
        return {"status": "not started", "epochs_completed": 0}
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_METRICS_BYTES + 1)
        if len(data) > MAX_METRICS_BYTES:
            raise ValueError(f"larger than {MAX_METRICS_BYTES >> 20} MB")
        metrics = json.loads(data)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{METRICS}: {' '.join(str(e).split())[:160]}") from None
    if not isinstance(metrics, dict):
        raise ValueError(f"{METRICS}: not a JSON object")
    for field, ok in FIELD_TYPES.items():
        if not ok(metrics.get(field)):
            raise ValueError(f"{METRICS}: {field} is {metrics.get(field)!r:.40}, not what a run writes there")
    return live_status(job_dir, metrics)


def _number(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


FIELD_TYPES = {  # what summaries read from a metrics.json, and what a run writes there
    "status": lambda v: isinstance(v, str),
    "epochs_completed": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
    **{k: _number for k in ("test_acc", "best_test_acc", "train_loss", "train_acc", "examples_per_sec", "chance_test_acc")},
    "error": lambda v: v is None or isinstance(v, str),
    "history": lambda v: v is None or (isinstance(v, dict) and isinstance(v.get("test_acc", []), list) and all(_number(x) for x in v.get("test_acc", []))),
}


def read_job(job_dir: Path) -> dict:
    """One job's row: number, overrides, figures; a job whose files cannot be read is `unreadable`, with the reason."""
    num = job_dir.name.split("_", 1)[0]
    row = {"job": int(num) if num.isdigit() else job_dir.name, "run_dir": job_dir.name, "overrides": {}}
    try:
        row["overrides"] = _overrides(job_dir)
        metrics = _metrics(job_dir)
    except ValueError as e:
        return {**row, **{c: None for c in METRIC_COLUMNS}, "status": "unreadable", "error": str(e), "history": [], "chance": None, "not_learning": False, "note": ""}
    history = metrics.get("history") if isinstance(metrics.get("history"), dict) else {}
    lazy = not_learning(metrics)
    return {
        **row, **{c: metrics.get(c) for c in METRIC_COLUMNS}, "error": metrics.get("error") or "", "history": history.get("test_acc") or [],
        "chance": metrics.get("chance_test_acc"), "not_learning": lazy, "note": "not learning (at chance)" if lazy else "",
    }


def rank(row: dict) -> tuple:
    """Sort key, best first: completed jobs before any other, then by test accuracy, then by job number."""
    acc = row["test_acc"] if isinstance(row["test_acc"], (int, float)) else None
    return (row["status"] != "completed", acc is None, -(acc or 0.0), _job_order(row))


def refusals(sweep_dir: Path) -> dict[str, str]:
    """Jobs this sweep's command was refused by their folders (in use, other settings) and left as they were: run_dir -> reason.

    A note no longer applies once the job's metrics.json has changed since (its other process finished it, say).
    """
    notes = {}
    try:
        lines = (sweep_dir / REFUSED).read_text(encoding="utf-8").splitlines()
    except OSError:
        return notes
    for line in lines:
        try:
            note = json.loads(line)
            metrics = sweep_dir / note["run_dir"] / METRICS
            if note.get("metrics_mtime") == (metrics.stat().st_mtime_ns if metrics.exists() else None):
                notes[note["run_dir"]] = note["reason"]
        except (ValueError, KeyError, TypeError, OSError):
            continue
    return notes


def collect(sweep_dir: Path) -> tuple[list[dict], list[str]]:
    """The rows (one per job folder, best first) and the swept keys, in override order."""
    refused = refusals(sweep_dir)
    rows = [read_job(p) for p in sweep_dir.iterdir() if _is_job(p)]
    for r in rows:
        if r["run_dir"] in refused:
            r["status"], r["error"] = "refused", refused[r["run_dir"]]
    return sorted(rows, key=rank), _columns(sweep_dir, rows)


def _job_order(row: dict) -> tuple:
    """Job numbers in numeric order (2 before 10), folders without a number after them."""
    return (0, row["job"], "") if isinstance(row["job"], int) else (1, 0, str(row["job"]))


def _columns(sweep_dir: Path, rows: list[dict]) -> list[str]:
    """The swept keys; failing that (no sweep record), the override keys whose values differ between jobs."""
    try:
        keys = swept_keys(sweep_dir, _sweeper_params(sweep_dir, rows))
    except Exception:  # a damaged multirun.yaml: fall back on what differs between the jobs
        keys = []
    if keys:
        return keys
    keys = list(dict.fromkeys(k for r in rows for k in r["overrides"]))
    return [k for k in keys if len({r["overrides"].get(k) for r in rows}) > 1] if len(rows) > 1 else keys


def _sweeper_params(sweep_dir: Path, rows: list[dict]):
    """The search space a sweeper (Optuna) drew from, from the first readable job record."""
    for r in rows:
        try:
            return OmegaConf.load(sweep_dir / r["run_dir"] / ".hydra" / "hydra.yaml").hydra.sweeper.get("params")
        except Exception:
            continue
    return None


def to_csv(rows: list[dict], keys: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["job", *keys, *METRIC_COLUMNS, "note", "run_dir", "error"])
    for r in rows:
        writer.writerow([r["job"], *(r["overrides"].get(k, "") for k in keys), *(r[c] for c in METRIC_COLUMNS), r["note"], r["run_dir"], r["error"]])
    return out.getvalue()


def _fmt(column: str, value) -> str:
    """A table cell: speeds as whole numbers, figures to four places, long swept floats to four digits."""
    if value is None or value == "":
        return "-"
    if column == "examples_per_sec":
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:.4f}"
    parsed = _value(value) if isinstance(value, str) else value
    return f"{parsed:.4g}" if isinstance(parsed, float) else str(value)


def rerun_command(row: dict) -> str:
    return "python -m lenet_exp " + " ".join(f"{k}={v}" for k, v in row["overrides"].items())


def best_lines(rows: list[dict]) -> list[str]:
    """The best setting and how to rerun it; or, honestly, that the best is tied or that no job learned."""
    completed = [r for r in rows if r["status"] == "completed"]
    learned = [r for r in completed if not r["not_learning"]]
    if completed and not learned:
        return [f"No job learned: all {len(completed)} completed jobs sit at chance (best test acc within {CHANCE_MARGIN} of guessing "
                "the most common class), so there is no best setting to rerun. Try smaller learning rates or another activation.", ""]
    if not learned:
        return []
    best = learned[0]
    tied = [r for r in learned if r["test_acc"] == best["test_acc"]]
    if len(tied) > 1:
        jobs = ", ".join(str(r["job"]) for r in sorted(tied, key=_job_order))
        head = f"Best: a tie at test acc {best['test_acc']:.4f} between jobs {jobs}; no single best. Rerun job {best['job']} with:"
    else:
        head = f"Best: job {best['job']}, test acc {best['test_acc']:.4f}. Rerun it with:"
    return [head, "", f"    {rerun_command(best)}", ""]


def to_markdown(sweep_dir: Path, rows: list[dict], keys: list[str]) -> str:
    header = ["job", *keys, *METRIC_COLUMNS]
    lines = [f"# Sweep summary: {sweep_dir}", ""]
    counts = {s: len(list(g)) for s, g in groupby(sorted(str(r["status"]) for r in rows))}
    lines += [f"{len(rows)} job{'s' if len(rows) != 1 else ''}: " + ", ".join(f"{n} {s}" for s, n in counts.items()), ""]
    lines += best_lines(rows)
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        status = f"{r['status']}, {r['note']}" if r["note"] else r["status"]
        cells = [r["job"], *(r["overrides"].get(k, "") for k in keys), status, *(r[c] for c in METRIC_COLUMNS[1:])]
        lines.append("| " + " | ".join(_fmt(col, c) for col, c in zip(header, cells)) + " |")
    errors = [f"- job {r['job']}: {r['error']}" for r in rows if r["error"]]
    return "\n".join(lines + ([ "", "Errors:", *errors] if errors else [])) + "\n"


def write_summary(sweep_dir: Path) -> list[dict]:
    """Rebuild summary.csv, summary.md and summary.png in a sweep folder; returns the rows, best first."""
    rows, keys = collect(sweep_dir)
    if not rows:
        return rows
    atomic_write(sweep_dir / "summary.csv", to_csv(rows, keys).encode())
    atomic_write(sweep_dir / "summary.md", to_markdown(sweep_dir, rows, keys).encode())
    atomic_write(sweep_dir / "summary.png", to_png(rows, keys))
    return rows


FINISHED = ("completed", "diverged")


class SummaryCallback(Callback):
    """At the end of a --multirun: write the summary, print it, and exit non-zero if a job failed or did not finish."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = write_summary(sweep_dir)
        print((sweep_dir / "summary.md").read_text() if rows else f"{sweep_dir}: no jobs ran")
        if rows:
            print(f"Summary: {sweep_dir / 'summary.md'} (summary.csv and summary.png beside it)")
        failed = [r for r in rows if r["status"] in ("failed", "unreadable")]
        unfinished = [r for r in rows if r["status"] not in (*FINISHED, "failed", "unreadable")]
        if failed or unfinished:
            parts = [f"{len(failed)} of {len(rows)} jobs failed"] if failed else []
            named = ", ".join(f"job {r['job']} {r['status']}" for r in unfinished[:5])
            parts += [f"{len(unfinished)} did not finish ({named})"] if unfinished else []
            sys.exit(f"{'; '.join(parts)}; see {sweep_dir / 'summary.md'}")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m lenet_exp.summarize <sweep folder>", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    if not folder.is_dir():
        print(f"Error: {folder}: {'is a file, not a sweep folder' if folder.exists() else 'no such folder'}", file=sys.stderr)
        return 2
    try:
        rows = write_summary(folder)
    except OSError as e:
        print(f"Error: {folder}: cannot write the summary ({' '.join(str(e).split())})", file=sys.stderr)
        return 1
    if not rows:
        print(f"Error: {folder}: no job folders (with .hydra/overrides.yaml or metrics.json) found", file=sys.stderr)
        return 1
    print((folder / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
