"""Successive halving as plain functions: the rungs, the ranking, and a search loop that any trainer can drive.

Rung k trains every live setting to `min_epochs * eta**k` epochs (capped; the last rung is max_epochs),
then keeps the best `ceil(n / eta)` by their accuracy at that rung on the validation split (data.val_size; the test
set where none is held out) (ties: the lower job number;
failed or diverged last). Each job lives in one folder for the whole search and continues there from its
checkpoint, so nothing is retrained; a job left behind is marked `pruned` and stays resumable. Jobs that
differ only in `seed` form one setting, ranked, continued and pruned together by their mean. All that
decides the search is read back from the job folders, so a killed search rerun makes the same choices.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser

from lenet_exp.config import quoted
from lenet_exp.run_folder import DamagedRecord, FolderRefused, RunFolder, chosen_on, load_json, locked, write_json
from lenet_exp.signals import Interrupted
from lenet_exp.sweep import HALVING, dirname_for, key_of
from lenet_exp.words import plural

log = logging.getLogger(__name__)


def rung_epochs(min_epochs: int, eta: int, max_epochs: int) -> list[int]:
    """Epochs each rung trains to: min_epochs * eta**k below max_epochs, then max_epochs."""
    rungs, epochs = [], min_epochs
    while epochs < max_epochs:
        rungs.append(epochs)
        epochs *= eta
    return [*rungs, max_epochs]


def keep_count(settings: int, eta: int) -> int:
    return math.ceil(settings / eta)


@dataclass
class Job:
    """One grid point: its number, its overrides (without trainer.epochs), its folder, its setting (without seed)."""

    num: int
    overrides: list[str]
    folder: Path

    @property
    def setting(self) -> tuple[str, ...]:
        return tuple(o for o in self.overrides if key_of(o) != "seed")

    def launch_overrides(self, epochs: int, schedule_epochs: int | None = None) -> list[str]:
        """The job at a rung: its overrides, the rung's epochs, its own folder whatever number the launcher gives it;
        on a learning-rate schedule, the schedule's length (the last rung's epochs, so every rung is on one curve)."""
        own = any(key_of(o) == "scheduler.epochs" for o in self.overrides)
        schedule = [f"scheduler.epochs={schedule_epochs}"] if schedule_epochs and not own else []
        return [
            *self.overrides,
            f"trainer.epochs={epochs}",
            *schedule,
            f"hydra.sweep.subdir={quoted(self.folder.name)}",
        ]

    def metrics(self) -> dict:
        """Its metrics.json, or {} where that is missing or not a run's record (the job then has no score)."""
        try:
            return RunFolder(self.folder).metrics() or {}
        except DamagedRecord:
            return {}


class RungIncomplete(Exception):
    """A rung's jobs did not all end with a figure for it (a folder refused or damaged: `status` 2, the user's to
    fix), or every one failed (`status` 1): nothing is ranked or pruned."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def folder_state(job: Job) -> str:
    """What a job's folder says of it: its status and epochs, or why its metrics.json cannot be read."""
    try:
        metrics = RunFolder(job.folder).metrics()
    except DamagedRecord as e:
        return f"damaged: {e}"
    if not metrics:
        return "no metrics.json"
    return f"status {metrics['status']}, {plural(metrics.get('epochs_completed') or 0, 'epoch')}"


def check_rung(alive: list[list[Job]], epochs: int, k: int) -> None:
    """Every job of a live setting has a test accuracy at `epochs`, or ended failed or diverged (those rank last)."""
    for job in (job for setting in alive for job in setting):
        metrics = job.metrics()
        if score(metrics, epochs) is None and metrics.get("status") not in ("failed", "diverged"):
            raise RungIncomplete(
                f"halving stopped before choosing at rung {k + 1} ({plural(epochs, 'epoch')}): job {job.num} has no "
                f"test accuracy for it ({folder_state(job)}, in {job.folder}); nothing was pruned. Fix that folder, or "
                "move it away to train the job again, and rerun the same command",
                status=2,
            )


class RepeatedJob(ValueError):
    """Two points of the grid train the same job (a value given twice): neither merged nor trained twice, refused."""


def _frozen(value):
    """An override's value, hashable: lists and dicts as tuples, so `[1,2]` twice is seen as the same value."""
    if isinstance(value, dict):
        return tuple((k, _frozen(v)) for k, v in sorted(value.items()))
    return tuple(map(_frozen, value)) if isinstance(value, list) else value


