"""Summaries that claim only what happened: seeds counted by their figures, like compared with like, rungs the search
gave, epochs asked against epochs trained, leads that seeds could reverse, and a picture that agrees with summary.md."""

import json
import subprocess

import pytest
from helpers import SMALL, make_job, read_csv, run_cli

from lenet_exp.summarize import SummaryCallback
from lenet_exp.summary import collect
from lenet_exp.summary_plot import figure
from lenet_exp.summary_table import to_markdown


def metrics(history: list[float], status: str = "completed", chance: float = 0.1) -> dict:
    return {
        "status": status,
        "epochs_completed": len(history),
        "test_acc": history[-1] if history else None,
        "best_test_acc": max(history, default=None),
        "chance_test_acc": chance,
        "history": {"test_acc": history},
    }


def seed_sweep(root, accs: dict[str, list], keys=("optimizer.lr", "seed")):
    """A seed sweep over one key: value -> each seed's test-accuracy curve (None: that seed failed)."""
    (root / "sweep.json").write_text(json.dumps({"swept": list(keys), "overrides": []}))
    job = 0
    for value, curves in accs.items():
        for seed, curve in enumerate(curves):
            m = metrics(curve) if curve else {**metrics([]), "status": "failed", "error": "data error"}
            make_job(root, f"{job}_{keys[0]}={value},seed={seed}", [f"{keys[0]}={value}", f"seed={seed}"], m)
            job += 1
    return collect(root)


def test_n_counts_the_seeds_with_a_figure_not_the_jobs(tmp_path):
    summary = seed_sweep(tmp_path, {"0.1": [[0.8], [0.82], None], "0.3": [[0.7], [0.72], [0.71]]})
    by_lr = {g["values"]["optimizer.lr"]: g for g in summary.settings}
    assert by_lr["0.1"]["n"] == 2 and by_lr["0.1"]["statuses"] == "2 completed, 1 failed"
    assert by_lr["0.3"]["n"] == 3 and not by_lr["0.1"]["complete"]


def test_seeds_trained_for_different_epochs_are_compared_like_with_like(tmp_path):
    """One seed continued with resume= to 3 epochs: the setting's mean is at the epoch both reached, and says so."""
    summary = seed_sweep(tmp_path, {"0.1": [[0.6, 0.7, 0.8], [0.62]]})
    setting = summary.settings[0]
    assert setting["epochs"] == 1 and setting["test_acc_mean"] == pytest.approx(0.61)
    assert setting["note"] == "seeds trained 1-3 epochs: figures after 1"
    assert "| 0.1 | 2 | 0.6100 |" in to_markdown(summary) and "figures after 1" in to_markdown(summary)


def halving_sweep(root, choices: list[dict], jobs: dict[int, tuple[str, dict]], rungs=(1, 3)) -> None:
    record = {"eta": 3, "rungs": list(rungs), "jobs": len(jobs), "settings": len(jobs), "finished": True}
    (root / "halving.json").write_text(json.dumps({**record, "rung_choices": choices, "wall_seconds": 5}))
    for num, (lr, m) in jobs.items():
        make_job(root, f"{num}_optimizer.lr={lr}", [f"optimizer.lr={lr}"], m)


def test_a_pruned_job_continued_by_hand_claims_no_rung_and_is_not_the_best(tmp_path):
    choices = [
        {"epochs": 1, "ranked_jobs": [1, 0, 2], "kept": 1, "scores": {}},
        {"epochs": 3, "ranked_jobs": [1], "kept": 1, "scores": {}},
    ]
    pruned = {**metrics([0.5]), "status": "pruned", "note": "after rung 1 of 2 (1 epoch): test acc 0.5000"}
    by_hand = metrics([0.5, 0.8, 0.9])  # pruned at rung 1, then resume=<folder> trainer.epochs=3: completed
    halving_sweep(tmp_path, choices, {0: ("0.1", by_hand), 1: ("0.3", metrics([0.6, 0.7, 0.75])), 2: ("0.9", pruned)})
    summary = collect(tmp_path)
    rows = {r["job"]: r for r in summary.rows}
    assert (rows[0]["rung"], rows[1]["rung"], rows[2]["rung"]) == (1, 2, 1)
    assert rows[0]["status"] == "completed" and "pruned after rung 1, continued by hand to 3 epochs" in rows[0]["note"]
    md = to_markdown(summary)
    assert "Best of the last rung: job 1, test acc 0.7500" in md
    assert "Successive halving: 3 jobs, rungs at 1, 3 epochs" in md and "Work: 5 epochs trained of 9" in md
    assert {r["rung"] for r in read_csv_rows(tmp_path, summary)} == {"1", "2"}


