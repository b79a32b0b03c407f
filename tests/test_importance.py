"""What mattered: each swept key's share of the choosing figure's variance, at one fidelity, on sweeps whose answer is
planted; said in summary.md, summary_importance.csv and the picture alike, and in one line when it cannot be told."""

import json
import random
from itertools import product

import pytest
from helpers import make_job, read_csv

from lenet_exp.importance import BINS, measure
from lenet_exp.summary import collect, write_summary
from lenet_exp.summary_table import to_markdown


def metrics(history: list[float], status: str = "completed", val: bool = True) -> dict:
    found = {
        "status": status,
        "epochs_completed": len(history),
        "test_acc": history[-1] if history and status != "diverged" else None,
        "best_test_acc": max(history, default=None),
        "chance_test_acc": 0.1,
        "history": {"test_acc": [a - 0.01 for a in history]},
    }
    if val:
        found.update(val_acc=found["test_acc"], best_val_acc=found["best_test_acc"], chosen_on="val_acc")
        found["history"]["val_acc"] = history
    return found


def planted(root, seeds=3, noise=0.002):
    """lr x optimizer x activation: the rate that suits adam does not suit sgd (an interaction), activation moves
    the figure a little, seeds less."""
    rnd = random.Random(0)
    keys = ["optimizer.lr", "optimizer", "activation", "seed"]
    (root / "sweep.json").write_text(json.dumps({"swept": keys, "overrides": []}))
    for n, (lr, opt, act, seed) in enumerate(
        product(["0.001", "0.1"], ["sgd", "adam"], ["relu", "tanh"], range(seeds))
    ):
        acc = 0.85 if (opt == "adam") == (lr == "0.001") else 0.55
        acc += 0.02 * (act == "tanh") + rnd.gauss(0, noise)
        values = [lr, opt, act, str(seed)]
        make_job(root, f"{n}_x", [f"{k}={v}" for k, v in zip(keys, values)], metrics([acc - 0.1, acc]))
    return collect(root)


def test_a_planted_interaction_is_named_and_the_shares_add_up(tmp_path):
    found = planted(tmp_path).importance
    assert found.on == "val_acc" and found.epochs == 2 and len(found.points) == 24 and not found.left_out
    shares = {e.key: e.share for e in found.effects}
    assert [e.key for e in found.effects] == ["activation", "optimizer.lr", "optimizer"]  # main effects, largest first
    assert shares["activation"] == pytest.approx(0.0044, abs=0.002)  # 0.02 of a 0.30 swing
    assert shares["optimizer.lr"] < 0.01 and shares["optimizer"] < 0.01  # neither moves it alone...
    a, b, share = found.interaction
    assert {a, b} == {"optimizer.lr", "optimizer"} and share > 0.98  # ...but together they decide
    assert 0 < found.noise < 0.001 and found.noise <= 1 - sum(shares.values()) - share  # the seeds' own
    relu = next(v for v in found.effects[0].levels if v.value == "relu")
    assert (relu.n, relu.mean) == (12, pytest.approx(0.70, abs=0.01))


def test_summary_md_and_the_csv_say_the_same(tmp_path):
    planted(tmp_path)
    write_summary(tmp_path)
    md = (tmp_path / "summary.md").read_text()
    assert "## What mattered (val acc after 2 epochs, the epochs every job reached; 24 jobs)" in md
    assert "Strongest interaction: optimizer.lr × optimizer, 99% of the variance beyond their own effects." in md
    assert md.index("## What mattered") < md.index("## Jobs")
    rows = read_csv(tmp_path / "summary_importance.csv")
    assert [r["key"] for r in rows][:2] == ["activation", "activation"] and rows[0]["value"] == "relu"
    assert rows[-2]["key"] == "optimizer.lr x optimizer" and rows[-1]["key"] == "seeds (within a setting)"
    line = next(x for x in md.splitlines() if x.startswith("| activation |"))
    assert f"{100 * float(rows[0]['share']):.0f}%" in line and f"relu: {float(rows[0]['mean']):.4f}" in line


def test_one_seed_a_setting_says_its_shares_hold_the_seeds_noise(tmp_path):
    md = to_markdown(planted(tmp_path, seeds=1))
    assert "One seed a setting: each share holds the seeds' own noise too (seed=0,1,2 tells them apart)." in md
    assert "| seeds (within a setting) |" not in md