def jobs_of_grid(grid: list[list[str]], sweep_dir: Path, swept: list[str]) -> list[Job]:
    """The grid's jobs, numbered in grid order, each in the folder a plain sweep would give it; RepeatedJob where two
    points set the same values (`seed=0,0`, `optimizer.lr=0.1,0.10`)."""
    jobs, seen = [], {}
    parser = OverridesParser.create()
    for num, point in enumerate(grid):
        overrides = [o for o in point if key_of(o) != "trainer.epochs"]
        values = frozenset((o.key_or_group, _frozen(o.value())) for o in parser.parse_overrides(overrides))
        if values in seen:
            raise RepeatedJob(
                f"{' '.join(overrides)}: the same job as {' '.join(seen[values].overrides)} (a value given twice); "
                "give each value of a swept key once"
            )
        jobs.append(Job(num, overrides, sweep_dir / f"{num}_{dirname_for(overrides, swept)}"))
        seen[values] = jobs[-1]
    return jobs


def settings_of(jobs: list[Job]) -> list[list[Job]]:
    """Jobs that differ only in seed, together, in grid order."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.setting, []).append(job)
    return list(groups.values())


def score(metrics: dict, epochs: int) -> float | None:
    """The job's accuracy after `epochs` epochs on the choosing split (validation where held out), or None when it did
    not get there (failed, diverged, not run)."""
    history = (metrics.get("history") or {}).get(chosen_on(metrics)) or []
    return history[epochs - 1] if len(history) >= epochs and history[epochs - 1] is not None else None


def setting_score(metrics: list[dict], epochs: int) -> float | None:
    """The mean over a setting's seeds; None when any seed has no accuracy (an unstable setting ranks last)."""
    scores = [score(m, epochs) for m in metrics]
    return None if any(s is None for s in scores) else statistics.fmean(scores)


def rank(scores: list[float | None], first_jobs: list[int]) -> list[int]:
    """Setting indices, best first: by score, None last, ties to the lower job number."""
    return sorted(range(len(scores)), key=lambda i: (scores[i] is None, -(scores[i] or 0.0), first_jobs[i]))


def needs_training(metrics: dict, epochs: int) -> bool:
    """Not yet trained to `epochs` (a diverged job is done for good; a failed one is tried again)."""
    return (metrics.get("epochs_completed") or 0) < epochs and metrics.get("status") != "diverged"


def prune(job: Job, note: str, epochs: int) -> None:
    """Mark a job left behind at a rung of `epochs`, in its own metrics.json, under its folder's lock; its files and
    checkpoint stay. A job trained past the rung since (continued by hand with resume=) keeps its own record."""
    try:
        folder = RunFolder(job.folder)
        with locked(job.folder):
            metrics = job.metrics()
            if metrics.get("status") in ("completed", "pruned") and metrics.get("epochs_completed") == epochs:
                folder.write_metrics({**metrics, "status": "pruned", "note": note})
                from lenet_exp.logger import end_session  # TensorBoard's HParams status agrees: not a success

                end_session(job.folder, "pruned")
    except FolderRefused:
        pass  # another process works there now: it keeps its own record


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


class SearchRecord:
    """halving.json: the rungs, each rung's choice and the search's wall time, kept across reruns of the same sweep;
    written anew as the search starts (so a damaged one is replaced before any job reads it) and after each rung."""

    def __init__(self, sweep_dir: Path, eta: int, rungs: list[int], jobs: list[Job], started: float) -> None:
        self.path, self.started = sweep_dir / HALVING, started
        self.previous_seconds = earlier_seconds(self.path)
        self.state = {
            "eta": eta,
            "rungs": rungs,
            "jobs": len(jobs),
            "settings": len(settings_of(jobs)),
            "rung_choices": [],
            "finished": False,
        }
        self.save()

    def rung(self, epochs: int, ranked: list[int], kept: int, scores: dict) -> None:
        self.state["rung_choices"].append({"epochs": epochs, "ranked_jobs": ranked, "kept": kept, "scores": scores})
        self.save()

    def finish(self) -> None:
        self.state["finished"] = True
        self.save()

    def save(self) -> None:
        seconds = self.previous_seconds + time.monotonic() - self.started
        write_json(self.path, {**self.state, "wall_seconds": seconds})


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOPPED = "the search stopped between its jobs; rerun the same command to continue"


def interrupt(signum: int, frame) -> None:
    """SIGINT or SIGTERM in the search's own steps (ranking, pruning, writing its record): stop there."""
    raise Interrupted(signum, saved=False)


