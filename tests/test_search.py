"""Successive halving and seeds: the rung arithmetic and choices with a stand-in trainer, then the real search
through the command (statuses, continuous curves, summaries, a kill and a rerun), settings over seeds, and
the HParams dashboard of a real TensorBoard server."""

import json
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path

import pytest
from helpers import (
    HANG,
    epochs_completed,
    job_dirs,
    popen,
    read_csv,
    refused,
    run_cli,
    scalars,
    session_status,
    start_cli,
    start_patched,
)

from lenet_exp.halving import (
    Point,
    RepeatedJob,
    RungIncomplete,
    group_settings,
    points_of_grid,
    renumbered,
    rung_epochs,
    search,
)
from lenet_exp.run_folder import RunFolder
from lenet_exp.summary import by_setting, collect
from lenet_exp.summary_table import setting_lines, to_markdown
from lenet_exp.sweep_record import HalvingRecord


@pytest.mark.parametrize(
    "args,rungs",
    [((1, 3, 10), [1, 3, 9, 10]), ((1, 3, 9), [1, 3, 9]), ((2, 2, 5), [2, 4, 5]), ((1, 3, 1), [1]), ((4, 3, 4), [4])],
)
def test_rungs_grow_by_eta_and_end_at_max_epochs(args, rungs):
    assert rung_epochs(*args) == rungs


class StandIn:
    """A trainer that writes what a run would: epochs reached and a test accuracy per epoch, from a fixed table."""

    def __init__(self, curves: dict[int, list[float] | None]) -> None:
        self.curves, self.calls = curves, []

    def __call__(self, jobs: list[Point], epochs: int) -> None:
        self.calls.append((sorted(j.num for j in jobs), epochs))
        for job in jobs:
            curve = self.curves[job.num]
            metrics = (
                {"status": "failed", "epochs_completed": 0, "history": {"test_acc": []}}
                if curve is None
                else {"status": "completed", "epochs_completed": epochs, "history": {"test_acc": curve[:epochs]}}
            )
            job.folder.mkdir(parents=True, exist_ok=True)
            RunFolder(job.folder).write_metrics(metrics)


def grid(tmp_path, n: int, seeds: int = 1) -> list[Point]:
    return [
        Point(
            i * seeds + s,
            [f"optimizer.lr={i}", *([f"seed={s}"] if seeds > 1 else [])],
            tmp_path / f"{i * seeds + s}_job",
        )
        for i in range(n)
        for s in range(seeds)
    ]


def statuses(jobs: list[Point]) -> dict[int, tuple]:
    return {j.num: (j.metrics().get("status"), j.metrics().get("epochs_completed")) for j in jobs}


def test_each_rung_keeps_the_best_third_and_prunes_the_rest(tmp_path):
    jobs = grid(tmp_path, 9)
    curves = {j.num: [0.1 * (1 + j.num % 5) + 0.01 * e for e in range(9)] for j in jobs}  # job 4 best, then 3 and 8 ...
    trainer = StandIn(curves)
    best = search(group_settings(jobs), [1, 3, 9], 3, trainer)
    assert trainer.calls == [(list(range(9)), 1), ([3, 4, 8], 3), ([4], 9)]
    assert [s[0].num for s in best] == [4]
    st = statuses(jobs)
    assert st[4] == ("completed", 9) and st[3] == ("pruned", 3) and st[8] == ("pruned", 3) and st[0] == ("pruned", 1)
    assert "after rung 2 of 3 (3 epochs): test acc 0.4200, ranked 2 of 3" in jobs[3].metrics()["note"]


def test_ties_go_to_the_lower_job_and_failures_rank_last(tmp_path):
    jobs = grid(tmp_path, 4)
    trainer = StandIn({0: None, 1: [0.5, 0.5, 0.5], 2: [0.5, 0.5, 0.6], 3: [0.4, 0.4, 0.4]})
    best = search(group_settings(jobs), [1, 3], 2, trainer)  # rung 1 keeps 2 of 4: jobs 1 and 2 tie at 0.5
    assert trainer.calls == [([0, 1, 2, 3], 1), ([1, 2], 3)]
    assert [s[0].num for s in best] == [2, 1]  # the last rung ranks by its own accuracy
    assert statuses(jobs)[0] == ("failed", 0)  # a failure is ranked last but keeps its own status


class Refusing(StandIn):
    """A trainer under which one job's folder refuses the rung (locked, or its record damaged): its files stay."""

    def __init__(self, curves, refused: int, at: int, damage: str | None = None) -> None:
        super().__init__(curves)
        self.refused, self.at, self.damage = refused, at, damage

    def __call__(self, jobs: list[Point], epochs: int) -> None:
        super().__call__([j for j in jobs if not (j.num == self.refused and epochs == self.at)], epochs)
        if self.damage is not None and epochs == self.at:
            (jobs[0].folder.parent / f"{self.refused}_job" / "metrics.json").write_text(self.damage)