def read_csv_rows(root, summary):
    from lenet_exp.summary_table import to_csv

    (root / "check.csv").write_text(to_csv(summary))
    return read_csv(root / "check.csv")


def test_one_setting_one_job_one_epoch_in_the_singular(tmp_path):
    choices = [{"epochs": 1, "ranked_jobs": [0], "kept": 1, "scores": {}}]
    halving_sweep(tmp_path, choices, {0: ("0.1", metrics([0.6]))}, rungs=(1,))
    md = to_markdown(collect(tmp_path))
    assert "Successive halving: 1 job, one rung of 1 epoch," in md and "Work: 1 epoch trained of 1" in md
    assert "1 settings" not in md and "1 jobs" not in md and "1 epochs" not in md


def test_a_job_short_of_the_epochs_asked_is_never_completed(tmp_path):
    """Its folder refused the later epochs' writes: metrics.json still says completed, from an earlier epoch."""
    (tmp_path / "multirun.yaml").write_text("trainer:\n  epochs: 3\n")
    make_job(tmp_path, "0_optimizer.lr=0.1", ["optimizer.lr=0.1"], metrics([0.5]))
    make_job(tmp_path, "1_optimizer.lr=0.3", ["optimizer.lr=0.3"], metrics([0.5, 0.6, 0.7]))
    summary = collect(tmp_path)
    rows = {r["job"]: r for r in summary.rows}
    assert rows[0]["status"] == "unfinished" and rows[0]["note"] == "trained 1 of 3 epochs asked"
    assert "| 0 | 0.1 | unfinished, trained 1 of 3 epochs asked |" in to_markdown(summary)
    with pytest.raises(SystemExit) as stop:
        SummaryCallback().on_multirun_end(config=type("C", (), {"hydra": type("H", (), {"sweep": type("S", (), {
            "dir": str(tmp_path)})})})())  # fmt: skip
    assert "1 did not finish (job 0 unfinished)" in str(stop.value.code)


def test_a_seeds_only_sweep_names_its_one_setting(tmp_path):
    summary = seed_sweep(tmp_path, {"": [[0.8], [0.82], [0.81]]}, keys=("seed",))
    md = to_markdown(summary)
    assert "The one setting (only seed swept): mean test acc 0.8100 ± 0.0100 over 3 seeds" in md
    assert "Best setting: :" not in md and "Best: job" not in md  # a best seed is no best job


@pytest.mark.parametrize("accs, close", [((0.85, 0.84, 0.7), True), ((0.85, 0.8, 0.7), False)])
def test_a_single_seed_lead_seeds_could_reverse_says_so(tmp_path, accs, close):
    given = ["optimizer.lr=0.1,0.3,0.9", "trainer.epochs=1", "hydra.sweep.dir=x"]
    (tmp_path / "sweep.json").write_text(json.dumps({"swept": ["optimizer.lr"], "overrides": given}))
    for n, (lr, acc) in enumerate(zip(("0.1", "0.3", "0.9"), accs)):
        make_job(tmp_path, f"{n}_optimizer.lr={lr}", [f"optimizer.lr={lr}"], metrics([acc]))
    summary = collect(tmp_path)
    md = to_markdown(summary)
    assert "Best: job 0, test acc 0.8500. Rerun it with:" in md
    line = "One seed each: its lead over job 1 (0.0100) is under 0.02, small enough that other seeds could reverse it"
    assert (line in md) is close
    assert ("python -m lenet_exp --multirun optimizer.lr=0.1,0.3,0.9 trainer.epochs=1 seed=0,1,2" in md) is close
    labels = legend_texts(figure(summary))
    assert ("best and next: other seeds could reverse them" in labels) is close
    assert ("best setting" in labels) is not close


