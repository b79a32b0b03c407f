"""Sweep summary: one row per job from its metrics.json, completed and best first; one row per setting over seeds.

Writes summary.csv, summary.md (with the command that reruns the best setting) and summary.png
(summary_table.py and summary_plot.py draw them) into the sweep folder, and summary_by_setting.csv
when `seed` is swept. Each job refreshes it when it ends, and the sweep once more at its end; it
can be rebuilt at any time, for a finished, running or interrupted sweep:

    python -m lenet_exp.summarize multirun/2026-11-27/21-40-00
"""

from __future__ import annotations

import signal
import sys

from lenet_exp.signals import interrupted_line, stop

if __name__ == "__main__":  # Ctrl-C while the modules below load: one line, not a traceback
    signal.signal(signal.SIGINT, lambda signum, _: sys.exit(interrupted_line(signum, "nothing was written")))

from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lenet_exp.metrics import METRICS
from lenet_exp.run_folder import RECORD
from lenet_exp.summary import is_job, settle_jobs, single_runs, write_summary
from lenet_exp.sweep_record import SWEEP_RECORD, job_number
from lenet_exp.words import one_line, plural


class SummaryCallback(Callback):
    """At the end of a --multirun: write the summary, print it, and exit non-zero if a job failed or did not finish,
    or if the summary cannot be written (the jobs' own records stand)."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            settle_jobs(sweep_dir)  # a job whose process died without a word: its own record says interrupted too
            rows = write_summary(sweep_dir)
        except OSError as e:
            sys.exit(f"Error: summary not written: {one_line(e)}; the jobs' own files are kept")
        print(_shown(sweep_dir) if rows else f"{sweep_dir}: no jobs ran")
        failed = [r for r in rows if r["status"] in ("failed", "unreadable")]
        unfinished = [r for r in rows if r["status"] not in ("completed", "diverged", "pruned", "failed", "unreadable")]
        if failed or unfinished:
            parts = [f"{len(failed)} of {plural(len(rows), 'job')} failed"] if failed else []
            named = ", ".join(f"job {r['job']} {r['status']}" for r in unfinished[:5])
            parts += [f"{len(unfinished)} did not finish ({named})"] if unfinished else []
            sys.exit(f"{'; '.join(parts)}; see {sweep_dir / 'summary.md'}")


def _shown(folder: Path) -> str:
    """summary.md, and where it and its companions are."""
    md = folder / "summary.md"
    return f"{md.read_text()}\nSummary: {md} (summary.csv and summary.png beside it)"


USAGE = (
    "usage: python -m lenet_exp.summarize <folder>   (a sweep's: multirun/<date>/<time>; or one of single runs, "
    "outputs/, whose runs it compares)"
)
GIVE = "give a sweep's folder (multirun/<date>/<time>)"


def is_sweep(folder: Path) -> bool:
    """A sweep's folder: its record (sweep.json, multirun.yaml), or job folders numbered as a sweep numbers them."""
    if (folder / RECORD).is_dir():
        return False
    if (folder / SWEEP_RECORD).is_file() or (folder / "multirun.yaml").is_file():
        return True
    return any(job_number(p.name) is not None and is_job(p) for p in folder.iterdir())


def not_a_sweep(folder: Path) -> str:
    """Why a folder is not one to summarise, and what to give instead."""
    if (folder / RECORD).is_dir():
        return f"a single run's folder, not a sweep (its figures are in its {METRICS}); {GIVE}"
    inside = [p for p in folder.iterdir() if p.is_dir()]
    if any(is_sweep(p) for p in inside):
        return "holds sweep folders, not a sweep; give one of them (multirun/<date>/<time>)"
    return f"no sweep in it (no {SWEEP_RECORD}, multirun.yaml or job folders), and no run folders; {GIVE}"


def main(argv: list[str]) -> int:
    if argv in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if len(argv) != 1 or argv[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    folder = Path(argv[0])
    if not folder.is_dir():
        why = "is a file, not a sweep folder" if folder.exists() else "no such folder"
    else:
        try:
            runs = not is_sweep(folder) and bool(single_runs(folder))  # outputs/: its runs, compared
            why = None if runs or is_sweep(folder) else not_a_sweep(folder)
        except OSError as e:
            why = f"cannot read it ({one_line(e)})"
    if why:  # nothing written into a folder that is not a sweep
        print(f"Error: {folder}: {why}", file=sys.stderr)
        return 2
    try:
        rows = write_summary(folder, runs=runs)
    except OSError as e:
        print(f"Error: summary not written: {one_line(e)}", file=sys.stderr)
        return 1
    if not rows:
        print(f"Error: {folder}: a sweep with no job folders yet; nothing to summarise", file=sys.stderr)
        return 1
    print(_shown(folder))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        stop(signal.SIGINT, "the summary files are written whole or not at all")
