"""Sweeps through the real command: job folders, curves, the summary, divergence, resumption, launchers, Optuna."""

import csv
import json
import os
import shlex
import signal
import subprocess
import time

import pytest
import yaml
from helpers import (
    HANG,
    SYSTEM_FASHION_MNIST,
    epochs_completed,
    read_csv,
    run_cli,
    scalars,
    start_cli,
    tensorboard_plugins,
)

pytestmark = pytest.mark.slow
SWEEP = ["device=cpu", "data.download=false", "data.limit_train=2560", "data.limit_test=512", "trainer.epochs=2"]


def read_summary(sweep):
    with open(sweep / "summary.csv") as f:
        return list(csv.DictReader(f))


def hparams_of(run_dir) -> dict:
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = tensorboard_plugins(run_dir)["hparams"]["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}


@pytest.fixture(scope="module")
def grid(tmp_path_factory, fashion_mnist):
    cwd = tmp_path_factory.mktemp("grid")
    proc = run_cli(
        "--multirun", *SWEEP, "optimizer.lr=0.1,0.5", "activation=sigmoid,relu", "hydra.sweep.dir=sweep", cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr
    return cwd / "sweep", proc


def test_one_folder_per_job_named_by_its_overrides(grid):
    sweep, _ = grid
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == [
        "0_activation=sigmoid,optimizer.lr=0.1",
        "1_activation=relu,optimizer.lr=0.1",
        "2_activation=sigmoid,optimizer.lr=0.5",
        "3_activation=relu,optimizer.lr=0.5",
    ]


def test_every_job_has_its_curves_and_hparams(grid):
    sweep, _ = grid
    for job in (p for p in sweep.iterdir() if p.is_dir()):
        curves = scalars(job)
        assert len(curves["train/loss"]) == 10 and len(curves["train/acc"]) == 10 and len(curves["test/acc"]) == 2
        hp = hparams_of(job)
        activation, lr = (kv.split("=")[1] for kv in job.name.split("_", 1)[1].split(","))
        assert hp["activation"] == activation and hp["optimizer.lr"] == pytest.approx(float(lr))


def test_summary_csv_rows_best_first_match_the_jobs(grid):
    sweep, _ = grid
    rows = read_summary(sweep)
    assert list(rows[0])[:3] == ["job", "optimizer.lr", "activation"]
    assert {
        "status",
        "test_acc",
        "best_test_acc",
        "train_loss",
        "train_acc",
        "epochs_completed",
        "examples_per_sec",
        "run_dir",
    } <= set(rows[0])
    assert sorted(r["job"] for r in rows) == ["0", "1", "2", "3"]
    accs = [float(r["test_acc"]) for r in rows]
    assert accs == sorted(accs, reverse=True)
    for r in rows:
        metrics = json.loads((sweep / r["run_dir"] / "metrics.json").read_text())
        assert float(r["test_acc"]) == metrics["test_acc"] and r["status"] == "completed"
        assert r["run_dir"].startswith(f"{r['job']}_activation={r['activation']},optimizer.lr={r['optimizer.lr']}")


def test_summary_md_names_the_best_and_how_to_rerun_it(grid):
    sweep, proc = grid
    md = (sweep / "summary.md").read_text()
    best = read_summary(sweep)[0]
    assert f"Best: job {best['job']}, test acc {float(best['test_acc']):.4f}" in md
    assert f"optimizer.lr={best['optimizer.lr']} activation={best['activation']}" in md
    assert md.count("| completed") == 4 and md in proc.stdout
    assert "Summary: sweep/summary.md (summary.csv and summary.png beside it)" in proc.stdout
    png = (sweep / "summary.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_summarize_command_rebuilds_the_summary(grid, tmp_path):
    sweep, _ = grid
    (sweep / "summary.csv").unlink()
    proc = run_cli(str(sweep), module="lenet_exp.summarize", cwd=tmp_path)
    assert proc.returncode == 0 and "Best: job" in proc.stdout
    assert len(read_summary(sweep)) == 4
    assert run_cli(str(tmp_path), module="lenet_exp.summarize", cwd=tmp_path).returncode == 2  # not a sweep


def test_a_seed_sweep_one_seed_trained_on_by_hand_is_compared_like_with_like(tmp_path, fashion_mnist):
    """seed=0,1 alone: its one setting named as such; job 0 continued with resume= to 2 epochs: the setting's mean is
    at the epoch both seeds trained, and summary_by_setting.csv says so."""
    learns = ["activation=relu", "optimizer=adam", "optimizer.lr=0.003"]
    proc = run_cli("-m", *SWEEP, "trainer.epochs=1", *learns, "seed=0,1", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "sweep" / "summary.md").read_text()
    assert "The one setting (only seed swept): mean test acc" in md and md in proc.stdout
    assert "Best setting: :" not in md and "over 2 seeds" in md
    job0 = next((tmp_path / "sweep").glob("0_*"))
    assert run_cli(f"resume={job0}", "trainer.epochs=2", cwd=tmp_path).returncode == 0
    proc = run_cli("sweep", module="lenet_exp.summarize", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    accs = [
        json.loads(m.read_text())["history"]["test_acc"] for m in sorted((tmp_path / "sweep").glob("*/metrics.json"))
    ]
    assert [len(a) for a in accs] == [2, 1]
    (setting,) = read_csv(tmp_path / "sweep" / "summary_by_setting.csv")
    assert (
        setting["n"] == "2"
        and setting["epochs"] == "1"
        and setting["note"] == "seeds trained 1-2 epochs: figures after 1"
    )
    assert float(setting["test_acc_mean"]) == pytest.approx((accs[0][0] + accs[1][0]) / 2)


def test_a_job_whose_folder_turned_read_only_is_never_completed(tmp_path, fashion_mnist):
    """Rerun with more epochs while job 0's folder takes no writes: its metrics.json still says completed (1 epoch);
    the summary does not, and the sweep exits 1."""
    args = ["-m", *SWEEP, "optimizer.lr=0.1,0.3", "hydra.sweep.dir=sweep"]
    assert run_cli(*args, "trainer.epochs=1", cwd=tmp_path).returncode == 0
    job0 = next((tmp_path / "sweep").glob("0_*"))
    if subprocess.run(["mount", "--bind", job0, job0], capture_output=True).returncode:
        pytest.skip("needs bind mounts (root)")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", job0], check=True, capture_output=True)
        proc = run_cli(*args, "trainer.epochs=2", cwd=tmp_path)
    finally:
        subprocess.run(["umount", "-l", job0], capture_output=True)
    assert proc.returncode == 1 and "job 0" in proc.stderr.splitlines()[-1]
    assert json.loads((job0 / "metrics.json").read_text())["status"] == "completed"  # its own record, as it was
    rows = {r["job"]: r for r in read_summary(tmp_path / "sweep")}
    assert rows["0"]["status"] != "completed" and rows["0"]["epochs_completed"] == "1"
    assert rows["1"]["status"] == "completed" and rows["1"]["epochs_completed"] == "2"


def test_diverged_and_failed_jobs_are_recorded_and_hide_nothing(tmp_path, fashion_mnist):
    damaged = tmp_path / "damaged" / "FashionMNIST" / "raw"  # a copy with one truncated file: found, then refused
    damaged.mkdir(parents=True)
    for f in SYSTEM_FASHION_MNIST.glob("*.gz"):
        (damaged / f.name).write_bytes(f.read_bytes()[: 5000 if f.name.startswith("t10k-labels") else None])
    proc = run_cli(
        "-m",
        *SWEEP,
        "activation=relu",
        "optimizer.lr=0.1,100",
        "data.root=data,damaged",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert proc.returncode == 1 and "2 of 4 jobs failed" in proc.stderr and "Traceback" not in proc.stderr
    rows = {(r["optimizer.lr"], r["data.root"]): r for r in read_summary(tmp_path / "sweep")}
    assert rows["0.1", "data"]["status"] == "completed" and float(rows["0.1", "data"]["test_acc"]) > 0
    assert rows["100", "data"]["status"] == "diverged" and "non-finite" in rows["100", "data"]["error"]
    assert int(rows["100", "data"]["epochs_completed"]) < 2  # stopped early
    for lr in ("0.1", "100"):
        assert (
            rows[lr, "damaged"]["status"] == "failed"
            and "t10k-labels-idx1-ubyte.gz: cannot read" in rows[lr, "damaged"]["error"]
        )
    assert [r["optimizer.lr"] for r in read_summary(tmp_path / "sweep")][0] == "0.1"


def test_a_bad_value_anywhere_in_a_sweep_is_refused_before_it_starts(tmp_path):
    proc = run_cli("-m", *SWEEP, "optimizer.lr=0.1,0.3,-1", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert (
        proc.returncode == 2 and proc.stderr == "Error: optimizer.lr=-1 is not allowed: expected a finite number > 0\n"
    )
    assert not (tmp_path / "sweep").exists()


KILL_SWEEP = ["device=cpu", "data.download=false", "data.limit_train=10240", "data.limit_test=1000", "trainer.epochs=2"]


@pytest.mark.parametrize("search", [[], ["hparams_search=halving"]])
def test_a_finished_sweep_rerun_as_it_was_is_not_refused_and_retrains_nothing(tmp_path, fashion_mnist, search):
    args = ["-m", *search, *SWEEP[:-1], "trainer.epochs=1", "optimizer.lr=0.1,0.3", "hydra.sweep.dir=sweep"]
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    jobs = sorted((tmp_path / "sweep").glob("*_*/metrics.json"))
    before = [p.read_bytes() for p in jobs]
    again = run_cli(*args, cwd=tmp_path)  # the sweeper's record holds no training keys: nothing reads as changed
    assert again.returncode == 0 and "Error" not in again.stderr, again.stderr
    assert len(jobs) == 2 and [p.read_bytes() for p in jobs] == before


def test_killed_sweep_resumes_without_retraining_finished_jobs(tmp_path, fashion_mnist):
    args = ["-m", *KILL_SWEEP, "optimizer.lr=0.1,0.2,0.3,0.4", "hydra.sweep.dir=sweep"]
    sweep = tmp_path / "sweep"
    proc = start_cli(*args, cwd=tmp_path)
    deadline = time.time() + HANG
    while not any(epochs_completed(job) >= 1 for job in sweep.glob("2_*")):  # job 2 has finished its first epoch
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 128 + signal.SIGTERM

    statuses = {r["optimizer.lr"]: r["status"] for r in read_summary(sweep)}  # each job refreshes the summary
    assert statuses == {"0.1": "completed", "0.2": "completed", "0.3": "interrupted", "0.4": "not started"}
    finished = {
        p: (p.stat().st_mtime_ns, p.read_bytes())
        for job in ("0_*", "1_*")
        for d in sweep.glob(job)
        for p in d.rglob("*")
        if p.is_file() and ".hydra" not in p.parts
    }

    rerun = run_cli(*args, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.count("not retraining") == 2
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in finished} == finished
    rows = read_summary(sweep)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    resumed = next(sweep.glob("2_*"))
    steps = [s for s, _ in scalars(resumed)["train/loss"]]
    assert len(steps) == 10 and steps == sorted(set(steps))


def test_joblib_launcher_runs_jobs_in_parallel(tmp_path, fashion_mnist):
    proc = run_cli(
        "-m",
        *SWEEP,
        "activation=relu",
        "optimizer.lr=0.1,100",
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    rows = {r["optimizer.lr"]: r["status"] for r in read_summary(tmp_path / "sweep")}
    assert rows == {"0.1": "completed", "100": "diverged"}


def test_submitit_local_launcher(tmp_path, fashion_mnist):
    proc = run_cli(
        "-m",
        *SWEEP,
        "trainer.epochs=1",
        "device.threads=1",
        "optimizer.lr=0.1,0.3",
        "hydra/launcher=submitit_local",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    rows = read_summary(tmp_path / "sweep")
    assert sorted(r["optimizer.lr"] for r in rows) == ["0.1", "0.3"] and {r["status"] for r in rows} == {"completed"}
    assert (tmp_path / "sweep" / ".submitit").is_dir()


def test_optuna_search_ends_in_the_same_summary(tmp_path, fashion_mnist):
    search = ["-m", *SWEEP, "trainer.epochs=1", "hparams_search=optuna", "hydra.sweeper.n_trials=3"]
    proc = run_cli(*search, "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sweep = tmp_path / "sweep"
    rows = read_summary(sweep)
    assert len(rows) == 3
    assert list(rows[0])[1:5] == ["optimizer.lr", "activation", "optimizer", "data.batch_size"]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    done = [float(r["val_acc"]) for r in rows if r["status"] == "completed"]
    assert result["best_value"] == pytest.approx(max(done))  # the objective: validation accuracy, the preset's split
    again = run_cli(*search, "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.count("not retraining") == 3  # a seeded search draws the same trials


def test_an_optuna_search_goes_on_past_diverged_trials(tmp_path, fashion_mnist):
    """A job without a final accuracy returns 0.0, not NaN, which the Optuna sweeper cannot take."""
    proc = run_cli(
        "-m",
        *SWEEP,
        "trainer.epochs=1",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        "optimizer.lr=interval(100,200)",
        "hydra.sweeper.params.activation=relu",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    rows = read_summary(tmp_path / "sweep")
    assert len(rows) == 2 and "diverged" in {r["status"] for r in rows}
    best = max((float(r["val_acc"]) for r in rows if r["val_acc"]), default=0.0)
    assert yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())["best_value"] == best


@pytest.mark.parametrize("sig, group", [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_killed_parallel_sweep_stops_its_workers_and_resumes(tmp_path, fashion_mnist, sig, group):
    """SIGTERM to the sweep process alone, or a terminal's Ctrl-C to it and its workers at once: every worker saves
    its checkpoint and records itself interrupted (none torn down mid-save), and the summary says so."""
    args = [
        "-m",
        *KILL_SWEEP,
        "data.limit_train=20480",
        "optimizer.lr=0.1,0.3",
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
        "hydra.sweep.dir=sweep",
    ]
    sweep = tmp_path / "sweep"
    proc = start_cli(*args, cwd=tmp_path)
    deadline = time.time() + HANG
    while not any(epochs_completed(job) >= 1 for job in sweep.glob("*_optimizer.lr=*")):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    if group:
        os.killpg(proc.pid, sig)  # the sweep (its own session's leader) and its workers, as a terminal's Ctrl-C
    else:
        proc.send_signal(sig)  # only the sweep process: its workers must notice and stop
    proc.wait(60)
    assert proc.returncode == 128 + sig
    time.sleep(2)  # a worker notices within a second, then checkpoints and exits
    files = {p: p.stat().st_mtime_ns for p in sweep.rglob("*") if p.is_file()}
    time.sleep(1.5)
    assert {p: p.stat().st_mtime_ns for p in files} == files  # nothing trains on
    assert {json.loads((job / "metrics.json").read_text())["status"] for job in sweep.glob("*_optimizer.lr=*")} == {
        "interrupted"
    }
    assert all((job / "checkpoints" / "last.pt").is_file() for job in sweep.glob("*_optimizer.lr=*"))
    assert "2 jobs: 2 interrupted" in (sweep / "summary.md").read_text()
    # a stopped parallel sweep's rerun to completion: test_run_folder's killed-worker test


def test_a_stopped_sweep_says_the_command_that_continues_it_and_names_the_jobs_not_started(tmp_path, fashion_mnist):
    """A sweep stopped in a folder of its own making (multirun/<date>/<time>): its last line and its summary give the
    sweep's own command with that folder, which continues it; the summary counts the job not started too."""
    proc = start_cli("-m", *KILL_SWEEP, "seed=0,1", cwd=tmp_path)
    deadline = time.time() + HANG
    while not any(epochs_completed(job) >= 1 for job in tmp_path.glob("multirun/*/*/0_*")):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=HANG)
    assert proc.returncode == 130, out
    (sweep,) = tmp_path.glob("multirun/*/*")
    last = out.strip().splitlines()[-1]
    command = shlex.split(last.split("; continue with: ", 1)[1].removesuffix("."))
    assert command == ["python", "-m", "lenet_exp", "--multirun", *KILL_SWEEP, "seed=0,1", f"hydra.sweep.dir={sweep}"]
    md = (sweep / "summary.md").read_text()
    assert "2 jobs: 1 interrupted, 1 not started" in md and "Not started: job 1. The sweep is not finished" in md
    assert f"    {' '.join(map(shlex.quote, command))}\n" in md
    again = run_cli(*command[3:], cwd=tmp_path)  # the command it gave, as a user pastes it
    assert again.returncode == 0, again.stderr
    assert [r["status"] for r in read_summary(sweep)] == ["completed", "completed"]
    assert list(tmp_path.glob("multirun/*/*")) == [sweep] and "not finished" not in (sweep / "summary.md").read_text()


def test_a_group_s_hparam_is_its_choice_not_its_keys():
    """`scheduler=cosine` swept shows in TensorBoard's HParams as cosine, as the command wrote it."""
    from lenet_exp.config import compose_config
    from lenet_exp.jobs import hparams_of

    cfg = compose_config(["scheduler=cosine", "optimizer.lr=0.1"], with_hydra=True)
    choices = dict(cfg.hydra.runtime.choices)
    hp = hparams_of(cfg, ["scheduler=cosine", "optimizer.lr=0.1"], choices, ["scheduler", "optimizer.lr"])
    assert hp == {"scheduler": "cosine", "optimizer.lr": 0.1}