def last_word(signum: int, frame) -> None:
    """SIGTERM while the launcher works outside any job: one line, then the signal's own end (so a launcher's workers
    see their sweep end, and checkpoint)."""
    os.write(2, f"Interrupted by {signal.Signals(signum).name}: {STOPPED}.\n".encode())
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


@contextmanager
def signal_handlers(handlers: dict):
    """`{signal: handler}` for a block; the handlers before it come back after it. Yields those."""
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield previous
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


LAUNCH_LINE = re.compile(r"(\s*#)(\d+)( : )")  # a launcher's line per job: `\t#<launch index> : <overrides>`


def renumbered(message, numbers: dict[int, int]):
    """A launcher's line with the job's own number (its folder's, its row's in the summary) for the launch index."""
    found = LAUNCH_LINE.match(message) if isinstance(message, str) else None
    if not found or int(found[2]) not in numbers:
        return message
    return f"{found[1]}{numbers[int(found[2])]}{message[found.end(2) :]}"


@contextmanager
def numbered(numbers: dict[int, int]):
    """Every log line made in the block shows jobs by their own numbers, not the launcher's indices (a rung's jobs
    are launched as one batch, numbered from where the last batch ended)."""
    make = logging.getLogRecordFactory()

    def record(*args, **kwargs):
        made = make(*args, **kwargs)
        made.msg = renumbered(made.msg, numbers)
        return made

    logging.setLogRecordFactory(record)
    try:
        yield
    finally:
        logging.setLogRecordFactory(make)


def numbers(jobs: list[Job]) -> str:
    """`job 3` or `jobs 5, 3, 0`: the numbers of their folders and of their rows in the summary."""
    return f"job{'s' * (len(jobs) != 1)} {', '.join(str(job.num) for job in jobs)}"


def search(
    settings: list[list[Job]],
    rungs: list[int],
    eta: int,
    train: Callable[[list[Job], int], None],
    record: SearchRecord | None = None,
) -> list[list[Job]]:
    """Run the rungs: train the live settings' jobs that are behind, rank the settings, keep the best, prune the rest.

    `train(jobs, epochs)` brings each job to `epochs` epochs (continuing from its checkpoint); all else is read
    from the jobs' metrics.json. Returns the settings of the last rung, best first.
    """
    alive = settings
    for k, epochs in enumerate(rungs):
        last = k == len(rungs) - 1
        if len(alive) == 1 and not last:
            continue  # one setting left: straight to the last rung, the same curves with fewer stops
        rung = f"Rung {k + 1} of {len(rungs)} ({plural(epochs, 'epoch')})"
        behind = [job for setting in alive for job in setting if needs_training(job.metrics(), epochs)]
        if behind:
            log.info("%s: training %s", rung, numbers(behind))
            train(behind, epochs)
        check_rung(alive, epochs, k)
        scores = [setting_score([job.metrics() for job in setting], epochs) for setting in alive]
        if not last and all(s is None for s in scores):
            raise RungIncomplete(
                f"halving stopped at rung {k + 1} ({plural(epochs, 'epoch')}): no setting ended with a test accuracy "
                "(every job failed or diverged); see the summary, fix the cause and rerun the same command"
            )
        order = rank(scores, [setting[0].num for setting in alive])
        kept = len(alive) if last else keep_count(len(alive), eta)
        if record:
            record.rung(
                epochs, [alive[i][0].num for i in order], kept, {str(alive[i][0].num): scores[i] for i in order}
            )
        best, rest = ([job for i in part for job in alive[i]] for part in (order[:kept], order[kept:]))
        log.info(
            "%s: %s",
            rung,
            f"{numbers(best)}, best first"
            if last
            else f"{numbers(best)} go{'es' * (len(best) == 1)} on, {numbers(rest)} pruned",
        )
        for place, i in enumerate(order[kept:], start=kept + 1):
            split = chosen_on(alive[i][0].metrics()).removesuffix("_acc")
            shown = "no accuracy" if scores[i] is None else f"{split} acc {scores[i]:.4f}"
            for job in alive[i]:
                prune(
                    job,
                    f"after rung {k + 1} of {len(rungs)} ({plural(epochs, 'epoch')}): {shown}, ranked "
                    f"{place} of {len(alive)}",
                    epochs,
                )
        alive = [alive[i] for i in order[:kept]]
    if record:
        record.finish()
    return alive