@pytest.mark.parametrize("damage", [None, "garbage{", '{"epochs_completed": "abc", "history": [1, 2]}'])
def test_a_job_without_a_figure_for_its_rung_stops_the_search_before_any_choice(tmp_path, damage):
    jobs = grid(tmp_path, 4)
    curves = {0: [0.3, 0.3, 0.3], 1: [0.5, 0.5, 0.5], 2: [0.6, 0.6, 0.6], 3: [0.4, 0.4, 0.4]}
    with pytest.raises(
        RungIncomplete, match="job 2 has no test accuracy for it"
    ):  # rung 1 keeps jobs 1 and 2; job 2 refuses rung 2
        search(group_settings(jobs), [1, 3], 2, Refusing(curves, refused=2, at=3, damage=damage))
    assert statuses(jobs)[1] == ("completed", 3)  # its rival is not ranked against a missing figure, nor pruned


def test_a_rung_where_every_job_failed_stops_the_search(tmp_path):
    jobs = grid(tmp_path, 4)
    with pytest.raises(RungIncomplete, match="no setting ended with a test accuracy"):
        search(group_settings(jobs), [1, 3], 2, StandIn({0: None, 1: None, 2: None, 3: None}))


def test_fewer_settings_than_eta_and_a_single_setting(tmp_path):
    two = grid(tmp_path / "two", 2)
    trainer = StandIn({0: [0.3] * 9, 1: [0.4] * 9})
    assert [s[0].num for s in search(group_settings(two), [1, 3, 9], 3, trainer)] == [1]
    assert trainer.calls == [([0, 1], 1), ([1], 9)]  # ceil(2 / 3) = 1 left: straight to the last rung
    one = StandIn({0: [0.3] * 9})
    search(group_settings(grid(tmp_path / "one", 1)), [1, 3, 9], 3, one)
    assert one.calls == [([0], 9)]


def test_seeds_of_a_setting_are_ranked_continued_and_pruned_together(tmp_path):
    jobs = grid(tmp_path, 3, seeds=2)  # settings (0,1), (2,3), (4,5)
    curves = {0: [0.50] * 3, 1: [0.70] * 3, 2: [0.62] * 3, 3: [0.62] * 3, 4: [0.9] * 3, 5: [0.1] * 3}
    trainer = StandIn(curves)
    best = search(group_settings(jobs), [1, 3], 3, trainer)
    assert [[j.num for j in s] for s in best] == [[2, 3]]  # mean 0.62 beats 0.60 (0.5, 0.7) and 0.50 (0.9, 0.1)
    assert trainer.calls[-1] == ([2, 3], 3)
    assert {n for n, (status, _) in statuses(jobs).items() if status == "pruned"} == {0, 1, 4, 5}
    assert "mean test acc over 2 seeds 0.6000, ranked 2 of 3" in jobs[1].metrics()["note"]  # not job 1's own 0.70


def test_a_rerun_trains_nothing_done_and_makes_the_same_choices(tmp_path):
    jobs = grid(tmp_path, 9)
    curves = {j.num: [0.05 * j.num + 0.01 * e for e in range(9)] for j in jobs}
    first = [s[0].num for s in search(group_settings(jobs), [1, 3, 9], 3, StandIn(curves))]
    (jobs[8].folder / "metrics.json").write_text(
        json.dumps({**jobs[8].metrics(), "status": "interrupted", "epochs_completed": 5})
    )
    again = StandIn(curves)
    assert [
        s[0].num
        for s in search(
            group_settings(jobs),
            [1, 3, 9],
            3,
            again,
            HalvingRecord(tmp_path, 3, [1, 3, 9], len(jobs), len(group_settings(jobs)), time.monotonic()),
        )
    ] == first
    assert again.calls == [([8], 9)]  # only the job stopped mid-rung trains again
    record = json.loads((tmp_path / "halving.json").read_text())
    assert record["finished"] and [r["kept"] for r in record["rung_choices"]] == [3, 1, 1]


@pytest.mark.parametrize(
    "grid",
    [
        [["seed=0"], ["seed=0"]],
        [["optimizer.lr=0.1", "seed=0"], ["optimizer.lr=0.10", "seed=0"]],
        [["optimizer.betas=[0.9,0.99]"], ["optimizer.betas=[0.9, 0.99]"]],
        [["activation=relu", "optimizer.lr=1"], ["activation=relu", "optimizer.lr=1.0"]],
    ],
)
def test_a_grid_point_given_twice_is_refused_not_merged_or_trained_twice(tmp_path, grid):
    with pytest.raises(RepeatedJob, match="the same job as .* give each value of a swept key once"):
        points_of_grid(grid, tmp_path, ["optimizer.lr", "seed", "optimizer.betas", "activation"])
    distinct = points_of_grid([["optimizer.lr=0.1", "seed=0"], ["optimizer.lr=0.1", "seed=1"]], tmp_path, ["seed"])
    assert [j.folder.name for j in distinct] == ["0_seed=0", "1_seed=1"] and len(group_settings(distinct)) == 1