def test_a_halving_search_is_compared_at_its_first_rung_with_failed_and_diverged_apart(tmp_path):
    """Survivors trained on to 3 epochs, the pruned stopped at 1: all are compared after 1 epoch, which all reached."""
    (tmp_path / "sweep.json").write_text(json.dumps({"swept": ["optimizer.lr"], "overrides": []}))
    choices = [{"epochs": 1, "ranked_jobs": [0, 1, 2, 3], "kept": 2, "scores": {}}]
    record = {"eta": 2, "rungs": [1, 3], "jobs": 6, "settings": 6, "finished": True, "rung_choices": choices}
    (tmp_path / "halving.json").write_text(json.dumps({**record, "wall_seconds": 5}))
    runs = {
        "0.1": metrics([0.8, 0.85, 0.9]),
        "0.03": metrics([0.75, 0.8, 0.86]),
        "0.01": metrics([0.6], "pruned"),
        "0.003": metrics([0.5], "pruned"),
        "3": {**metrics([]), "status": "failed", "error": "data error"},
        "9": metrics([0.1], "diverged"),
    }
    for n, (lr, m) in enumerate(runs.items()):
        make_job(tmp_path, f"{n}_optimizer.lr={lr}", [f"optimizer.lr={lr}"], m)
    summary = collect(tmp_path)
    found = summary.importance
    assert found.epochs == 1 and sorted(y for _, y in found.points) == [0.5, 0.6, 0.75, 0.8]
    assert found.left_out == {"diverged": 1, "failed": 1}
    head = "(val acc after 1 epoch, the first rung, which every job reached; 4 jobs; left out: 1 diverged, 1 failed)"
    assert head in to_markdown(summary)


def test_a_swept_epoch_count_compares_final_figures(tmp_path):
    (tmp_path / "sweep.json").write_text(json.dumps({"swept": ["trainer.epochs"], "overrides": []}))
    for n, epochs in enumerate([1, 1, 3, 3]):
        history = [0.6 + 0.1 * e + 0.01 * n for e in range(epochs)]
        make_job(tmp_path, f"{n}_trainer.epochs={epochs}", [f"trainer.epochs={epochs}"], metrics(history))
    found = collect(tmp_path).importance
    assert found.epochs is None and found.how == "each job's final figure, as trainer.epochs is swept"
    assert [(v.value, v.mean) for v in found.effects[0].levels] == [
        ("1", pytest.approx(0.605)), ("3", pytest.approx(0.825))]  # fmt: skip
    assert found.effects[0].share > 0.99


def test_a_ranged_number_is_grouped_by_rank(tmp_path):
    rnd = random.Random(2)
    rows = []
    for n in range(40):
        lr = 10 ** rnd.uniform(-4, 0)
        rows.append({"job": n, "status": "completed", "on": "val_acc", "acc": None, "epochs_completed": 1,
                     "overrides": {"optimizer.lr": f"{lr:.6g}"}, "history": [0.5],
                     "histories": {"val_acc": [0.9 - 0.1 * abs(lr - 0.01) ** 0.5]}})  # fmt: skip
    found = measure(rows, ["optimizer.lr"], "val_acc")
    (effect,) = found.effects
    assert len(effect.levels) == BINS and [v.n for v in effect.levels] == [10] * BINS
    assert all(a.high < b.low for a, b in zip(effect.levels, effect.levels[1:]))  # in order, not overlapping
    assert effect.levels[0].value == f"{effect.levels[0].low:.3g}-{effect.levels[0].high:.3g}"


def test_a_drawn_settings_seeds_stay_in_one_group():
    """9 drawn settings of 3 seeds each (lenet_ranged's shape): groups by the settings' rank, so no setting's seeds
    are split between two groups and no two groups share an end."""
    rnd = random.Random(5)
    rows = []
    for setting in range(9):
        lr = f"{10 ** rnd.uniform(-3, -1.5):.4g}"
        for seed in range(3):
            rows.append({"job": 3 * setting + seed, "status": "completed", "on": "val_acc", "acc": None,
                         "epochs_completed": 1, "overrides": {"optimizer.lr": lr, "seed": str(seed)},
                         "history": [0.5], "histories": {"val_acc": [0.8 + 0.01 * seed + float(lr)]}})  # fmt: skip
    (effect,) = measure(rows, ["optimizer.lr", "seed"], "val_acc").effects
    assert len(effect.levels) == BINS and sum(v.n for v in effect.levels) == 27
    assert all(v.n % 3 == 0 for v in effect.levels)  # whole settings only
    assert all(a.high < b.low for a, b in zip(effect.levels, effect.levels[1:]))
    assert len({v.value for v in effect.levels}) == BINS