def test_a_fused_sweep_says_a_rerun_alone_may_differ(tmp_path):
    make_job(tmp_path, "0_optimizer.lr=0.1", ["optimizer.lr=0.1"], metrics([0.6]))
    record = {"overrides": ["optimizer.lr=0.1"], "swept": [], "launcher": {"choice": "fused", "fused": True}}
    (tmp_path / "sweep.json").write_text(json.dumps(record))  # how the sweep recorded its launcher
    md = to_markdown(collect(tmp_path))
    assert "It trained fused, so its figures alone may differ: confirm the winner alone with:" in md


# summary.png ---------------------------------------------------------------------------------------------------------


def key_axes(fig):
    return [ax for ax in fig.axes if " per epoch" not in ax.get_title()]


def curve_axes(fig):
    return next(ax for ax in fig.axes if " per epoch" in ax.get_title())


def legend_texts(fig) -> list[str]:
    return [t.get_text() for t in curve_axes(fig).get_legend().get_texts()]


def test_a_categorical_seed_sweep_draws_each_seed_and_each_value_s_mean_on_a_fitted_axis(tmp_path):
    summary = seed_sweep(tmp_path, {"relu": [[0.85], [0.856]], "tanh": [[0.87], [0.872]]}, keys=("activation", "seed"))
    (ax,) = key_axes(figure(summary))
    assert ax.get_title() == "activation\n94% of the variance"  # seeds: the rest
    assert [t.get_text() for t in ax.get_xticklabels()] == ["relu", "tanh"]
    low, high = ax.get_ylim()
    assert 0.8 < low < 0.85 and 0.872 < high < 0.9  # not from zero: 0.853 and 0.871 look apart
    means = [(c.lines[0].get_xdata()[0], c.lines[0].get_ydata()[0]) for c in ax.containers]
    assert means == [(0, pytest.approx(0.853)), (1, pytest.approx(0.871))]
    assert not ax.patches  # no bars
    md = to_markdown(summary)
    assert "| activation | 94% | relu: 0.8530 ± 0.0042 (2); tanh: 0.8710 ± 0.0014 (2) |" in md
    assert "| seeds (within a setting) | 6% | |" in md


def test_a_seeds_only_sweep_draws_its_one_setting_and_cannot_tell_what_mattered(tmp_path):
    summary = seed_sweep(tmp_path, {"": [[0.8], [0.82], [0.81]]}, keys=("seed",))
    (ax,) = key_axes(figure(summary))
    assert ax.get_title() == "the one setting" and [t.get_text() for t in ax.get_xticklabels()] == ["the one setting"]
    assert "Too small to tell: one value a key." in to_markdown(summary)


def test_the_picture_stars_the_leaders_summary_md_names(tmp_path):
    """Within the spread over seeds: summary.md says neither is clearly better, and the picture stars both, hollow,
    at their means over seeds."""
    summary = seed_sweep(tmp_path, {"0.1": [[0.45], [0.63], [0.55]], "0.3": [[0.44], [0.64], [0.54]]})
    assert "neither is clearly better" in to_markdown(summary)
    fig = figure(summary)
    labels = legend_texts(fig)
    assert "best and next: neither clearly better (mean over seeds)" in labels and "best setting" not in labels
    assert "a setting's other seeds: dashed, dash-dot" in labels  # the seeds' line styles explained
    (ax,) = key_axes(fig)
    marked = [c for c in ax.collections if hasattr(c, "get_sizes") and list(c.get_sizes()) == [340]]
    assert len(marked) == 2 and all(len(c.get_facecolors()) == 0 for c in marked)  # hollow: the points show through
    assert sorted(c.get_offsets()[0][1] for c in marked) == pytest.approx([0.54, 0.5433], abs=1e-3)


def test_pruned_points_keep_their_setting_colour(tmp_path):
    choices = [{"epochs": 1, "ranked_jobs": [1, 0], "kept": 1, "scores": {}}]
    pruned = {**metrics([0.5]), "status": "pruned", "note": "after rung 1 of 2"}
    halving_sweep(tmp_path, choices, {0: ("0.1", pruned), 1: ("0.3", metrics([0.6, 0.7, 0.75]))})
    summary = collect(tmp_path)
    fig = figure(summary)
    assert "pruned (hollow)" in legend_texts(fig)
    (ax,) = key_axes(fig)
    hollow = [c for c in ax.collections if hasattr(c, "get_sizes") and len(c.get_facecolors()) == 0]
    assert [tuple(c.get_offsets()[0]) for c in hollow if list(c.get_sizes()) != [340]] == [(0.1, 0.5)]
    assert summary.importance.epochs == 1  # both compared at the first rung, which both reached
    assert "## What mattered (test acc after 1 epoch, the first rung, which every job reached; 2 jobs)" in (
        to_markdown(summary))  # fmt: skip