def test_a_launchers_lines_show_each_jobs_own_number():
    numbers = {6: 5, 7: 3}
    assert renumbered("\t#6 : optimizer.lr=0.9 trainer.epochs=3", numbers) == "\t#5 : optimizer.lr=0.9 trainer.epochs=3"
    assert renumbered("\t#2 : optimizer.lr=0.9", numbers) == "\t#2 : optimizer.lr=0.9"  # not this batch's
    assert renumbered("epoch #6 : x", numbers) == "epoch #6 : x" and renumbered(None, numbers) is None


def test_the_issues_grid_costs_a_third_of_its_full_price(tmp_path):
    """30 settings, eta 3, 1 to 10 epochs: rungs 1, 3, 9, 10 train 30 + 10*2 + 4*6 + 2*1 = 76 of 300 epochs."""
    jobs = grid(tmp_path, 30)
    trainer = StandIn({j.num: [0.01 * j.num] * 10 for j in jobs})
    search(group_settings(jobs), rung_epochs(1, 3, 10), 3, trainer)
    assert sum(j.metrics()["epochs_completed"] for j in jobs) == 76


ROOT = Path(__file__).resolve().parent.parent
SEARCH = [
    "-m",
    "hparams_search=halving",
    "device=cpu",
    "data.download=false",
    "data.limit_train=1024",
    "data.limit_test=256",
    "trainer.epochs=3",
    "optimizer.lr=0.1,0.3,0.9",
    "activation=sigmoid,tanh",
    "hydra.sweep.dir=search",
]


