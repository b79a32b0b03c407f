"""Successive halving as plain functions: the rungs, the grid's points, the ranking, and a search loop that any
trainer can drive (the halving sweeper in hydra_plugins/ drives it with Hydra's launcher).

Rung k trains every live setting to `min_epochs * eta**k` epochs (capped; the last rung is max_epochs), then keeps
the best `ceil(n / eta)` by their accuracy at that rung on the validation split (data.val_size; the test set where
none is held out) (ties: the lower job number; failed or diverged last). Each job lives in one folder for the whole
search and continues there from its checkpoint, so nothing is retrained; a job left behind is marked `pruned` and
stays resumable. Jobs that differ only in `seed` form one setting, ranked, continued and pruned together by their
mean. A rerun of the search continues the one recorded in halving.json: a rung decided there is never decided again.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lenet_exp.errors import FolderRefused
from lenet_exp.files import DamagedRecord
from lenet_exp.folders import locked
from lenet_exp.logger import end_session
from lenet_exp.metrics import chosen_on, figure_at, learning_note, rank_key
from lenet_exp.overrides import grid, key_of, param_overrides, parse, quoted, setting_of, split
from lenet_exp.run_folder import RunFolder
from lenet_exp.signals import Interrupted, handlers, interrupted_line, stop
from lenet_exp.summary import refresh_summary
from lenet_exp.summary_table import rungs_text
from lenet_exp.sweep_record import HalvingRecord, continue_command, dirname_for, swept_keys
from lenet_exp.words import one_line, plural

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOPPED = "the search stopped between its jobs; continue with: {}"
LAUNCH_LINE = re.compile(r"(\s*#)(\d+)( : )")  # a launcher's line per job: `\t#<launch index> : <overrides>`


def rung_epochs(min_epochs: int, eta: int, max_epochs: int) -> list[int]:
    """Epochs each rung trains to: min_epochs * eta**k below max_epochs, then max_epochs."""
    rungs, epochs = [], min_epochs
    while epochs < max_epochs:
        rungs.append(epochs)
        epochs *= eta
    return [*rungs, max_epochs]


@dataclass
class Point:
    """One point of the grid, one job of the search: its number, its overrides (without trainer.epochs), its folder,
    its setting (without seed)."""

    num: int
    overrides: list[str]
    folder: Path

    @property
    def setting(self) -> tuple:
        return setting_of(dict(map(split, self.overrides)))

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


def folder_state(job: Point) -> str:
    """What a job's folder says of it: its status and epochs, or why its metrics.json cannot be read."""
    try:
        metrics = RunFolder(job.folder).metrics()
    except DamagedRecord as e:
        return f"damaged: {e}"
    if not metrics:
        return "no metrics.json"
    return f"status {metrics['status']}, {plural(metrics.get('epochs_completed') or 0, 'epoch')}"


def check_rung(alive: list[list[Point]], epochs: int, k: int) -> None:
    """Every job of a live setting has a test accuracy at `epochs`, or ended failed or diverged (those rank last)."""
    for job in (job for setting in alive for job in setting):
        metrics = job.metrics()
        if figure_at(metrics, epochs) is None and metrics.get("status") not in ("failed", "diverged"):
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


def points_of_grid(grid: list[list[str]], sweep_dir: Path, swept: list[str]) -> list[Point]:
    """The grid's jobs, numbered in grid order, each in the folder a plain sweep would give it; RepeatedJob where two
    points set the same values (`seed=0,0`, `optimizer.lr=0.1,0.10`)."""
    jobs, seen = [], {}
    for num, point in enumerate(grid):
        overrides = [o for o in point if key_of(o) != "trainer.epochs"]
        values = frozenset((key_of(o), _frozen(parse(o).value())) for o in overrides)
        if values in seen:
            raise RepeatedJob(
                f"{' '.join(overrides)}: the same job as {' '.join(seen[values].overrides)} (a value given twice); "
                "give each value of a swept key once"
            )
        jobs.append(Point(num, overrides, sweep_dir / f"{num}_{dirname_for(overrides, swept)}"))
        seen[values] = jobs[-1]
    return jobs


