"""Learning-rate schedules: torch's curves, per-batch steps seen in TensorBoard, fused groups as alone."""

import json
import logging
import math

import pytest
import torch
from helpers import run_cli, scalars, snapshot

from lenet_exp.config import compose_config
from lenet_exp.errors import ConfigError
from lenet_exp.fused import fusion_key
from lenet_exp.jobs import Job
from lenet_exp.schedule import lr_factor
from lenet_exp.schema import check_config
from lenet_exp.training import train, train_group

SLICE = ["device=cpu", "data.download=false", "data.limit_train=2560", "data.limit_test=512", "trainer.progress=false"]


@pytest.mark.parametrize("total,pct", [(100, 0.3), (47, 0.25), (10, 0.5)])
def test_the_factors_are_torchs_own_curves(total, pct):
    """onecycle is torch's OneCycleLR (cosine phases, no momentum cycle); cosine without warm-up is its
    CosineAnnealingLR to zero."""
    param = torch.nn.Parameter(torch.zeros(1))
    cases = [
        ("onecycle", dict(pct_start=pct), lambda o: torch.optim.lr_scheduler.OneCycleLR(
            o, max_lr=0.5, total_steps=total, pct_start=pct, cycle_momentum=False)),
        ("cosine", {}, lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total)),
    ]  # fmt: skip
    for name, keys, make in cases:
        optimizer = torch.optim.SGD([param], lr=0.5)
        scheduler = make(optimizer)
        for step in range(total):
            assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * lr_factor(name, step, total, **keys)), step
            optimizer.step()
            if step < total - 1:
                scheduler.step()


def test_a_warm_up_rises_linearly_then_anneals_to_zero():
    factors = [lr_factor("cosine", step, 10, warmup=0.3) for step in range(12)]
    assert factors[:3] == pytest.approx([1 / 3, 2 / 3, 1]) and factors[3] == 1
    assert all(a >= b for a, b in zip(factors[3:], factors[4:])) and factors[10:] == [0, 0]  # past the end: its last


@pytest.mark.parametrize(
    "overrides,error",
    [
        (["scheduler=cosine", "scheduler.warmup=1"], "scheduler.warmup=1 is not allowed: expected a number in [0, 1)"),
        (["scheduler=onecycle", "scheduler.pct_start=0"], "scheduler.pct_start=0 is not allowed"),
        (["scheduler=onecycle", "scheduler.div_factor=-1"], "expected a finite number > 0"),
        (["scheduler.epochs=0"], "scheduler.epochs=0 is not allowed"),
        (
            ["scheduler=cosine", "scheduler.epochs=3", "trainer.epochs=5"],
            "trainer.epochs=5 runs past the end of the learning-rate schedule (scheduler.epochs=3): its last 2 epochs",
        ),
    ],
)
def test_a_schedule_out_of_range_is_refused_naming_its_key(overrides, error):
    with pytest.raises(ConfigError, match=error.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        check_config(compose_config([*SLICE, *overrides]))


@pytest.mark.parametrize("name", ["none", "cosine", "onecycle"])
def test_train_lr_in_tensorboard_follows_the_schedule_step_by_step(tmp_path, fashion_mnist, name):
    """10 steps an epoch, 2 epochs, 5 log points an epoch: train/lr at each point is the rate of the next step."""
    cfg = compose_config([*SLICE, "trainer.epochs=2", f"scheduler={name}", "optimizer.lr=0.4"])
    train(cfg, tmp_path / "run")
    lrs = scalars(tmp_path / "run")["train/lr"]
    assert [s for s, _ in lrs] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    for step, lr in lrs:
        assert lr == pytest.approx(0.4 * lr_factor(name, step, 20), rel=1e-6), (name, step)
    if name != "none":
        state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
        assert state["scheduler"]["last_epoch"] == 20  # its place on the schedule, for an exact resume


def test_a_fused_group_on_a_schedule_trains_as_each_job_alone(tmp_path, fashion_mnist):
    """The group shares the schedule's factor; each model keeps its own base learning rate."""
    variants = [["optimizer.lr=0.3", "activation=tanh"], ["optimizer.lr=0.1", "optimizer.momentum=0.5", "seed=1"]]
    cfgs = [compose_config([*SLICE, "trainer.epochs=2", "scheduler=onecycle", *v]) for v in variants]
    assert fusion_key(cfgs[0]) == fusion_key(cfgs[1]) != fusion_key(compose_config([*SLICE, "trainer.epochs=2"]))
    jobs = [
        Job(c, tmp_path / f"fused{i}", {}, log=logging.getLogger(f"f{i}"), in_sweep=True) for i, c in enumerate(cfgs)
    ]
    train_group(jobs, fuse=True)
    for i, job in enumerate(jobs):
        train(job.cfg, tmp_path / f"alone{i}")
        fused, alone = (
            torch.load(d / "checkpoints" / "last.pt", weights_only=True) for d in (job.run_dir, tmp_path / f"alone{i}")
        )
        assert max((fused["model"][k] - alone["model"][k]).abs().max().item() for k in alone["model"]) < 1e-4, i
        assert fused["optimizer"]["param_groups"][0]["lr"] == pytest.approx(alone["optimizer"]["param_groups"][0]["lr"])
        assert fused["scheduler"]["last_epoch"] == alone["scheduler"]["last_epoch"] == 20
        got, want = scalars(job.run_dir)["train/lr"], scalars(tmp_path / f"alone{i}")["train/lr"]
        assert [s for s, _ in got] == [s for s, _ in want] and all(
            math.isclose(a, b, rel_tol=1e-9) for (_, a), (_, b) in zip(got, want)
        )


@pytest.mark.slow
def test_a_halving_search_keeps_one_schedule_across_its_rungs(tmp_path, fashion_mnist):
    """Rungs of 1 and 2 epochs on a schedule 2 epochs long: the pruned job stopped partway along it; the one that went
    on ends exactly where the same job trained in one go ends."""
    args = [*SLICE, "scheduler=cosine", "trainer.epochs=2"]
    search = ["--multirun", "hparams_search=halving", "hydra.sweeper.eta=2", "optimizer.lr=0.3,0.9"]
    proc = run_cli(*search, *args, "hydra.sweep.dir=s", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    jobs = {json.loads((d / "metrics.json").read_text())["status"]: d for d in (tmp_path / "s").glob("[0-9]_*")}
    assert set(jobs) == {"completed", "pruned"}
    for d in jobs.values():
        assert "scheduler.epochs=2" in (d / ".hydra" / "overrides.yaml").read_text()
    assert scalars(jobs["pruned"])["train/lr"][-1][1] > 0.1  # stopped partway along the cosine
    lr = next(o for o in (jobs["completed"] / ".hydra" / "overrides.yaml").read_text().split() if "optimizer.lr" in o)
    alone = run_cli(*args, lr, "data.val_size=5000", "hydra.run.dir=alone", cwd=tmp_path)  # the preset's split
    assert alone.returncode == 0, alone.stderr
    searched, trained = (json.loads((d / "metrics.json").read_text()) for d in (jobs["completed"], tmp_path / "alone"))
    assert searched["history"] == trained["history"]  # digit for digit
    before = snapshot(tmp_path / "alone")  # its schedule is as long as its epochs: more would be another schedule
    longer = run_cli("resume=alone", "trainer.epochs=4", cwd=tmp_path)
    assert longer.returncode == 2 and longer.stderr.count("\n") == 1, longer.stderr
    assert "holds a run on a cosine learning-rate schedule over its trainer.epochs=2; trainer.epochs=4" in longer.stderr
    assert snapshot(tmp_path / "alone") == before
