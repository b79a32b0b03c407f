"""The search over ranges that prunes: ranges read as Hydra's Optuna sweeper spells them, draws that are repeatable and
told wave by wave, a rerun that draws and trains nothing twice (with a stand-in trainer), then the real command."""

import json
import math
from pathlib import Path

import pytest
from helpers import SMALL, read_csv, refused, run_cli
from omegaconf import OmegaConf

import lenet_exp.ranged as ranged_module
from lenet_exp.halving import Point, RungIncomplete
from lenet_exp.ranged import Range, RangedSearch, draw, range_of, space
from lenet_exp.run_folder import RunFolder
from lenet_exp.sweep_record import HalvingRecord


@pytest.mark.parametrize(
    "override, found",
    [
        ("optimizer.lr=tag(log, interval(0.001, 0.1))", Range("optimizer.lr", 0.001, 0.1, log=True)),
        ("optimizer.lr=interval(0.1, 0.9)", Range("optimizer.lr", 0.1, 0.9)),
        ("data.batch_size=tag(log, int(interval(32, 512)))", Range("data.batch_size", 32, 512, log=True, integer=True)),
        ("data.batch_size=interval(32, 512)", Range("data.batch_size", 32.0, 512.0)),  # Hydra reads floats: int() casts
        ("activation=choice(relu, tanh)", Range("activation", choices=["relu", "tanh"])),
        ("activation=relu,tanh", Range("activation", choices=["relu", "tanh"])),
        ("model.conv_channels=choice([6,16],[16,32])", Range("model.conv_channels", choices=["[6,16]", "[16,32]"])),
        ("trainer.epochs=range(2,5)", Range("trainer.epochs", choices=["2", "3", "4"])),
        ("optimizer.lr=0.1", None),
    ],
)
def test_ranges_are_read_as_the_optuna_sweeper_spells_them(override, found):
    assert range_of(override) == found


@pytest.mark.parametrize(
    "override, why",
    [
        ("optimizer.lr=tag(log, interval(0, 0.1))", "a log scale needs numbers above 0"),
        ("optimizer.lr=interval(0.9, 0.1)", "an interval runs from a lower number to a higher one"),
        ("activation=choice(relu, relu)", "give each choice once"),
    ],
)
def test_a_range_no_search_can_draw_from_is_refused_naming_it(override, why):
    with pytest.raises(ValueError, match=f"^{override.replace('(', '.').replace(')', '.')}: {why}"):
        range_of(override)


def test_the_space_keeps_seeds_and_single_values_and_the_command_replaces_the_preset():
    params = {"optimizer.lr": "tag(log, interval(0.001, 0.1))", "activation": "choice(relu, tanh)", "seed": "0,1,2"}
    ranges, fixed = space(params, ["activation=sigmoid", "data.val_size=1000", "trainer.epochs=9"])
    assert [r.key for r in ranges] == ["optimizer.lr"]  # activation given one value: no longer drawn
    assert fixed == ["activation=sigmoid", "seed=0,1,2", "data.val_size=1000"]  # trainer.epochs: the rungs' own
    with pytest.raises(ValueError, match="^no key to draw"):
        space({"seed": "0,1"}, [])


def test_draws_are_repeatable_inside_their_ranges_and_written_readably():
    ranges = [Range("optimizer.lr", 0.001, 0.1, log=True), Range("activation", choices=["relu", "tanh"])]
    first, again = draw(ranges, [], 20, "tpe", seed=3), draw(ranges, [], 20, "tpe", seed=3)
    assert first == again and draw(ranges, [], 20, "tpe", seed=4) != first
    lrs = [float(d["optimizer.lr"]) for d in first]
    assert all(0.001 <= lr <= 0.1 for lr in lrs) and all(len(d["optimizer.lr"].replace(".", "")) <= 7 for d in first)
    assert min(lrs) < 0.004 and max(lrs) > 0.03  # a log scale: both decades drawn from
    assert {d["activation"] for d in first} == {"relu", "tanh"}