def group_settings(jobs: list[Point]) -> list[list[Point]]:
    """Jobs that differ only in seed, together, in grid order."""
    groups: dict[tuple, list[Point]] = {}
    for job in jobs:
        groups.setdefault(job.setting, []).append(job)
    return list(groups.values())


def setting_score(metrics: list[dict], epochs: int) -> float | None:
    """The mean over a setting's seeds; None when any seed has no accuracy (an unstable setting ranks last)."""
    scores = [figure_at(m, epochs) for m in metrics]
    return None if any(s is None for s in scores) else statistics.fmean(scores)


def needs_training(metrics: dict, epochs: int) -> bool:
    """Not yet trained to `epochs` (a diverged job is done for good; a failed one is tried again)."""
    return (metrics.get("epochs_completed") or 0) < epochs and metrics.get("status") != "diverged"


def prune(job: Point, note: str, epochs: int, fate: str = "pruned") -> None:
    """Mark a job left behind at a rung of `epochs`, in its own metrics.json (`note`: why) and its HParams session
    (`fate`: where), under its folder's lock; its files and checkpoint stay. A job trained past the rung since
    (continued by hand with resume=) keeps its own record."""
    try:
        folder = RunFolder(job.folder)
        with locked(job.folder):
            metrics = job.metrics()
            if metrics.get("status") in ("completed", "pruned") and metrics.get("epochs_completed") == epochs:
                folder.write_metrics({**metrics, "status": "pruned", "note": note})
                end_session(job.folder, "pruned", fate)  # TensorBoard's HParams says so too: not a success
    except FolderRefused:
        pass  # another process works there now: it keeps its own record


def interrupt(signum: int, frame) -> None:
    """SIGINT or SIGTERM in the search's own steps (ranking, pruning, writing its record): stop there."""
    raise Interrupted(signum, saved=False)


def last_word(note: str):
    """A handler for SIGTERM while the launcher works outside any job: one line (`note`), then the signal's own end (so
    a launcher's workers see their sweep end, and checkpoint)."""

    def handler(signum: int, frame) -> None:
        os.write(2, f"{interrupted_line(signum, note)}\n".encode())
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    return handler


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


def numbers(jobs: list[Point]) -> str:
    """`job 3` or `jobs 5, 3, 0`: the numbers of their folders and of their rows in the summary."""
    return f"job{'s' * (len(jobs) != 1)} {', '.join(str(job.num) for job in jobs)}"


@dataclass
class Rung:
    """One rung of a search: its place, its epochs, and how many settings it keeps."""

    k: int
    of: int
    epochs: int
    keeps: int

    @property
    def last(self) -> bool:
        return self.k == self.of - 1

    @property
    def name(self) -> str:
        return f"rung {self.k + 1} of {self.of} ({plural(self.epochs, 'epoch')})"

    def __str__(self) -> str:
        return self.name.capitalize()


