"""Sweep summary: one row per job from its metrics.json, best test accuracy first.

Writes summary.csv, summary.md (with the command that reruns the best setting) and summary.png
into the sweep folder. Each job refreshes it when it ends, and the sweep once more at its end; it
can be rebuilt at any time, for a finished, running or interrupted sweep:

    python -m lenet_exp.summarize multirun/2026-11-27/21-40-00
"""

from __future__ import annotations

import csv
import io
import sys
from itertools import groupby
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lenet_exp.run_files import atomic_write, read_metrics
from lenet_exp.sweep import IGNORED, swept_keys

METRIC_COLUMNS = ["status", "test_acc", "best_test_acc", "train_loss", "train_acc", "epochs_completed", "examples_per_sec"]


def _value(text: str):
    """An override's value as YAML reads it (0.1 -> float, relu -> str)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def collect(sweep_dir: Path) -> tuple[list[dict], list[str]]:
    """The rows (one per job folder, best test accuracy first) and the swept keys, in override order."""
    rows = []
    for job_dir in sorted(p for p in sweep_dir.iterdir() if (p / ".hydra" / "overrides.yaml").is_file()):
        overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
        pairs = [o.lstrip("+~").split("=", 1) for o in overrides if "=" in o]
        metrics = read_metrics(job_dir) or {"status": "not started", "epochs_completed": 0}
        num = job_dir.name.split("_", 1)[0]
        rows.append({
            "job": int(num) if num.isdigit() else job_dir.name,
            "overrides": {k: v for k, v in pairs if not k.startswith(IGNORED)},
            **{c: metrics.get(c) for c in METRIC_COLUMNS},
            "run_dir": job_dir.name,
            "error": metrics.get("error", ""),
            "history": metrics.get("history", {}).get("test_acc", []),
        })
    rows.sort(key=lambda r: (r["test_acc"] is None, -(r["test_acc"] or 0.0), _job_order(r)))
    return rows, _columns(sweep_dir, rows)


def _job_order(row: dict) -> tuple:
    """Job numbers in numeric order (2 before 10), folders without a number after them."""
    return (0, row["job"], "") if isinstance(row["job"], int) else (1, 0, str(row["job"]))


def _columns(sweep_dir: Path, rows: list[dict]) -> list[str]:
    """The swept keys; failing that (no sweep record), the override keys whose values differ between jobs."""
    first_job = sweep_dir / rows[0]["run_dir"] / ".hydra" / "hydra.yaml" if rows else None
    params = OmegaConf.load(first_job).hydra.sweeper.get("params") if first_job and first_job.is_file() else None
    keys = swept_keys(sweep_dir, params)
    if keys:
        return keys
    keys = list(dict.fromkeys(k for r in rows for k in r["overrides"]))
    return [k for k in keys if len({r["overrides"].get(k) for r in rows}) > 1] if len(rows) > 1 else keys


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

    numeric = [k for k in keys if all(isinstance(_value(r["overrides"].get(k, "")), (int, float)) for r in rows)]
    categorical = [k for k in keys if k not in numeric]
    panels = max(len(numeric), 1) + 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.5), squeeze=False)
    axes = axes[0]
    done = [r for r in rows if r["test_acc"] is not None]  # best first
    for ax, key in zip(axes, numeric):
        grid = len(numeric) == 1 or all(len({r["overrides"].get(k) for r in done}) == 1 for k in numeric if k != key)
        label = lambda r: _setting(r, categorical) or "test acc"  # noqa: E731
        for name, group in groupby(sorted(done, key=label), key=label):
            points = sorted((_value(r["overrides"][key]), r["test_acc"]) for r in group)
            ax.plot(*zip(*points), marker="o", linestyle="-" if grid else "none", label=name)  # lines only on a grid
        values = [_value(r["overrides"][key]) for r in rows]
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


class SummaryCallback(Callback):
    """At the end of a --multirun: write the summary, print it, and exit non-zero if a job failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = write_summary(sweep_dir)
        print((sweep_dir / "summary.md").read_text() if rows else f"{sweep_dir}: no jobs ran")
        failed = [r for r in rows if r["status"] == "failed"]
        if failed:
            sys.exit(f"{len(failed)} of {len(rows)} jobs failed; see {sweep_dir / 'summary.md'}")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python -m lenet_exp.summarize <sweep folder>", file=sys.stderr)
        return 2
    rows = write_summary(Path(argv[0]))
    if not rows:
        print(f"Error: {argv[0]}: no job folders (with .hydra/overrides.yaml) found", file=sys.stderr)
        return 1
    print((Path(argv[0]) / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
