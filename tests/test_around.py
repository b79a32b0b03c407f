"""One knob at a time around a base setting: the jobs it makes, what "What mattered" reads from them (each knob against
the base's own jobs), the exercises preset composed, and the sweeper through the real command."""

import json

import pytest
from helpers import SMALL, make_job, read_csv, refused, run_cli

from lenet_exp.around import jobs, knobs
from lenet_exp.config import compose_config
from lenet_exp.importance import key_points
from lenet_exp.summary import collect
from lenet_exp.summary_table import to_markdown


def test_knobs_from_the_preset_and_the_command():
    params = {"optimizer.lr": "0.001,0.01", "model.pool": "avg", "activation": "sigmoid,tanh", "seed": "0,1"}
    values, fixed, seeds = knobs(params, ["activation=gelu,tanh", "optimizer.lr=0.1", "data.val_size=100"])
    assert values == {"model.pool": ["avg"], "activation": ["gelu", "tanh"]}  # one value in params: still a knob
    assert fixed == ["optimizer.lr=0.1", "data.val_size=100"]  # one value on the command line: the base moves
    assert seeds == [["seed=0"], ["seed=1"]]
    with pytest.raises(ValueError, match=r"^optimizer.lr=interval\(0.1, 1\): one knob at a time tries listed"):
        knobs({"optimizer.lr": "interval(0.1, 1)"}, [])


def test_the_exercises_preset_changes_each_knob_alone_around_its_base():
    cfg = compose_config(["hparams_search=exercises"], with_hydra=True)
    params = dict(cfg.hydra.sweeper.params)
    made = jobs(cfg, params, [])
    base = made[0]
    assert base == ["optimizer.lr=0.003", "activation=relu", "model.pool=max", "model.kernel_size=5",
                    "model.conv_channels=[6,16]", "model.hidden=[120,84]", "trainer.epochs=3", "model.norm=none",
                    "model.dropout=0.0", "data.augment=false", "seed=0"]  # fmt: skip
    changed = [[o for o in job if o not in base and not o.startswith("seed=")] for job in made[::3]]
    assert all(len(c) == 1 for c in changed[1:]) and len(made) == 17 * 3  # 16 knob values, and the base; 3 seeds
    assert [c[0] for c in changed[1:4]] == ["optimizer.lr=0.001", "optimizer.lr=0.01", "activation=sigmoid"]
    assert [c[0] for c in changed[-3:]] == ["model.norm=batch", "model.dropout=0.3", "data.augment=true"]  # as typed
    assert len({tuple(job) for job in made}) == len(made)


def test_a_knob_whose_base_is_null_keeps_null_in_the_base_job():
    """data.limit_test is null in the config: the base job says so, rather than an empty value no key takes."""
    cfg = compose_config(["hparams_search=exercises"], with_hydra=True)
    made = jobs(cfg, {"data.limit_test": "256,512"}, [])
    assert [o for o in made[0] if o.startswith("data.limit_test")] == ["data.limit_test=null"]
    compose_config(made[0])  # the base job's overrides compose


def oat_sweep(root):
    """The base (relu, lr 0.1), each knob changed alone, two seeds each: tanh helps, lr 0.01 hurts a lot."""
    record = {"swept": ["optimizer.lr", "activation", "seed"], "overrides": [], "design": "around"}
    (root / "sweep.json").write_text(json.dumps(record))
    figures = {("0.1", "relu"): 0.80, ("0.01", "relu"): 0.60, ("0.1", "tanh"): 0.84}
    n = 0
    for (lr, act), acc in figures.items():
        for seed in range(2):
            history = [acc + 0.01 * seed]
            m = {"status": "completed", "epochs_completed": 1, "test_acc": history[-1], "best_test_acc": history[-1],
                 "chance_test_acc": 0.1, "history": {"test_acc": history}}  # fmt: skip
            make_job(root, f"{n}_x", [f"optimizer.lr={lr}", f"activation={act}", f"seed={seed}"], m)
            n += 1
    return collect(root)


def test_what_mattered_reads_each_knob_against_the_base_s_own_jobs(tmp_path):
    summary = oat_sweep(tmp_path)
    found = summary.importance
    assert found.base == ("0.1", "relu") and found.interaction is None
    lr = next(e for e in found.effects if e.key == "optimizer.lr")
    assert [(v.value, v.n, v.base) for v in lr.levels] == [("0.01", 2, False), ("0.1", 2, True)]  # not tanh's jobs
    assert lr.levels[1].mean == pytest.approx(0.805) and len(key_points(found, "optimizer.lr")) == 4
    assert [e.key for e in found.effects] == ["optimizer.lr", "activation"]
    md = to_markdown(summary)
    assert "| optimizer.lr | " in md and "0.1 (base): 0.8050 ± 0.0071 (2)" in md
    assert "One knob at a time around the base (marked): each knob is read against the base's own jobs" in md
    assert "Strongest interaction" not in md


@pytest.mark.slow
def test_one_knob_at_a_time_through_the_command(tmp_path, fashion_mnist):
    """hydra/sweeper=around with two knobs on the command line: the base (the config's own sigmoid at 0.9), then each
    knob alone; the summary reads them against the base, and a rerun trains nothing."""
    args = ["--multirun", "hydra/sweeper=around", *SMALL, "trainer.epochs=1", "optimizer.lr=0.1,0.3",
            "activation=relu", "activation=relu,tanh", "hydra.sweep.dir=sweep"]  # fmt: skip
    args.remove("activation=relu")
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(tmp_path / "sweep" / "summary.csv")
    settings = sorted((r["optimizer.lr"], r["activation"]) for r in rows)
    assert settings == [("0.1", "sigmoid"), ("0.3", "sigmoid"), ("0.9", "relu"), ("0.9", "sigmoid"), ("0.9", "tanh")]
    md = (tmp_path / "sweep" / "summary.md").read_text()
    assert "0.9 (base): " in md and "sigmoid (base): " in md and "One knob at a time around the base" in md
    folders = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert folders[0] == "0_activation=sigmoid,optimizer.lr=0.9"  # the base first, named as a sweep's jobs
    logs = {p: p.read_text() for p in (tmp_path / "sweep").glob("*/train.log")}
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert {p: p.read_text() for p in (tmp_path / "sweep").glob("*/train.log")} == logs


def test_a_knob_the_command_cannot_take_is_refused_before_any_job(tmp_path):
    proc = refused("--multirun", "hparams_search=exercises", "model.conv_channels=[6,16,32],[16,32]",
                   "hydra.sweep.dir=sweep", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(
        "Error: model: a 28x28 input shrinks to nothing after conv 3; use fewer conv_channels"
    )
    assert not (tmp_path / "sweep").exists()