def search(
    settings: list[list[Point]],
    rungs: list[int],
    eta: int,
    train: Callable[[list[Point], int], None],
    record: HalvingRecord | None = None,
) -> list[list[Point]]:
    """Run the rungs: train the live settings' jobs that are behind, rank the settings, keep the best, prune the rest.

    `train(jobs, epochs)` brings each job to `epochs` epochs (continuing from its checkpoint); all else is read from
    the jobs' metrics.json, or, for a rung an earlier run of this search decided (`record`), from that decision.
    Returns the settings of the last rung, best first.
    """
    alive = settings
    for k, epochs in enumerate(rungs):
        rung = Rung(k, len(rungs), epochs, len(alive) if k == len(rungs) - 1 else math.ceil(len(alive) / eta))
        if len(alive) == 1 and not rung.last:
            continue  # one setting left: straight to the last rung, the same curves with fewer stops
        bring_to(alive, rung, train)
        order, scores = decided(alive, rung, record) or rank_rung(alive, rung)
        if record:
            ranked = [alive[i][0].num for i in order]
            record.rung(epochs, ranked, rung.keeps, {str(alive[i][0].num): scores[i] for i in order})
        best, rest = ([job for i in part for job in alive[i]] for part in (order[: rung.keeps], order[rung.keeps :]))
        went = f"{numbers(best)} go{'es' * (len(best) == 1)} on, {numbers(rest)} pruned"
        log.info("%s: %s", rung, f"{numbers(best)}, best first" if rung.last else went)
        for place, i in enumerate(order[rung.keeps :], start=rung.keeps + 1):
            split = chosen_on(alive[i][0].metrics()).removesuffix("_acc")
            seeds = f"mean {split} acc over {len(alive[i])} seeds" if len(alive[i]) > 1 else f"{split} acc"
            shown = "no accuracy" if scores[i] is None else f"{seeds} {scores[i]:.4f}"
            for job in alive[i]:
                note = f"after {rung.name}: {shown}, ranked {place} of {len(alive)}"
                fate = ", ".join(
                    filter(None, (f"pruned at rung {rung.k + 1} of {rung.of}", learning_note(job.metrics())))
                )
                prune(job, note, epochs, fate)
        alive = [alive[i] for i in order[: rung.keeps]]
    if record:
        record.finish()
    return alive


def bring_to(alive: list[list[Point]], rung: Rung, train: Callable[[list[Point], int], None]) -> None:
    """Bring the live settings' jobs to the rung's epochs (a job that failed, or whose folder was moved away, trains
    again), then hold them to having a figure for it."""
    behind = [job for setting in alive for job in setting if needs_training(job.metrics(), rung.epochs)]
    if behind:
        log.info("%s: training %s", rung, numbers(behind))
        train(behind, rung.epochs)
    check_rung(alive, rung.epochs, rung.k)


def decided(alive: list[list[Point]], rung: Rung, record: HalvingRecord | None) -> tuple[list, list] | None:
    """The ranking an earlier run of this search recorded for this rung, when it ranked these very settings to keep as
    many: a rerun never decides a rung again (a job trained again meanwhile does not move it). None to decide it now.
    The last rung, which prunes nothing, is ranked anew."""
    earlier = record.decided(rung.epochs) if record and not rung.last else None
    firsts = [setting[0].num for setting in alive]
    if not earlier or sorted(earlier["ranked_jobs"]) != sorted(firsts) or earlier["kept"] != rung.keeps:
        return None
    order = [firsts.index(num) for num in earlier["ranked_jobs"]]
    scores = [earlier["scores"].get(str(num)) for num in firsts]
    log.info("%s: as an earlier run of this search decided it", rung)
    return order, scores


def rank_rung(alive: list[list[Point]], rung: Rung) -> tuple[list, list]:
    """The settings ranked by their mean over seeds at the rung's epochs, best first, with those means."""
    scores = [setting_score([job.metrics() for job in setting], rung.epochs) for setting in alive]
    if not rung.last and all(s is None for s in scores):
        raise RungIncomplete(
            f"halving stopped at rung {rung.k + 1} ({plural(rung.epochs, 'epoch')}): no setting ended with a test "
            "accuracy (every job failed or diverged); see the summary, fix the cause and rerun the same command"
        )
    firsts = [setting[0].num for setting in alive]
    return sorted(range(len(alive)), key=lambda i: rank_key(scores[i], firsts[i])), scores