def config(tmp_path: Path, epochs: int = 3):
    return OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}, "trainer": {"epochs": epochs},
                             "scheduler": {"name": "none"}})  # fmt: skip


class Peaked:
    """A trainer that writes what a run would: each job's accuracy peaks where its learning rate is 0.01."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.calls, self.fail_on_call = [], fail_on_call

    def __call__(self, jobs: list[Point], epochs: int) -> None:
        self.calls.append((sorted(j.num for j in jobs), epochs))
        if len(self.calls) == self.fail_on_call:
            raise KeyboardInterrupt  # stopped while training this wave
        for job in jobs:
            lr = float(dict(o.split("=", 1) for o in job.overrides)["optimizer.lr"])
            top = 0.9 - 0.2 * abs(math.log10(lr) + 2)
            metrics = {"status": "completed", "epochs_completed": epochs,
                       "history": {"test_acc": [top - 0.01 * (epochs - e) for e in range(1, epochs + 1)]}}  # fmt: skip
            job.folder.mkdir(parents=True, exist_ok=True)
            RunFolder(job.folder).write_metrics(metrics)


def ranged(tmp_path: Path, n_trials: int = 12, batch: int = 4, sampler: str = "tpe") -> RangedSearch:
    params = {"optimizer.lr": "tag(log, interval(0.0001, 1.0))", "seed": "0,1"}
    return RangedSearch(config(tmp_path), params, [], 3, 1, 3, n_trials, batch, sampler, 0)


def record(search: RangedSearch, tmp_path: Path) -> HalvingRecord:
    return HalvingRecord(tmp_path, 3, search.rungs, search.jobs, search.setting_count, 0.0)


def test_each_wave_is_trained_to_the_first_rung_and_told_before_the_next_is_drawn(tmp_path, monkeypatch):
    """Three waves of four settings, two seeds each: wave k is drawn knowing the first rung's figure (the mean over
    its seeds) of every setting before it."""
    told = []

    def drawing(ranges, history, count, sampler, seed):
        told.append([figure for _, figure in history])
        return draw(ranges, history, count, sampler, seed)

    monkeypatch.setattr(ranged_module, "draw", drawing)
    search, trainer = ranged(tmp_path), Peaked()
    settings = search.prepare(record(search, tmp_path), trainer)
    assert trainer.calls == [([0, 1, 2, 3, 4, 5, 6, 7], 1), (list(range(8, 16)), 1), (list(range(16, 24)), 1)]
    assert len(settings) == 12 and all(len(s) == 2 for s in settings)  # a setting, its two seeds
    assert [o for o in settings[0][1].overrides if o.startswith("seed")] == ["seed=1"]
    expected = [0.9 - 0.2 * abs(math.log10(float(s[0].overrides[0].split("=")[1])) + 2) for s in settings]
    assert [len(t) for t in told] == [0, 4, 8] and told[2] == pytest.approx(expected[:8])
    folders = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert folders[0].startswith("0_optimizer.lr=") and folders[0].endswith(",seed=0") and len(folders) == 24


def test_told_enough_tpe_draws_near_what_did_well_where_random_does_not():
    """Thirty settings told, their figure peaked at a learning rate of 0.01: TPE's next draws gather there."""
    lr = Range("optimizer.lr", 0.0001, 1.0, log=True)
    history = [({"optimizer.lr": f"{10 ** (-4 + 4 * i / 29):.4g}"}, 0.9 - 0.2 * abs(-4 + 4 * i / 29 + 2))
               for i in range(30)]  # fmt: skip
    away = {s: sorted(abs(math.log10(float(d["optimizer.lr"])) + 2) for d in draw([lr], history, 16, s, 0))
            for s in ("tpe", "random")}  # fmt: skip
    assert away["tpe"][4] < 0.15 < 0.2 < away["random"][4]  # a quarter of the draws within 0.15 decades of the peak