@pytest.fixture(scope="module")
def halving_search(tmp_path_factory, fashion_mnist):
    cwd = tmp_path_factory.mktemp("halving")
    proc = run_cli(*SEARCH, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd / "search", proc


def test_a_real_halving_search(halving_search):
    sweep, proc = halving_search
    rows = {int(r["job"]): r for r in read_csv(sweep / "summary.csv")}
    assert len(rows) == 6 and proc.stdout.count("Launching") == 2  # two rungs, one batch each
    done = [j for j, r in rows.items() if r["status"] == "completed"]
    assert len(done) == 2 and all(rows[j]["epochs_completed"] == "3" and rows[j]["rung"] == "2" for j in done)
    pruned = [j for j, r in rows.items() if r["status"] == "pruned"]
    assert len(pruned) == 4 and all(rows[j]["epochs_completed"] == "1" and rows[j]["rung"] == "1" for j in pruned)
    record = json.loads((sweep / "halving.json").read_text())
    assert record["finished"] and sorted(record["rung_choices"][0]["ranked_jobs"][:2]) == sorted(done)
    for j, r in rows.items():  # one continuous set of curves per job, across its rungs
        steps = [s for s, _ in scalars(sweep / r["run_dir"])["train/loss"]]
        assert steps == list(range(1, 4 * int(r["epochs_completed"]) + 1)), j  # 4 steps an epoch, a point each
    md = (sweep / "summary.md").read_text()
    assert "Successive halving: 6 jobs, rungs at 1, 3 epochs" in md and "Work: 10 epochs trained of 18" in md
    assert "Best of the last rung: job" in md and "trainer.epochs=3" in md


def test_the_searchs_log_numbers_jobs_as_their_folders_and_summary_rows(halving_search):
    """Rung 2 is launched as a batch of its own: its lines still show jobs 5 and 3 (say), never the launch's 6 and 7."""
    sweep, proc = halving_search
    record = json.loads((sweep / "halving.json").read_text())
    first, last = (c["ranked_jobs"] for c in record["rung_choices"])
    assert (
        record["settings"] == record["jobs"] == 6 and "Successive halving: 6 jobs, rungs at 1, 3 epochs" in proc.stdout
    )
    assert re.findall(r"\t#(\d+) : ", proc.stdout) == [str(n) for n in [*range(6), *first[:2]]]
    assert (
        f"Rung 1 of 2 (1 epoch): jobs {first[0]}, {first[1]} go on, jobs {', '.join(map(str, first[2:]))} pruned"
        in (proc.stdout)
    )
    assert f"Rung 2 of 2 (3 epochs): training jobs {first[0]}, {first[1]}" in proc.stdout
    assert f"Rung 2 of 2 (3 epochs): jobs {last[0]}, {last[1]}, best first" in proc.stdout
    folders = {int(p.name.split("_")[0]) for p in sweep.iterdir() if p.is_dir()}
    rows = {int(r["job"]) for r in read_csv(sweep / "summary.csv")}
    assert folders == rows == set(range(6))


def test_a_job_continued_by_hand_keeps_the_searchs_record_and_counts_true(halving_search, tmp_path):
    unbroken, _ = halving_search
    sweep = tmp_path / "search"
    shutil.copytree(unbroken, sweep)
    first = json.loads((unbroken / "halving.json").read_text())["rung_choices"][0]["ranked_jobs"]
    job = next(sweep.glob(f"{first[-1]}_*"))  # pruned at rung 1
    assert run_cli(f"resume={job}", "trainer.epochs=3", cwd=tmp_path).returncode == 0 and epochs_completed(job) == 3
    rerun = run_cli(*SEARCH, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "Successive halving: 6 jobs, rungs" in rerun.stdout and "Launching" not in rerun.stdout
    record, before = (json.loads((folder / "halving.json").read_text()) for folder in (sweep, unbroken))
    assert record["finished"] and (record["settings"], record["jobs"]) == (6, 6)
    assert [c["ranked_jobs"] for c in record["rung_choices"]] == [c["ranked_jobs"] for c in before["rung_choices"]]
    assert first[-1] not in record["rung_choices"][1]["ranked_jobs"]  # it reached rung 2 by hand, not in the search
    row = next(r for r in read_csv(sweep / "summary.csv") if r["job"] == str(first[-1]))
    assert row["rung"] == "1" and row["epochs_completed"] == "3"
    assert json.loads((job / "metrics.json").read_text())["status"] == "completed"  # the rerun did not prune it again


@pytest.mark.parametrize(
    "damage",
    ["[1, 2]", '{"wall_seconds": "abc", "jobs": "six", "rungs": [[1]], "rung_choices": {"0": 1}, "finished": 1}'],
)
def test_a_damaged_search_record_is_rewritten_with_a_word(halving_search, tmp_path, damage):
    """halving.json holds only figures for the summary (the search reads its jobs' folders): a rerun says so and
    writes it anew, making the same choices."""
    unbroken, _ = halving_search
    sweep = tmp_path / "search"
    shutil.copytree(unbroken, sweep)
    (sweep / "halving.json").write_text(damage)
    rerun = run_cli(*SEARCH, cwd=tmp_path)
    assert rerun.returncode == 0 and "Traceback" not in rerun.stdout + rerun.stderr, rerun.stderr
    assert "halving.json: " in rerun.stdout and "rewritten, its wall time counted from now" in rerun.stdout
    assert "Launching" not in rerun.stdout
    record, before = (json.loads((folder / "halving.json").read_text()) for folder in (sweep, unbroken))
    assert record["finished"] is True and {k: record[k] for k in ("jobs", "settings", "rungs", "rung_choices")} == {
        k: before[k] for k in ("jobs", "settings", "rungs", "rung_choices")
    }
    assert "not finished" not in (sweep / "summary.md").read_text()


def test_a_damaged_job_record_stops_the_search_in_one_line_and_moving_it_away_recovers(halving_search, tmp_path):
    unbroken, _ = halving_search
    sweep = tmp_path / "search"
    shutil.copytree(unbroken, sweep)
    pruned = json.loads((unbroken / "halving.json").read_text())["rung_choices"][0]["ranked_jobs"][-1]
    job = next(sweep.glob(f"{pruned}_*"))
    (job / "metrics.json").write_text('{"status": "pruned", "epochs_completed": 1, "history": {"test_acc": "abc"}}')
    others = {p: p.read_bytes() for p in sweep.glob("*/metrics.json") if p.parent != job}
    refused = run_cli(*SEARCH, cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stdout + refused.stderr, refused.stderr
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith(f"Error: halving stopped before choosing at rung 1 (1 epoch): job {pruned} has no test")
    assert "damaged: metrics.json: history is" in line and "move it away to train the job again" in line
    assert {p: p.read_bytes() for p in others} == others  # nothing ranked, nothing pruned
    shutil.move(job, tmp_path / "away")
    rerun = run_cli(*SEARCH, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert re.findall(r"\t#(\d+) : ", rerun.stdout) == [str(pruned)]  # that job alone trains again, to rung 1
    assert choices(sweep) == choices(unbroken) and figures(sweep) == figures(unbroken)


FAIL_ONCE = """
import os
import lenet_exp.member as member
_end_epoch = member.Member.end_epoch
def end_epoch(self, *figures):
    if self.folder.path.name.startswith("1_") and not os.path.exists("failed-once"):
        open("failed-once", "w").close()
        raise OSError(28, "No space left on device", str(self.folder.path / "metrics.json"))
    _end_epoch(self, *figures)
member.Member.end_epoch = end_epoch
"""


def test_a_rerun_continues_the_recorded_search_and_never_decides_a_rung_again(halving_search, tmp_path):
    """Job 1 fails in rung 1 (a full disk, once) and ranks last; the search goes on and exits 1. Its rerun trains job
    1 again but keeps rung 1's recorded choice: the same choices, one job completed per kept setting, job 1 pruned."""
    unbroken, _ = halving_search
    first = start_patched(FAIL_ONCE, *SEARCH, cwd=tmp_path)
    out, err = first.communicate(timeout=HANG)
    assert first.returncode == 1 and "/search/1_" in err and "No space left on device" in err, err
    decided = json.loads((tmp_path / "search" / "halving.json").read_text())["rung_choices"]
    assert decided[0]["ranked_jobs"][-1] == 1 and decided[0]["scores"]["1"] is None  # failed: ranked last
    rerun = start_patched(FAIL_ONCE, *SEARCH, cwd=tmp_path)  # the disk has room again
    out, err = rerun.communicate(timeout=HANG)
    assert rerun.returncode == 0, err
    assert "Rung 1 of 2 (1 epoch): training job 1" in out and "as an earlier run of this search decided it" in out
    record = json.loads((tmp_path / "search" / "halving.json").read_text())
    assert record["rung_choices"] == decided and record["finished"]
    rows = {int(r["job"]): r for r in read_csv(tmp_path / "search" / "summary.csv")}
    assert rows[1]["status"] == "pruned" and "continued by hand" not in rows[1]["note"]
    assert sorted(j for j, r in rows.items() if r["status"] == "completed") == sorted(decided[1]["ranked_jobs"][:2])
    md = (tmp_path / "search" / "summary.md").read_text()
    trained = sum(int(r["epochs_completed"]) for r in rows.values())
    assert f"Work: {trained} epochs trained of 18 for the full grid" in md


def choices(sweep) -> list:
    return [c["ranked_jobs"] for c in json.loads((sweep / "halving.json").read_text())["rung_choices"]]


def figures(sweep) -> list:
    return sorted((r["job"], r["status"], r["test_acc"]) for r in read_csv(sweep / "summary.csv"))


def wait_for(proc, text: str) -> str:
    """The process's output up to the first line holding `text` (it must come before the process ends)."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"{text!r} never came:\n{''.join(seen)}")


def test_a_pruned_job_resumes_alone_with_resume(halving_search, tmp_path):
    sweep, _ = halving_search
    pruned = next(sweep / r["run_dir"] for r in read_csv(sweep / "summary.csv") if r["status"] == "pruned")
    job = tmp_path / pruned.name
    shutil.copytree(pruned, job)  # a copy: the search's own folder stays as the other tests read it
    proc = run_cli(f"resume={job}", "trainer.epochs=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Resuming in" in proc.stdout and epochs_completed(job) == 2
    assert json.loads((job / "metrics.json").read_text())["status"] == "completed"
    assert [s for s, _ in scalars(job)["train/loss"]] == list(range(1, 9))  # its curves go on from the rung's


def test_a_killed_halving_search_reruns_to_the_same_choices(halving_search, tmp_path):
    unbroken, _ = halving_search
    proc = start_cli(*SEARCH, cwd=tmp_path)
    sweep = tmp_path / "search"
    wait_for(proc, "Rung 2 of 2 (3 epochs): training")  # rung 1 is done; rung 2 starts
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=HANG)
    # 143 from a job's or the search's own stop; -15 where the signal found the launcher between two jobs
    assert proc.returncode in (128 + signal.SIGTERM, -signal.SIGTERM), out
    assert out.strip().splitlines()[-1].startswith("Interrupted by SIGTERM: ")
    assert json.loads((sweep / "halving.json").read_text())["finished"] is False
    md = (sweep / "summary.md").read_text()  # brought up to date as the search stopped: what it pruned, how to go on
    assert "4 pruned" in md and "The sweep is not finished; continue it with:" in md and "| 1 of 2 |" in md
    rerun = run_cli(*SEARCH, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "Launching 6 jobs" not in rerun.stdout  # the finished rung is not redone
    assert choices(sweep) == choices(unbroken) and figures(sweep) == figures(unbroken)


# a run's status, and the status its HParams session ends with
SESSION_OF = {"completed": "STATUS_SUCCESS", "pruned": "STATUS_UNKNOWN", "interrupted": "STATUS_UNKNOWN"}
SLOW_PRUNE = """
import time
import lenet_exp.halving as halving
import lenet_exp.logger as logger
_write, _end = logger.atomic_write, halving.end_session
def write(path, data):  # the pruned job's HParams session being rewritten: slowly
    if path.name.endswith(".hparams") and logger.PRUNING:
        print("PRUNING", flush=True)
        time.sleep(3)
    _write(path, data)
def end_session(*args):
    logger.PRUNING = True
    try:
        _end(*args)
    finally:
        logger.PRUNING = False
logger.atomic_write, logger.PRUNING, halving.end_session = write, False, end_session
"""
SLOW_FINISH = """
import time
import lenet_exp.member as train
_finish = train.Member.finish
def finish(self, status):
    print("FINISHING", flush=True)
    time.sleep(3)
    _finish(self, status)
train.Member.finish = finish
"""


@pytest.mark.parametrize(
    "patch, marker, sig",
    [(SLOW_PRUNE, "PRUNING", signal.SIGTERM), (SLOW_FINISH, "FINISHING", signal.SIGINT)],
    ids=["while pruning", "as a job's last epoch ends"],
)
def test_an_interrupted_search_never_exits_0_and_its_rerun_finishes_it(halving_search, tmp_path, patch, marker, sig):
    """A signal between the search's own steps, or one that came as a job was finishing (once lost, so the search
    went on and could end 0): the exit status and one line say it stopped; the record says it did not finish."""
    unbroken, _ = halving_search
    proc = start_patched(patch, *SEARCH, cwd=tmp_path)
    wait_for(proc, marker)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 128 + sig and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(f"Interrupted by {sig.name}: ")
    command = shlex.split(err.strip().splitlines()[-1].split("; continue with: ", 1)[1].removesuffix("."))
    assert command == [
        "python",
        "-m",
        "lenet_exp",
        "--multirun",
        *SEARCH[1:-1],
        f"hydra.sweep.dir={tmp_path / 'search'}",
    ]
    assert json.loads((tmp_path / "search" / "halving.json").read_text())["finished"] is False
    for job in job_dirs(tmp_path / "search"):  # each job's HParams session whole, and saying what its record says
        status = json.loads((job / "metrics.json").read_text())["status"]
        assert session_status(job) == SESSION_OF[status], job
    rerun = run_cli(*command[3:], cwd=tmp_path)  # the command it gave
    assert rerun.returncode == 0, rerun.stderr
    assert choices(tmp_path / "search") == choices(unbroken) and figures(tmp_path / "search") == figures(unbroken)


@pytest.mark.slow
def test_seeds_are_summarised_per_setting(tmp_path, fashion_mnist):
    args = [
        "-m",
        "device=cpu",
        "data.download=false",
        "data.limit_train=1024",
        "data.limit_test=256",
        "trainer.epochs=1",
        "activation=tanh",
        "optimizer.lr=0.1,0.3",
        "seed=0,1",
        "hydra.sweep.dir=sweep",
    ]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    jobs = read_csv(tmp_path / "sweep" / "summary.csv")
    settings = read_csv(tmp_path / "sweep" / "summary_by_setting.csv")
    assert [list(s)[:6] for s in settings][0] == [
        "optimizer.lr",
        "n",
        "test_acc_mean",
        "test_acc_std",
        "best_test_acc_mean",
        "statuses",
    ]
    for s in settings:
        accs = [float(j["test_acc"]) for j in jobs if j["optimizer.lr"] == s["optimizer.lr"]]
        assert s["n"] == "2" and float(s["test_acc_mean"]) == pytest.approx(sum(accs) / 2)
        assert float(s["test_acc_std"]) == pytest.approx(abs(accs[0] - accs[1]) / 2**0.5)
    assert float(settings[0]["test_acc_mean"]) >= float(settings[1]["test_acc_mean"])
    md = (tmp_path / "sweep" / "summary.md").read_text()
    assert md.index("## By setting") < md.index("## Jobs")
    rerun = next(line.strip() for line in md.splitlines() if line.strip().startswith("python -m lenet_exp --multirun"))
    threads = json.loads(next((tmp_path / "sweep").glob("0_*/metrics.json")).read_text())["cpu_threads"]
    assert rerun.endswith(
        f"activation=tanh optimizer.lr={settings[0]['optimizer.lr']} seed=0,1 device.threads={threads}"
    )
    assert "data.limit_train=1024" in rerun  # the same figures: the same slice and the same thread count


def seed_rows(accs: dict[str, list[float]]) -> list[dict]:
    """Summary rows of a seed sweep over optimizer.lr: completed jobs with these test accuracies."""
    rows, job = [], 0
    for lr, values in accs.items():
        for seed, acc in enumerate(values):
            rows.append(
                {
                    "job": job,
                    "overrides": {"optimizer.lr": lr, "seed": str(seed)},
                    "status": "completed",
                    "test_acc": acc,
                    "best_test_acc": acc,
                    "on": "test_acc",  # no validation split: the test figure chooses
                    "acc": acc,
                    "best_acc": acc,
                    "not_learning": False,
                    "cpu_threads": 2,
                }
            )
            job += 1
    return rows


@pytest.mark.parametrize(
    "accs, clear",
    [
        ({"0.3": [0.87, 0.88, 0.875], "0.1": [0.84, 0.85, 0.845]}, True),
        ({"0.1": [0.45, 0.63, 0.55], "0.3": [0.44, 0.64, 0.55]}, False),
    ],
)
def test_a_lead_within_the_spread_over_seeds_is_not_called_clear(accs, clear):
    keys = ["optimizer.lr", "seed"]
    summary = types.SimpleNamespace(keys=keys, settings=by_setting(seed_rows(accs), keys), on="test_acc")
    best = next(line for line in setting_lines(summary) if line.startswith("Best setting"))
    assert best.startswith(f"Best setting: optimizer.lr={next(iter(accs))}: mean test acc")
    assert ("neither is clearly better" in best) is not clear
    assert "above the next setting" in best and "points" not in best


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tensorboard_answers(port: int, path: str, body: dict) -> dict:
    """A TensorBoard server's answer to a POST of its HParams plugin, waited for while the server starts."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/data/plugin/hparams/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-XSRF-Protected": "1"},
    )
    deadline = time.time() + HANG
    while True:
        try:
            answer = json.loads(urllib.request.urlopen(request, timeout=5).read())
            if answer.get("hparamInfos") or answer.get("sessionGroups"):
                return answer
        except OSError:
            pass
        assert time.time() < deadline, "tensorboard did not answer"
        time.sleep(0.5)


def test_hparams_of_a_sweep_show_what_chose_and_each_jobs_fate_in_tensorboard(halving_search):
    """Through TensorBoard's own HTTP API: the swept keys and each job's fate (`status`) as columns that differ;
    the figure that chose (val/acc, a split held out) the first metric, so shown by default; every job's fate."""
    sweep, _ = halving_search
    port = free_port()
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep), "--port", str(port)]
    popen([*command, "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # killed after
    experiment = tensorboard_answers(port, "experiment", {"experimentName": ""})
    infos = [(h["name"], h.get("differs", False)) for h in experiment["hparamInfos"]]
    assert sorted(infos) == [("activation", True), ("optimizer.lr", True), ("status", True)]  # not a rung's epochs
    metrics = [m["name"]["tag"] for m in experiment["metricInfos"]]
    assert metrics[:4] == ["val/acc", "val/best_acc", "test/acc", "test/best_acc"] and "train/loss" in metrics
    groups = tensorboard_answers(port, "session_groups", {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [{"hparam": "status"}, {"metric": {"tag": "val/acc"}}],
        "startIndex": 0,
        "sliceSize": 100,
        "aggregationType": "AGGREGATION_AVG",
    })["sessionGroups"]  # fmt: skip
    fates = sorted(g["hparams"]["status"].split(",")[0] for g in groups)
    rows = {r["run_dir"]: r["status"] for r in read_csv(sweep / "summary.csv")}
    assert fates == sorted("completed" if s == "completed" else "pruned at rung 1 of 2" for s in rows.values())


def lenet_best_grid() -> tuple[str, str]:
    """The `lenet_best` preset's grid and its fixed settings, as the README writes them."""
    from lenet_exp.files import load_yaml

    preset = load_yaml(ROOT / "conf" / "hparams_search" / "lenet_best.yaml")
    grid = " ".join(f"{k}={v}" for k, v in preset["hydra"]["sweeper"]["params"].items())
    groups = [next(iter(d)).removeprefix("override /") + "=" + next(iter(d.values())) for d in preset["defaults"]]
    fixed = [g for g in groups if not g.startswith("hydra/")]
    typed = lambda v: v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))  # noqa: E731  as typed: [32,64]
    fixed += [
        f"{k}.{kk}={typed(vv)}" for k, v in preset.items() if k not in ("defaults", "hydra") for kk, vv in v.items()
    ]
    return grid, " ".join(fixed)


