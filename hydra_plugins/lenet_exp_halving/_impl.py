"""Successive halving as plain functions: the rungs, the ranking, and a search loop that any trainer can drive.

Rung k trains every live setting to `min_epochs * eta**k` epochs (capped; the last rung is max_epochs),
then keeps the best `ceil(n / eta)` by their test accuracy at that rung (ties: the lower job number;
failed or diverged last). Each job lives in one folder for the whole search and continues there from its
checkpoint, so nothing is retrained; a job left behind is marked `pruned` and stays resumable. Jobs that
differ only in `seed` form one setting, ranked, continued and pruned together by their mean. All that
decides the search is read back from the job folders, so a killed search rerun makes the same choices.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lenet_exp.config import quoted
from lenet_exp.run_folder import DamagedRecord, FolderRefused, RunFolder, locked, read_json, write_json
from lenet_exp.sweep import HALVING, dirname_for, key_of


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

    def launch_overrides(self, epochs: int) -> list[str]:
        """The job at a rung: its overrides, the rung's epochs, its own folder whatever number the launcher gives it."""
        return [*self.overrides, f"trainer.epochs={epochs}", f"hydra.sweep.subdir={quoted(self.folder.name)}"]

    def metrics(self) -> dict:
        """Its metrics.json, or {} where that is missing or not a run's record (the job then has no score)."""
        try:
            return RunFolder(self.folder).metrics() or {}
        except DamagedRecord:
            return {}


class RungIncomplete(Exception):
    """A rung's jobs did not all end with a figure for it (a folder refused or damaged): nothing is ranked or pruned."""


def check_rung(alive: list[list[Job]], epochs: int, k: int) -> None:
    """Every job of a live setting has a test accuracy at `epochs`, or ended failed or diverged (those rank last)."""
    for job in (job for setting in alive for job in setting):
        metrics = job.metrics()
        if score(metrics, epochs) is None and metrics.get("status") not in ("failed", "diverged"):
            state = (
                f"status {metrics['status']}, {metrics['epochs_completed']} epochs"
                if metrics
                else "no readable metrics.json"
            )
            raise RungIncomplete(
                f"halving stopped before choosing at rung {k + 1} ({epochs} epochs): job {job.num} has no test "
                "accuracy for it "
                f"({state}, in {job.folder}); nothing was pruned. Fix that job's folder and rerun the same command"
            )


def jobs_of_grid(grid: list[list[str]], sweep_dir: Path, swept: list[str]) -> list[Job]:
    """The grid's jobs, numbered in grid order, each in the folder a plain sweep would give it."""
    jobs = []
    for num, point in enumerate(grid):
        overrides = [o for o in point if key_of(o) != "trainer.epochs"]
        jobs.append(Job(num, overrides, sweep_dir / f"{num}_{dirname_for(overrides, swept)}"))
    return jobs


def settings_of(jobs: list[Job]) -> list[list[Job]]:
    """Jobs that differ only in seed, together, in grid order."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.setting, []).append(job)
    return list(groups.values())


def score(metrics: dict, epochs: int) -> float | None:
    """The job's test accuracy after `epochs` epochs, or None when it did not get there (failed, diverged, not run)."""
    history = (metrics.get("history") or {}).get("test_acc") or []
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


def prune(job: Job, note: str) -> None:
    """Mark a job left behind, in its own metrics.json, under its folder's lock; its files and checkpoint stay."""
    try:
        folder = RunFolder(job.folder)
        with locked(job.folder):
            metrics = job.metrics()
            if metrics.get("status") in ("completed", "pruned"):
                folder.write_metrics({**metrics, "status": "pruned", "note": note})
    except FolderRefused:
        pass  # another process works there now: it keeps its own record


class SearchRecord:
    """halving.json: the rungs, each rung's choice and the search's wall time, kept across reruns of the same sweep."""

    def __init__(self, sweep_dir: Path, eta: int, rungs: list[int], jobs: list[Job], started: float) -> None:
        self.path, self.started = sweep_dir / HALVING, started
        earlier = read_json(self.path) or {}
        self.previous_seconds = float(earlier.get("wall_seconds") or 0.0)
        self.state = {
            "eta": eta,
            "rungs": rungs,
            "jobs": len(jobs),
            "settings": len(settings_of(jobs)),
            "rung_choices": [],
            "finished": False,
        }

    def rung(self, epochs: int, ranked: list[int], kept: int, scores: dict) -> None:
        self.state["rung_choices"].append({"epochs": epochs, "ranked_jobs": ranked, "kept": kept, "scores": scores})
        self.save()

    def finish(self) -> None:
        self.state["finished"] = True
        self.save()

    def save(self) -> None:
        seconds = self.previous_seconds + time.monotonic() - self.started
        write_json(self.path, {**self.state, "wall_seconds": seconds})


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
        behind = [job for setting in alive for job in setting if needs_training(job.metrics(), epochs)]
        if behind:
            train(behind, epochs)
        check_rung(alive, epochs, k)
        scores = [setting_score([job.metrics() for job in setting], epochs) for setting in alive]
        if not last and all(s is None for s in scores):
            raise RungIncomplete(
                f"halving stopped at rung {k + 1} ({epochs} epochs): no setting ended with a test accuracy "
                "(every job failed or diverged); see the summary, fix the cause and rerun the same command"
            )
        order = rank(scores, [setting[0].num for setting in alive])
        kept = len(alive) if last else keep_count(len(alive), eta)
        if record:
            record.rung(
                epochs, [alive[i][0].num for i in order], kept, {str(alive[i][0].num): scores[i] for i in order}
            )
        for place, i in enumerate(order[kept:], start=kept + 1):
            shown = "no accuracy" if scores[i] is None else f"test acc {scores[i]:.4f}"
            for job in alive[i]:
                prune(
                    job,
                    f"after rung {k + 1} of {len(rungs)} ({epochs} epoch{'s' * (epochs != 1)}): {shown}, ranked "
                    f"{place} of {len(alive)}",
                )
        alive = [alive[i] for i in order[:kept]]
    if record:
        record.finish()
    return alive