# the command -------------------------------------------------------------------------------------------------------


def test_summarize_refuses_what_is_not_a_sweep_in_one_line_writing_nothing(tmp_path):
    run = make_job(tmp_path / "outputs" / "2026-11-29", "17-00-00", [], metrics([0.6])).parent.parent.parent
    (tmp_path / "empty").mkdir()
    cases = {  # (a folder of single runs is no refusal: test_api compares them)
        "outputs/2026-11-29/17-00-00": "a single run's folder, not a sweep",
        "empty": "no sweep in it",
    }
    for folder, why in cases.items():
        proc = run_cli(folder, module="lenet_exp.summarize", cwd=run)
        assert proc.returncode == 2 and proc.stderr.startswith(f"Error: {folder}: {why}"), proc.stderr
        assert proc.stderr.count("\n") == 1 and "multirun/<date>/<time>" in proc.stderr
    assert not list(tmp_path.rglob("summary*"))


@pytest.mark.slow
def test_a_summary_that_cannot_be_written_fails_the_sweep_in_one_line(tmp_path, fashion_mnist):
    """A full disk for the summary only: the sweep exits 1 naming the file; the jobs' records stand."""
    patch = (
        "import lenet_exp.summary as s\n"
        "def full(path, data): raise OSError(28, 'No space left on device')\n"
        "s.atomic_write = full\n"
        "from lenet_exp.__main__ import main\n"
        "import sys; sys.argv = ['lenet_exp', *sys.argv[1:]]; main()\n"
    )
    args = ["--multirun", *SMALL, "trainer.epochs=1", "optimizer.lr=0.1,0.3", "hydra.sweep.dir=sweep"]
    proc = subprocess.run(["python", "-c", patch, *args], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert (
        last
        == f"Error: summary not written: {tmp_path}/sweep/summary.csv: No space left on device; "
        "the jobs' own files are kept"
        or last.startswith("Error: summary not written: sweep/summary.csv: No space")
    )
    assert "Traceback" not in proc.stderr and not list((tmp_path / "sweep").glob("summary*"))
    statuses = [json.loads(m.read_text())["status"] for m in (tmp_path / "sweep").glob("*/metrics.json")]
    assert statuses == ["completed", "completed"]


def test_jobs_that_chose_on_different_splits_are_not_ranked_against_each_other(tmp_path):
    """A sweep over data.val_size with 0 is refused up front; a folder that holds such jobs anyway (continued by hand,
    an older sweep) names no best and says why, in summary.md and summary.png alike."""
    (tmp_path / "sweep.json").write_text(json.dumps({"swept": ["data.val_size"], "overrides": []}))
    val = {**metrics([0.7]), "val_acc": 0.9, "best_val_acc": 0.9, "chosen_on": "val_acc"}
    val["history"] = {"test_acc": [0.7], "val_acc": [0.9]}
    make_job(tmp_path, "0_data.val_size=1000", ["data.val_size=1000"], val)
    make_job(tmp_path, "1_data.val_size=0", ["data.val_size=0"], metrics([0.8]))
    summary = collect(tmp_path)
    md = to_markdown(summary)
    assert summary.on == "mixed" and "Best" not in md and "Rerun" not in md
    assert "chose on different splits (on val acc: jobs 0; on test acc: jobs 1; data.val_size 0 holds out none)" in md
    assert "| val_acc | best_val_acc |" in md  # each job's own figures, the split it chose on among them
    assert key_axes(figure(summary))[0].get_ylabel() == "val or test acc (each job's own split) after 1 epoch"
    assert "Not measured: the jobs chose on different splits, whose figures do not compare." in md


def test_not_learning_is_one_rule_over_the_whole_history(tmp_path):
    """A job that learned and then collapsed to chance is told apart from one that never learned, in summary.md,
    summary.csv and the console alike; one that learned is neither."""
    from lenet_exp.console import closing_line
    from lenet_exp.summary import write_summary

    curves = {"never": [0.1, 0.11], "collapsed": [0.1, 0.6, 0.1], "learned": [0.5, 0.6]}
    for num, (name, curve) in enumerate(curves.items()):
        make_job(tmp_path, f"{num}_activation={name}", [f"activation={name}"], metrics(curve))
    write_summary(tmp_path)
    notes = {r["activation"]: r["note"] for r in read_csv(tmp_path / "summary.csv")}
    assert notes == {
        "never": "not learning (at chance)",
        "collapsed": "collapsed to chance after learning (test acc 0.600 at epoch 2)",
        "learned": "",
    }
    md = (tmp_path / "summary.md").read_text()
    assert "| completed, collapsed to chance after learning (test acc 0.600 at epoch 2) |" in md
    assert "Best: job 2" in md  # the one that ends above chance
    done = {**metrics(curves["collapsed"]), "best_epoch": 2, "chosen_on": "test_acc"}
    line = closing_line(done, tmp_path, 1.0)
    assert "at chance (0.100): collapsed to chance after learning (test acc 0.600 at epoch 2)" in line


def test_a_sweep_still_training_says_so_and_gives_no_command_to_continue_yet(tmp_path):
    from lenet_exp.folders import locked

    make_job(tmp_path, "0_optimizer.lr=0.1", ["optimizer.lr=0.1"], metrics([0.6]))
    running = make_job(tmp_path, "1_optimizer.lr=0.3", ["optimizer.lr=0.3"], {**metrics([0.5]), "status": "running"})
    with locked(running):  # its process holds it: it trains now
        md = to_markdown(collect(tmp_path))
    assert "Training now: job 1; the summary is redone as each ends." in md and "continue it with" not in md
    md = to_markdown(collect(tmp_path))  # no process holds it: it was stopped, and the sweep can be continued
    assert "1 interrupted" in md and "The sweep is not finished; continue it with:" in md


def test_jobs_a_search_asked_for_and_never_started_are_counted(tmp_path):
    """An Optuna search (or a grid in folders of the user's naming) stopped after one of its 3 trials: the summary
    cannot name the others, but counts them and gives the command that continues."""
    (tmp_path / "sweep.json").write_text(json.dumps({"swept": ["optimizer.lr"], "overrides": [], "jobs": 3}))
    make_job(tmp_path, "0", ["optimizer.lr=0.1"], metrics([0.6]))
    md = to_markdown(collect(tmp_path))
    assert "Not started: 2 of the 3 jobs it asks for. The sweep is not finished; continue it with:" in md


@pytest.mark.parametrize(
    "overrides, asked",
    [
        (["hparams_search=optuna", "hydra.sweeper.n_trials=3"], 3),
        (["optimizer.lr=0.1,0.3", "seed=0,1,2", "hydra.sweep.subdir=run_${hydra.job.num}"], 6),
        (["hparams_search=halving", "optimizer.lr=0.1,0.3"], None),  # halving.json counts its own
    ],
)
def test_a_sweep_records_how_many_jobs_it_asks_for(overrides, asked):
    from lenet_exp.config import compose_config
    from lenet_exp.preflight import first_values
    from lenet_exp.sweep_record import jobs_asked

    single, _ = first_values(overrides, True, None)
    assert jobs_asked(compose_config(single, with_hydra=True), overrides) == asked


def test_single_runs_compared_are_rerun_by_their_own_command_or_from_their_saved_config(tmp_path):
    """A run's columns show only what differs between the runs: its own command trains it again; a run trained from
    Python has none, and is trained again from its saved config."""
    from lenet_exp.summary_table import rerun_command

    made = make_job(tmp_path / "day", "a", ["optimizer.lr=0.1", "data.limit_train=512"], metrics([0.5, 0.6]))
    api = make_job(tmp_path / "day", "b", [], metrics([0.5, 0.9]))
    summary = collect(tmp_path, runs=True)
    rows = {r["job"]: r for r in summary.rows}
    assert rerun_command(summary, rows["day/a"]) == "python -m lenet_exp optimizer.lr=0.1 data.limit_train=512"
    config = api / ".hydra" / "config.yaml"
    api_call = f"python -c 'import sys, lenet_exp; lenet_exp.train(sys.argv[1], sys.argv[2])' {config} outputs/again"
    assert f"Best: job day/b, test acc 0.9000. Rerun it with:\n\n    {api_call}\n" in to_markdown(summary)
    assert made.exists()