@pytest.mark.parametrize("seed", [0, 1])
def test_told_a_few_tpe_draws_its_next_wave_near_the_best_of_them(seed):
    """lenet_ranged's second wave: three settings told, one clearly best. The keys modelled one at a time drew three
    settings of the worst one's kind, far from the best; modelled jointly, the wave shares the best one's choices."""
    space = [
        Range("activation", choices=["relu", "tanh"]),
        Range("model.conv_channels", choices=["[6,16]", "[16,32]"]),
        Range("optimizer.lr", 0.001, 0.03, log=True),
        Range("optimizer.weight_decay", 1e-6, 1e-3, log=True),
    ]
    told = [({"activation": "tanh", "model.conv_channels": "[6,16]", "optimizer.lr": "0.004225",
              "optimizer.weight_decay": "8.663e-05"}, 0.86),
            ({"activation": "relu", "model.conv_channels": "[16,32]", "optimizer.lr": "0.0017",
              "optimizer.weight_decay": "0.0006"}, 0.836),
            ({"activation": "tanh", "model.conv_channels": "[6,16]", "optimizer.lr": "0.001019",
              "optimizer.weight_decay": "0.00086"}, 0.843)]  # fmt: skip
    wave = draw(space, told, 3, "tpe", seed)
    assert sum(d["activation"] == "tanh" and d["model.conv_channels"] == "[6,16]" for d in wave) >= 2, wave


def test_a_rerun_draws_nothing_again_and_trains_nothing_done(tmp_path):
    search = ranged(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        search.prepare(record(search, tmp_path), Peaked(fail_on_call=2))  # stopped in the second wave
    drawn = json.loads((tmp_path / "halving.json").read_text())["drawn"]
    assert len(drawn) == 8  # the first two waves, drawn and kept before the second trained
    again, trainer = ranged(tmp_path), Peaked()
    settings = again.prepare(record(again, tmp_path), trainer)
    assert trainer.calls == [(list(range(8, 16)), 1), (list(range(16, 24)), 1)]  # wave 1 is done
    assert json.loads((tmp_path / "halving.json").read_text())["drawn"][:8] == drawn
    assert [s[0].overrides[0] for s in settings[:4]] == [f"optimizer.lr={d['optimizer.lr']}" for d in drawn[:4]]
    other = RangedSearch(config(tmp_path), {"optimizer.lr": "interval(0.1, 0.2)"}, [], 3, 1, 3, 12, 4, "tpe", 0)
    assert record(other, tmp_path).drawn(other.space_text()) == []  # another space: drawn afresh


@pytest.mark.parametrize(
    "change, said",
    [
        ("fewer", "Error: hydra.sweeper.n_trials=4: this search was started with hydra.sweeper.n_trials=12 (halv"),
        ("outside", "halving.json: drawn setting 2 is not one of this search's space; move the file away"),
        ("another", "halving.json: its drawn settings make job 2 2_optimizer.lr=0.5,seed=0, but that job's folder"),
    ],
)
def test_a_rerun_that_would_mix_two_searches_is_refused_in_one_line(tmp_path, capsys, change, said):
    """Fewer trials than were drawn, or a record edited by hand (a setting outside the space, or one that names other
    jobs than the folders hold): refused (status 2) before anything trains, never mixed with what was trained."""
    search = ranged(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        search.prepare(record(search, tmp_path), Peaked(fail_on_call=2))
    path = tmp_path / "halving.json"
    if change != "fewer":
        saved = json.loads(path.read_text())
        saved["drawn"][1]["optimizer.lr"] = "5.0" if change == "outside" else "0.5"
        path.write_text(json.dumps(saved))
    if change == "fewer":
        with pytest.raises(SystemExit) as stopped:
            ranged(tmp_path, n_trials=4)
        assert stopped.value.code == 2 and capsys.readouterr().err.startswith(said)
        return
    again, trainer = ranged(tmp_path), Peaked()
    with pytest.raises(RungIncomplete) as refused:
        again.prepare(record(again, tmp_path), trainer)
    assert refused.value.status == 2 and said in str(refused.value) and trainer.calls == []


@pytest.mark.slow
def test_the_ranged_search_on_local_processes(tmp_path, fashion_mnist):
    """Two settings drawn in one wave, trained on the parallel launcher's two workers to the one rung."""
    args = ["--multirun", "hparams_search=ranged", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", *SMALL,
            "data.val_size=256", "trainer.epochs=1", "data.batch_size=256", "hydra.sweeper.n_trials=2",
            "hydra.sweeper.batch=2", "hydra.sweep.dir=sweep"]  # fmt: skip
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "sweep" / "halving.json").read_text())
    assert record["finished"] and len(record["drawn"]) == 2
    rows = read_csv(tmp_path / "sweep" / "summary.csv")
    assert sorted(r["status"] for r in rows) == ["completed"] * 2
    assert {r["optimizer.lr"] for r in rows} == {d["optimizer.lr"] for d in record["drawn"]}