def test_the_lenet_best_preset_is_the_grid_the_readme_gives():
    grid, fixed = lenet_best_grid()
    readme = (ROOT / "README.md").read_text()
    assert f"`{grid}`" in readme and f"`{fixed}`" in readme
    assert "optimizer.lr=0.003,0.006" in grid and "seed=0,1,2" in grid and "optimizer=adam" in fixed
    assert "model.norm=batch" in fixed and "model.dropout=0.3" in fixed and "device.amp=true" in fixed


def test_lenet_best_on_a_slice_ends_with_a_setting_over_3_seeds_and_a_rerun_that_trains_alike(
    tmp_path, fashion_mnist, monkeypatch
):
    """The preset narrowed on the command line (a key given replaces the grid's list) on a slice of the data: its jobs
    train as the preset says, and the summary's rerun command composes each seed's exact settings."""
    from lenet_exp.config import compose_config
    from lenet_exp.settings import settings_of as run_settings

    narrowed = ["activation=relu", "model.conv_channels=[6,16]", "optimizer.lr=0.003,0.01"]
    tiny = ["data.limit_train=256", "data.limit_test=128", "trainer.epochs=3", "trainer.progress=false"]
    proc = run_cli("-m", "hparams_search=lenet_best", *narrowed, *tiny, "hydra.sweep.dir=s", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(tmp_path / "s" / "summary.csv")
    assert len(rows) == 6 and {r["seed"] for r in rows} == {"0", "1", "2"}
    assert {r["optimizer.lr"] for r in rows} == {"0.003", "0.01"}
    record = json.loads((tmp_path / "s" / "halving.json").read_text())
    assert record["rungs"] == [1, 3] and record["settings"] == 2
    md = (tmp_path / "s" / "summary.md").read_text()
    best = re.search(r"Best setting: (.*) mean val acc .* over 3 seeds; its mean test acc \d\.\d+ ± \d\.\d+", md)
    assert best, md
    command = shlex.split(re.search(r"python -m lenet_exp --multirun (.*)", md).group(1))
    assert "optimizer=adam" in command and "scheduler=cosine" in command and "model.pool=max" in command
    assert " 'model.conv_channels=[6,16]' " in md  # quoted: no shell reads it as a pattern
    winner = [r for r in rows if r["status"] == "completed"]
    for r in winner:
        saved = run_settings(RunFolder(tmp_path / "s" / r["run_dir"]).saved_config())
        assert saved["optimizer._target_"] == "torch.optim.Adam" and saved["scheduler.epochs"] == 3
        alone = [a if not a.startswith("seed=") else f"seed={r['seed']}" for a in command]
        again = run_settings(compose_config(alone))
        assert again.pop("device.threads") == saved.pop("device.threads") == 1  # the threads it trained on
        assert again == saved, r["run_dir"]
    # what the preset set is the sweep's record, not the file as it is now: a preset edited (or gone) since changes
    # neither a job's rerun command nor what resume= adds
    import lenet_exp.sweep_record as sweep_record

    recorded = json.loads((tmp_path / "s" / "sweep.json").read_text())["preset"]
    assert recorded["name"] == "lenet_best" and {"optimizer", "scheduler"} <= set(recorded["groups"])
    job = tmp_path / "s" / winner[0]["run_dir"]
    before = sweep_record.preset_settings(job)
    monkeypatch.setattr(sweep_record, "conf_file", lambda relative: tmp_path / "no preset file")  # edited away
    assert sweep_record.preset_settings(job) == before and "scheduler=cosine" in before


def test_a_search_job_recorded_before_a_key_existed_reruns_and_resumes_at_its_old_value(halving_search, tmp_path):
    """A halving job written before data.val_size existed (its record lacks the key the preset sets): the summary's
    rerun command and resume= give the key the value that trains as it did (no split), never null."""
    import torch
    import yaml

    sweep = tmp_path / "search"
    shutil.copytree(halving_search[0], sweep)
    for job in job_dirs(sweep):
        saved = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        del saved["data"]["val_size"]
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(saved))
        state = torch.load(job / "checkpoints" / "last.pt", weights_only=True)
        del state["settings"]["data.val_size"]
        torch.save(state, job / "checkpoints" / "last.pt")
    md = to_markdown(collect(sweep))
    assert "data.val_size=0" in md and "null" not in md
    job = next(j for j in job_dirs(sweep) if json.loads((j / "metrics.json").read_text())["status"] == "completed")
    proc = run_cli(f"resume={job}", cwd=tmp_path)
    assert proc.returncode == 0 and "already holds this run" in proc.stdout, proc.stderr