class Search:
    """A search as its sweeper runs it: the grid's points from the sweep's config and arguments, the rungs, its
    record, and each rung's batch of jobs handed to `launch(batch, numbers)`."""

    def __init__(self, config: DictConfig, params: dict, arguments: list[str], eta: int, min_epochs: int,
                 max_epochs: int | None) -> None:  # fmt: skip
        self.config, self.eta, self.sweep_dir = config, eta, Path(str(config.hydra.sweep.dir))
        self.rungs = rung_epochs(min_epochs, eta, max_epochs or int(config.trainer.epochs))
        given = param_overrides(params) + list(arguments)
        try:
            self.points = points_of_grid(grid(given), self.sweep_dir, swept_keys(self.sweep_dir, params))
        except (RepeatedJob, ValueError) as e:
            print(f"Error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        self.settings = group_settings(self.points)
        self.outside: dict = {}  # the signal handlers outside the search's own steps: the launcher's and its jobs'

    @property
    def stopped(self) -> str:
        """What the last line says when the search stops between its jobs."""
        return STOPPED.format(continue_command(self.sweep_dir, sweep=True))

    @property
    def jobs(self) -> int:
        return len(self.points)

    @property
    def setting_count(self) -> int:
        return len(self.settings)

    def headline(self) -> str:
        """The search in the summary's words: settings named where seeds make them fewer than jobs."""
        jobs = plural(self.jobs, "job")
        named = jobs if self.setting_count == self.jobs else f"{plural(self.setting_count, 'setting')} ({jobs})"
        return f"Successive halving: {named}"

    def prepare(self, record: HalvingRecord, train: Callable[[list[Point], int], None]) -> list[list[Point]]:
        """The settings the rungs start from: the grid's, all known before any job (a ranged search draws them)."""
        return self.settings

    def run(self, launch: Callable[[list[list[str]], dict[int, int]], None]) -> list[list[Point]]:
        """The whole search; `launch(batch, numbers)` trains a rung's jobs. Stops in one line on a signal between jobs
        or a rung that cannot be ranked."""
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        log.info("%s, %s, keeping the best 1/%d after each", self.headline(), rungs_text(self.rungs), self.eta)
        record = HalvingRecord(self.sweep_dir, self.eta, self.rungs, self.jobs, self.setting_count, time.monotonic())
        train = lambda behind, epochs: self._train(behind, epochs, launch)  # noqa: E731
        try:
            with handlers(dict.fromkeys(STOP_SIGNALS, interrupt)) as self.outside:
                found = search(self.prepare(record, train), self.rungs, self.eta, train, record)
        except RungIncomplete as e:
            print(f"Error: {e}", file=sys.stderr)
            self.close(record)
            raise SystemExit(e.status) from None
        except Interrupted as e:
            self.close(record)
            stop(e.signum, self.stopped)
        except SystemExit:  # stopped inside a rung's launch, as its jobs' own lines said
            self.close(record)
            raise
        self.close(record, stopped=False)
        return found

    def close(self, record: HalvingRecord, stopped: bool = True) -> None:
        """The search's record saved (a full disk said in one line: exit 1) and, where it stopped short, its summary
        brought up to date: the statuses it wrote since a job last refreshed it (pruned), how to continue."""
        try:
            record.save()
        except OSError as e:
            print(f"Error: {one_line(e)}; the search's record is not saved (its jobs' own are)", file=sys.stderr)
            raise SystemExit(1) from None
        if stopped:
            refresh_summary(self.sweep_dir)

    def _train(self, jobs: list[Point], epochs: int, launch) -> None:
        """One rung for the launcher: each job to `epochs` epochs in its own folder, from its checkpoint. The launcher
        and its jobs handle signals as in any sweep; its lines show each job's own number."""
        batch = [job.launch_overrides(epochs, self.schedule_epochs(job)) for job in jobs]
        with handlers({**self.outside, signal.SIGTERM: last_word(self.stopped)}):
            launch(batch, {i: job.num for i, job in enumerate(jobs)})

    def schedule_epochs(self, job: Point) -> int | None:
        """The last rung's epochs for a job on a learning-rate schedule (None on a constant rate)."""
        chosen = next((split(o)[1] for o in job.overrides if key_of(o) == "scheduler"), None)
        return None if (chosen or self.config.scheduler.name) == "none" else self.rungs[-1]