def test_keys_that_always_went_together_are_said_to_be_inseparable():
    """A sampler that drew relu only with [16,32] (and tanh only with [6,16]): each key's share is the other's too."""
    rows = []
    for n, (act, conv, lr) in enumerate([("relu", "[16,32]", "0.1"), ("relu", "[16,32]", "0.3"),
                                          ("tanh", "[6,16]", "0.1"), ("tanh", "[6,16]", "0.3")] * 2):  # fmt: skip
        rows.append({"job": n, "status": "completed", "on": "val_acc", "acc": None, "epochs_completed": 1,
                     "overrides": {"activation": act, "model.conv_channels": conv, "optimizer.lr": lr},
                     "history": [0.5], "histories": {"val_acc": [0.8 + 0.05 * (act == "tanh") + n / 1e3]}})  # fmt: skip
    found = measure(rows, ["activation", "model.conv_channels", "optimizer.lr"], "val_acc")
    shares = {e.key: e.share for e in found.effects}
    assert shares["activation"] == pytest.approx(shares["model.conv_channels"])
    assert found.caveat.startswith("in these jobs, keys went together, so their shares are mostly one and cannot")
    assert found.caveat.split(": ", 1)[1].startswith("activation and model.conv_channels")
    assert "optimizer.lr and" not in found.caveat  # lr met every value of both
    assert found.interaction is not None and "optimizer.lr" in found.interaction[:2]  # crossed: an interaction is told


def test_shares_of_keys_not_crossed_as_in_a_grid_are_said_to_overlap():
    """A sampler's draws: lr and weight decay rose together, so each explains what the other does; the shares add up
    past 100% and the summary says why, and names no interaction between keys that never met in every combination."""
    rows = []
    for n in range(12):
        lr, wd = 10 ** (-3 + n / 6), 10 ** (-6 + n / 4 + (0.3 if n % 2 else 0))
        rows.append({"job": n, "status": "completed", "on": "val_acc", "acc": None, "epochs_completed": 1,
                     "overrides": {"optimizer.lr": f"{lr:.4g}", "optimizer.weight_decay": f"{wd:.4g}"},
                     "history": [0.5], "histories": {"val_acc": [0.9 - 0.01 * n + 0.002 * (n % 3)]}})  # fmt: skip
    found = measure(rows, ["optimizer.lr", "optimizer.weight_decay"], "val_acc")
    assert sum(e.share for e in found.effects) > 1.05 and found.interaction is None
    assert "cannot be told apart: optimizer.lr and optimizer.weight_decay" in found.caveat
    assert "the keys were not crossed as in a grid, so the shares overlap (they add up to " in found.caveat


@pytest.mark.parametrize("design", ["grid", None])
def test_a_grid_with_a_job_missing_is_no_one_knob_design_and_its_listed_numbers_are_not_grouped(tmp_path, design):
    """A 2 x 2 grid whose fourth job diverged leaves an L of three settings: still a grid's (no base, no claim of one
    knob at a time); four listed learning rates, one job each, keep a row each (they were listed, not drawn)."""
    for name, grid in (("l", product(["0.1", "0.3"], ["relu", "tanh"])), ("four", [(lr, "relu") for lr in
                       ("0.01", "0.03", "0.1", "0.3")])):  # fmt: skip
        sweep = tmp_path / name
        sweep.mkdir()
        (sweep / "sweep.json").write_text(json.dumps({"swept": ["optimizer.lr", "activation"], "overrides": []}
                                                     | ({"design": design} if design else {})))  # fmt: skip
        for n, (lr, act) in enumerate(grid):
            status = "diverged" if (lr, act) == ("0.3", "tanh") else "completed"
            history = [0.5 + float(lr) + 0.05 * (act == "tanh") + 0.01 * n]
            make_job(sweep, f"{n}_x", [f"optimizer.lr={lr}", f"activation={act}"], metrics(history, status))
    found = collect(tmp_path / "l").importance
    assert found.base is None and "one knob" not in found.caveat
    (lr,) = collect(tmp_path / "four").importance.effects
    assert [v.value for v in lr.levels] == ["0.01", "0.03", "0.1", "0.3"]


@pytest.mark.parametrize(
    "runs, line",
    [
        ({"0.1": [0.8], "0.3": [0.7]}, "Too small to tell: under three figures."),
        ({"0.1": [0.8], "0.3": [0.8], "0.9": [0.8]}, "Every job ended at the same figure: no key moved it."),
    ],
)
def test_too_small_to_tell_is_said_in_one_line(tmp_path, runs, line):
    (tmp_path / "sweep.json").write_text(json.dumps({"swept": ["optimizer.lr"], "overrides": []}))
    for n, (lr, history) in enumerate(runs.items()):
        make_job(tmp_path, f"{n}_optimizer.lr={lr}", [f"optimizer.lr={lr}"], metrics(history))
    md = to_markdown(collect(tmp_path))
    section = md[md.index("## What mattered") :].split("\n\n")
    assert section[1] == line and "| key |" not in md.split("## What mattered")[1].split("| job |")[0]
    assert section[2] == "## Jobs"  # the jobs' table is not read as part of the section above it


def test_a_single_job_has_nothing_to_compare(tmp_path):
    make_job(tmp_path, "0_optimizer.lr=0.1", ["optimizer.lr=0.1"], metrics([0.8]))
    summary = collect(tmp_path)
    assert summary.importance is None and "What mattered" not in to_markdown(summary)