LATE_SIGNAL = """
import time
import lenet_exp.summarize as summarize
_end = summarize.SummaryCallback.on_multirun_end
def on_multirun_end(self, *args, **kwargs):
    print("SEARCHED", flush=True)
    time.sleep(3)
    _end(self, *args, **kwargs)
summarize.SummaryCallback.on_multirun_end = on_multirun_end
"""


def test_a_sigterm_after_the_searchs_last_rung_ends_in_one_line(tmp_path, fashion_mnist):
    """Between the search's end and the sweep's (no step of a run or of the search handles the signal there)."""
    args = [
        "-m",
        "hparams_search=halving",
        *SEARCH[2:6],
        "trainer.epochs=1",
        "optimizer.lr=0.1,0.3",
        "hydra.sweep.dir=s",
    ]
    proc = start_patched(LATE_SIGNAL, *args, cwd=tmp_path)
    wait_for(proc, "SEARCHED")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("Interrupted by SIGTERM: ")


def test_a_sweep_whose_config_file_changed_since_is_refused_with_the_command_that_reruns_it(halving_search, tmp_path):
    """A setting no override gave (the preset's or a config file's) that differs now: the refusal's rerun command is
    the sweep's own with that key at its earlier value, which the check then takes."""
    sweep = tmp_path / "search"
    shutil.copytree(halving_search[0], sweep)
    record = json.loads((sweep / "sweep.json").read_text())
    assert record["settings"]["model.pool"] == "avg"
    record["settings"]["model.pool"] = "max"  # as if the file had said max when the sweep ran
    (sweep / "sweep.json").write_text(json.dumps(record))
    proc = refused(*SEARCH, cwd=tmp_path)  # its own command, in the folder holding the copy
    line = proc.stderr.strip()
    assert proc.returncode == 2 and len(line.splitlines()) == 1, proc.stderr
    assert '(model.pool="max" there, "avg" now; a config file has changed since)' in line, line
    command = line.split("rerun it as it was (", 1)[1].rsplit("), or choose", 1)[0].split()
    assert command[-1] == "model.pool=max" and "hparams_search=halving" in command, command
    again = run_cli("-m", *command, "hydra.sweep.dir=search", cwd=tmp_path)  # finished: it trains nothing
    assert "holds a sweep of other settings" not in again.stderr, again.stderr
