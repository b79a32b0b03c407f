"""Training end to end: the real command on a slice of Fashion-MNIST, its files, its curves, and that it learns."""

import json

import pytest
import torch
from helpers import run_cli, run_in_new_folder, scalars, tensorboard_plugins

from lenet_exp.loop import epoch_order, log_steps
from lenet_exp.model import LeNet
from lenet_exp.training import train

RUN = ["device=cpu", "data.download=false", "data.limit_train=2560", "data.limit_test=512", "trainer.epochs=2"]


@pytest.fixture(scope="module")
def textbook_run(tmp_path_factory):
    """One short run of the default config through `python -m lenet_exp`, in an empty folder."""
    cwd, proc = run_in_new_folder(tmp_path_factory, "user", *RUN)
    return cwd, cwd / "run", proc


def test_prints_the_shape_table_and_epoch_lines(textbook_run):
    _, _, proc = textbook_run
    out = proc.stdout + proc.stderr
    assert "Conv2d output shape:\ttorch.Size([1, 6, 28, 28])" in out
    assert "Linear output shape:\ttorch.Size([1, 10])" in out
    assert "epoch 2/2" in out and "examples/sec" in out


def test_metrics_json(textbook_run):
    _, run, _ = textbook_run
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "completed" and m["epochs_completed"] == 2 and m["device"] == "cpu"
    assert 0 < m["train_loss"] < 2.5 and 0 <= m["train_acc"] <= 1 and 0 <= m["test_acc"] <= 1
    assert m["best_test_acc"] == max(m["history"]["test_acc"]) and m["test_acc"] == m["history"]["test_acc"][-1]
    assert len(m["history"]["train_loss"]) == 2 and all(v > 0 for v in m["examples_per_sec_by_epoch"])
    # the run's speed is the steady one, after the first epoch's one-time costs; the first epoch's is kept apart
    assert m["examples_per_sec"] == pytest.approx(m["examples_per_sec_by_epoch"][1], rel=1e-12)
    assert m["first_epoch_examples_per_sec"] == m["examples_per_sec_by_epoch"][0]


def test_tensorboard_curves_have_the_expected_points(textbook_run):
    _, run, _ = textbook_run
    curves = scalars(run)
    # 2560 examples / 256 per batch = 10 steps an epoch, 5 train points an epoch, 1 test point an epoch
    assert [s for s, _ in curves["train/loss"]] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert [s for s, _ in curves["train/acc"]] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert [s for s, _ in curves["test/acc"]] == [10, 20]
    m = json.loads((run / "metrics.json").read_text())
    assert curves["test/acc"][-1][1] == pytest.approx(m["test_acc"])
    assert curves["train/loss"][-1][1] == pytest.approx(m["train_loss"])
    assert {"train/lr", "train/examples_per_sec", "test/best_acc"} <= set(curves)
    assert [v for _, v in curves["train/examples_per_sec"]] == pytest.approx(
        m["examples_per_sec_by_epoch"]
    )  # each epoch's own
    plugins = tensorboard_plugins(run)
    assert {"_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(plugins["hparams"])
    assert "_hparams_/experiment" not in plugins["hparams"]  # TensorBoard computes the experiment from all runs
    assert "model/shapes/text_summary" in plugins["tensors"]


def test_hparams_written_in_the_run_itself(textbook_run):
    _, run, _ = textbook_run
    assert sorted(p.name for p in run.iterdir() if p.is_dir()) == [".hydra", "checkpoints"]
    events = sorted(p.name for p in run.glob("events.out.tfevents.*"))
    assert len(events) == 2 and events[1].endswith(".hparams")  # the curves, and the run's HParams session on its own


def test_checkpoints_hold_final_and_best_weights(textbook_run):
    _, run, _ = textbook_run
    for name in ("final.pt", "best.pt"):
        model = LeNet(torch.nn.Sigmoid)
        model.load_state_dict(torch.load(run / "checkpoints" / name))


def test_everything_stays_in_the_run_folder(textbook_run):
    cwd, _, _ = textbook_run
    assert [p.name for p in cwd.iterdir()] == ["run"]


def test_rerun_of_a_completed_folder_does_not_retrain(textbook_run):
    cwd, run, _ = textbook_run
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and ".hydra" not in p.parts}
    proc = run_cli(*RUN, "hydra.run.dir=run", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "not retraining" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_progress_bar_shows_live_loss(make_cfg, tmp_path, capsys, fashion_mnist):
    train(make_cfg("trainer.progress=true", "trainer.epochs=1"), tmp_path, {})
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "loss=" in err and "acc=" in err


def test_learns_well_beyond_chance(make_cfg, tmp_path, fashion_mnist):
    """A probe reached 0.68-0.73 test acc with these settings; chance is 0.10."""
    cfg = make_cfg("activation=tanh", "optimizer.lr=0.3", "data.limit_train=10000", "data.limit_test=2000")
    metrics = train(cfg, tmp_path, {})
    assert metrics["status"] == "completed" and metrics["test_acc"] > 0.6


def test_log_steps_are_evenly_spaced_and_end_the_epoch():
    assert log_steps(235, 5) == {47, 94, 141, 188, 235}
    assert log_steps(236, 5) == {48, 95, 142, 189, 236}
    assert log_steps(3, 5) == {1, 2, 3}


def test_epoch_order_is_seeded_and_changes_each_epoch():
    a, b = epoch_order(100, 0, 0, torch.device("cpu")), epoch_order(100, 0, 1, torch.device("cpu"))
    assert torch.equal(a, epoch_order(100, 0, 0, torch.device("cpu"))) and not torch.equal(a, b)
    assert sorted(a.tolist()) == list(range(100))
    assert not torch.equal(a, epoch_order(100, 1, 0, torch.device("cpu")))


def test_help_lists_groups_and_console_script_matches(tmp_path):
    import shutil
    import subprocess

    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for line in (
        "activation: gelu, leaky_relu, relu, sigmoid, tanh",
        "optimizer: adam, sgd",
        "data: fashion_mnist, mnist",
        "device: auto, cpu, cuda",
    ):
        assert line in proc.stdout
    script = shutil.which("lenet-exp")
    assert script, "pip install -e . puts the lenet-exp console script on PATH"
    job = subprocess.run([script, "--cfg", "job", "optimizer.lr=0.3"], cwd=tmp_path, capture_output=True, text=True)
    assert job.returncode == 0 and "lr: 0.3" in job.stdout and "_target_: torch.optim.SGD" in job.stdout


def test_cublas_workspace_is_set_before_any_cuda_work(tmp_path):
    """cuBLAS reads CUBLAS_WORKSPACE_CONFIG once: importing lenet_exp must set it, not the first deterministic job."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    code = "import os, lenet_exp; print(os.environ.get('CUBLAS_WORKSPACE_CONFIG'))"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.stdout.strip() == ":4096:8"
