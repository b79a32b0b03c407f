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

from lenet_exp.run_files import METRICS, atomic_write
from lenet_exp.run_folder import live_status
from lenet_exp.sweep import IGNORED, swept_keys

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
        metrics = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{METRICS}: {' '.join(str(e).split())[:160]}") from None
    if not isinstance(metrics, dict):
        raise ValueError(f"{METRICS}: not a JSON object")
    return live_status(job_dir, metrics)


def read_job(job_dir: Path) -> dict:
    """One job's row: number, overrides, figures; a job whose files cannot be read is `unreadable`, with the reason."""
    num = job_dir.name.split("_", 1)[0]
    row = {"job": int(num) if num.isdigit() else job_dir.name, "run_dir": job_dir.name, "overrides": {}}
    try:
        row["overrides"] = _overrides(job_dir)
        metrics = _metrics(job_dir)
    except ValueError as e:
        return {**row, **{c: None for c in METRIC_COLUMNS}, "status": "unreadable", "error": str(e), "history": []}
    history = metrics.get("history") if isinstance(metrics.get("history"), dict) else {}
    return {**row, **{c: metrics.get(c) for c in METRIC_COLUMNS}, "error": metrics.get("error") or "", "history": history.get("test_acc") or []}


def rank(row: dict) -> tuple:
    """Sort key, best first: completed jobs before any other, then by test accuracy, then by job number."""
    acc = row["test_acc"] if isinstance(row["test_acc"], (int, float)) else None
    return (row["status"] != "completed", acc is None, -(acc or 0.0), _job_order(row))


def collect(sweep_dir: Path) -> tuple[list[dict], list[str]]:
    """The rows (one per job folder, best first) and the swept keys, in override order."""
    rows = sorted((read_job(p) for p in sweep_dir.iterdir() if _is_job(p)), key=rank)
    return rows, _columns(sweep_dir, rows)


def _job_order(row: dict) -> tuple:
    """Job numbers in numeric order (2 before 10), folders without a number after them."""
    return (0, row["job"], "") if isinstance(row["job"], int) else (1, 0, str(row["job"]))


def _columns(sweep_dir: Path, rows: list[dict]) -> list[str]:
    """The swept keys; failing that (no sweep record), the override keys whose values differ between jobs."""
    keys = swept_keys(sweep_dir, _sweeper_params(sweep_dir, rows))
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
    writer.writerow(["job", *keys, *METRIC_COLUMNS, "run_dir", "error"])
    for r in rows:
        writer.writerow([r["job"], *(r["overrides"].get(k, "") for k in keys), *(r[c] for c in METRIC_COLUMNS), r["run_dir"], r["error"]])
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


def to_markdown(sweep_dir: Path, rows: list[dict], keys: list[str]) -> str:
    header = ["job", *keys, *METRIC_COLUMNS]
    lines = [f"# Sweep summary: {sweep_dir}", ""]
    counts = {s: len(list(g)) for s, g in groupby(sorted(str(r["status"]) for r in rows))}
    lines += [f"{len(rows)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items()), ""]
    best = next((r for r in rows if r["status"] == "completed"), None)
    if best:
        args = " ".join(f"{k}={v}" for k, v in best["overrides"].items())
        lines += [f"Best: job {best['job']}, test acc {best['test_acc']:.4f}. Rerun it with:", "", f"    python -m lenet_exp {args}", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["job"], *(r["overrides"].get(k, "") for k in keys), *(r[c] for c in METRIC_COLUMNS)]
        lines.append("| " + " | ".join(_fmt(col, c) for col, c in zip(header, cells)) + " |")
    errors = [f"- job {r['job']}: {r['error']}" for r in rows if r["error"]]
    return "\n".join(lines + ([ "", "Errors:", *errors] if errors else [])) + "\n"


def _setting(r: dict, keys: list[str]) -> str:
    """A job's values of some keys, short: `activation=relu, optimizer.lr=0.3`."""
    return ", ".join(f"{k}={_fmt('', r['overrides'].get(k))}" for k in keys)


def to_png(rows: list[dict], keys: list[str]) -> bytes:
    """Final test accuracy against each swept numeric key (a line per value of the categorical keys), and every job's test-acc curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["test_acc"] is not None]  # best first
    numeric = [k for k in keys if done and all(isinstance(_value(r["overrides"].get(k, "")), (int, float)) for r in done)]
    categorical = [k for k in keys if k not in numeric]
    panels = max(len(numeric), 1) + 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.5), squeeze=False)
    axes = axes[0]
    for ax, key in zip(axes, numeric):
        grid = len(numeric) == 1 or all(len({r["overrides"].get(k) for r in done}) == 1 for k in numeric if k != key)
        label = lambda r: _setting(r, categorical) or "test acc"  # noqa: E731
        for name, group in groupby(sorted(done, key=label), key=label):
            points = sorted((_value(r["overrides"][key]), r["test_acc"]) for r in group)
            ax.plot(*zip(*points), marker="o", linestyle="-" if grid else "none", label=name)  # lines only on a grid
        values = [_value(r["overrides"][key]) for r in done]
        if min(values) > 0 and max(values) / min(values) >= 10:
            ax.set_xscale("log")
        if done:
            ax.scatter([_value(done[0]["overrides"][key])], [done[0]["test_acc"]], marker="*", s=300, color="gold", edgecolor="black", zorder=5, label="best")
            ax.legend(fontsize=7)
        ax.set(xlabel=key, ylabel="final test acc", title=f"test acc vs {key}")
        ax.grid(alpha=0.3)
    if not numeric:
        names = [_setting(r, keys) or str(r["job"]) for r in done]
        axes[0].barh(names[::-1], [r["test_acc"] for r in done][::-1])
        axes[0].set(xlabel="final test acc", title="test acc per job (best on top)")
    curves = axes[-1]
    for r in sorted(rows, key=_job_order):
        if r["history"]:
            curves.plot(range(1, len(r["history"]) + 1), r["history"], marker=".", label=f"{r['job']}: {_setting(r, keys)}")
    curves.set(xlabel="epoch", ylabel="test acc", title="test acc per epoch, every job")
    curves.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    curves.grid(alpha=0.3)
    if any(r["history"] for r in rows):
        curves.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()


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