@pytest.mark.slow
def test_the_ranged_search_through_the_command(tmp_path, fashion_mnist):
    """Three settings drawn in two waves, two seeds each, rungs at 1 and 3 epochs, on the fused launcher: the best
    setting goes on, the rest are pruned; the summary names the search and what mattered; a rerun trains nothing."""
    args = ["--multirun", "hparams_search=ranged", "hydra/launcher=fused", *SMALL, "data.val_size=256",
            "trainer.epochs=3", "seed=0,1", "data.batch_size=256", "hydra.sweeper.n_trials=3", "hydra.sweeper.batch=2",
            "hydra.sweep.dir=sweep"]  # fmt: skip
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Fused launcher: 4 jobs in 1 group of 4" in proc.stdout  # the first wave's two settings, two seeds each
    sweep = tmp_path / "sweep"
    record = json.loads((sweep / "halving.json").read_text())
    assert len(record["drawn"]) == 3 and record["finished"] and record["rungs"] == [1, 3]
    rows = read_csv(sweep / "summary.csv")
    assert sorted(r["status"] for r in rows) == ["completed"] * 2 + ["pruned"] * 4
    assert {r["optimizer.lr"] for r in rows} == {d["optimizer.lr"] for d in record["drawn"]}
    md = (sweep / "summary.md").read_text()
    assert "Successive halving over ranges, tpe drawing: 3 settings (6 jobs), rungs at 1, 3 epochs" in md
    assert "## What mattered (val acc after 1 epoch, the first rung, which every job reached; 6 jobs)" in md
    assert "Not started" not in md and json.loads((sweep / "sweep.json").read_text())["grid"] is False
    logs = {p: p.read_text() for p in sweep.glob("*/train.log")}
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert {p: p.read_text() for p in sweep.glob("*/train.log")} == logs  # nothing trained again
    assert json.loads((sweep / "halving.json").read_text())["drawn"] == record["drawn"]


@pytest.mark.parametrize(
    "given, said",
    [
        (["optimizer.lr=tag(log, interval(0, 1))"], "Error: optimizer.lr=tag(log, interval(0, 1)): a log scale needs"),
        (["optimizer.lr=interval(-1, 0.1)"], "Error: optimizer.lr: the search would draw -1, which is refused: "),
        (["activation=choice(relu, swish)"], "Error: activation=choice(relu, swish): swish is not an option of group"),
        (["hydra.sweeper.sampler=grid"], "Error: hydra.sweeper.sampler='grid' is not allowed: expected one of tpe, ra"),
        (["hydra/sweeper=ranged"], "Error: hydra/sweeper=ranged: choose it through its preset, hparams_search=ranged"),
    ],
)
def test_bad_ranges_are_refused_in_one_line_before_any_job(tmp_path, given, said):
    preset = [] if given[0].startswith("hydra/") else ["hparams_search=ranged"]
    proc = refused("--multirun", *preset, *given, "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith(said), proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "sweep").exists()
