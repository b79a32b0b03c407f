"""Run folders keep one run's true record: one process per folder, checks before any write, no stale states,
honest restarts, every key validated, signals at any moment, resume= for any folder, summaries that never lie."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import (
    HANG,
    REPO,
    epochs_completed,
    job_dirs,
    make_job,
    mount_tmpfs,
    popen,
    read_csv,
    refused,
    run_cli,
    run_in_new_folder,
    scalars,
    session_status,
    snapshot,
    start_cli,
    start_patched,
    unmount,
)

from lenet_exp import run_folder, signals
from lenet_exp.errors import FolderRefused
from lenet_exp.folders import claim_new_folder, locked
from lenet_exp.run_folder import RunFolder
from lenet_exp.signals import Interrupted, StopSignals
from lenet_exp.summarize import main as summarize_main
from lenet_exp.summary import collect

QUICK = ["device=cpu", "data.download=false", "data.limit_train=1024", "data.limit_test=256", "trainer.epochs=2"]
LONGER = ["device=cpu", "data.download=false", "data.limit_train=20000", "data.limit_test=500", "trainer.epochs=3"]


def one_line_error(proc, code: int = 2) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def done_run(tmp_path_factory, fashion_mnist):
    """A completed 2-epoch run in `<cwd>/run`."""
    return run_in_new_folder(tmp_path_factory, "done", *QUICK)[0] / "run"


# 1. One process per folder ------------------------------------------------------------------------------


def test_a_second_process_on_a_folder_in_use_is_refused_naming_the_holder(tmp_path, fashion_mnist):
    first = start_cli(*LONGER, "hydra.run.dir=run", cwd=tmp_path)
    deadline = time.time() + HANG
    while not (tmp_path / "run" / "metrics.json").exists():  # written once training starts
        assert first.poll() is None and time.time() < deadline
        time.sleep(0.05)
    second = run_cli(*LONGER, "hydra.run.dir=run", cwd=tmp_path)
    line = one_line_error(second)
    assert f"run is in use by process {first.pid} (" in line and "lenet_exp" in line
    assert first.wait(120) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == 3
    steps = [s for s, _ in scalars(tmp_path / "run")["train/loss"]]
    assert steps == sorted(set(steps)) and len(steps) == 15  # one writer: no mixed curves


def test_runs_started_together_get_folders_of_their_own(tmp_path, fashion_mnist):
    procs = [start_cli(*QUICK, "trainer.epochs=1", cwd=tmp_path) for _ in range(2)]
    assert [p.wait(120) for p in procs] == [0, 0]
    runs = sorted(p.parent for p in tmp_path.glob("outputs/*/*/metrics.json"))
    assert len(runs) == 2
    for run in runs:
        assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
        assert len(scalars(run)["train/loss"]) == 4  # 4 steps, one point each


def test_two_commands_on_one_new_folder_one_trains_and_nothing_of_it_is_removed(tmp_path, fashion_mnist):
    """Started together on the same new hydra.run.dir: one trains; the other is refused (in use) or, coming after,
    finds it done; the refused one removes nothing the other holds."""
    for attempt in range(2):
        procs = [start_cli(*QUICK, "trainer.epochs=1", f"hydra.run.dir=run{attempt}", cwd=tmp_path) for _ in range(2)]
        outputs = [p.communicate(timeout=HANG)[0] for p in procs]
        codes = sorted(p.returncode for p in procs)
        assert codes in ([0, 0], [0, 2]), outputs
        assert sum("Done: 1 epoch" in out for out in outputs) == 1, outputs
        assert not any("No such file or directory" in out for out in outputs), outputs
        metrics = json.loads((tmp_path / f"run{attempt}" / "metrics.json").read_text())
        assert metrics["status"] == "completed" and metrics["epochs_completed"] == 1


def test_a_taken_default_folder_gets_a_suffix(tmp_path):
    assert claim_new_folder(tmp_path / "12-00-00") == tmp_path / "12-00-00"
    assert claim_new_folder(tmp_path / "12-00-00") == tmp_path / "12-00-00-2"
    assert claim_new_folder(tmp_path / "12-00-00") == tmp_path / "12-00-00-3"


HOLD = (
    "import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDONLY)\nfcntl.flock(fd, fcntl.LOCK_EX)\n"
    "print('held', flush=True)\ntime.sleep(60)\n"
)


def test_the_lock_is_the_kernels_and_dies_with_its_process(tmp_path):
    holder = popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    assert run_folder.in_use(tmp_path)
    with pytest.raises(FolderRefused, match=f"is in use by process {holder.pid}"):
        with locked(tmp_path):
            pass
    holder.kill()
    holder.wait()
    assert not run_folder.in_use(tmp_path)
    with locked(tmp_path):
        assert run_folder.in_use(tmp_path)


# 2. Check before writing -----------------------------------------------------------------------------------

REFUSED_RERUNS = {
    "other settings": (["optimizer.lr=0.3"], "holds a run with other settings (optimizer.lr=0.9 there, 0.3 now)"),
    "fewer epochs": (
        ["trainer.epochs=1"],
        "has trained 2 epochs already (status completed); trainer.epochs=1 asks for fewer. "
        "Give trainer.epochs=3 or more",
    ),
    "bf16 on resume": (["device.amp=true"], "holds a run with other settings (device.amp=false there, true now)"),
    "compile on resume": (["device.compile=true"], "(device.compile=false there, true now)"),
}


@pytest.mark.parametrize("case", REFUSED_RERUNS)
def test_a_refused_rerun_leaves_every_file_as_it_was(done_run, case):
    extra, message = REFUSED_RERUNS[case]
    before = snapshot(done_run)
    proc = run_cli(*QUICK, *extra, f"hydra.run.dir={done_run}", cwd=done_run.parent)
    assert message in one_line_error(proc)
    assert snapshot(done_run) == before  # bytes and times: .hydra/ included


def test_after_the_refusals_the_record_still_describes_the_run(done_run):
    again = run_cli(f"resume={done_run}", cwd=done_run.parent)  # resume= takes the folder as it was
    assert again.returncode == 0 and "already holds this run, completed" in again.stdout


def test_folder_paths_that_cannot_hold_a_run_are_refused(tmp_path):
    (tmp_path / "a_file").write_text("keep me")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "notes.txt").write_text("mine")
    cases = {
        "hydra.run.dir=a_file": "hydra.run.dir=a_file: is a file, not a folder",
        "hydra.run.dir=a_file/run": "hydra.run.dir=a_file/run: a_file is a file, so no folder can be made under it",
        "hydra.run.dir=project": "project holds other files (notes.txt), not a run",
    }
    for override, message in cases.items():
        proc = run_cli(*QUICK, override, cwd=tmp_path)
        assert message in one_line_error(proc), override
    sweep = run_cli("-m", *QUICK, "optimizer.lr=0.1,0.3", "hydra.sweep.dir=a_file", cwd=tmp_path)
    assert "hydra.sweep.dir=a_file: is a file, not a folder" in one_line_error(sweep)
    assert (tmp_path / "a_file").read_text() == "keep me" and (tmp_path / "project" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "project"]


def test_a_read_only_folder_is_refused_before_anything_starts(tmp_path):
    ro = tmp_path / "ro"
    if os.geteuid() == 0:
        if not mount_tmpfs(ro, "1m", read_only=True):
            pytest.skip("this machine allows no mount, and root writes anywhere else")
    else:
        ro.mkdir()
        ro.chmod(0o555)
    try:
        proc = run_cli(*QUICK, "hydra.run.dir=ro/run", cwd=tmp_path)
        assert "hydra.run.dir=ro/run: ro is not writable here" in one_line_error(proc)
    finally:
        unmount(ro) if os.geteuid() == 0 else ro.chmod(0o755)


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory, fashion_mnist):
    cwd = tmp_path_factory.mktemp("sweep")
    args = [
        "-m",
        "device=cpu",
        "data.download=false",
        "data.limit_train=512",
        "data.limit_test=256",
        "trainer.epochs=1",
        "optimizer.lr=0.1,0.3",
        "hydra.sweep.dir=sweep",
    ]
    proc = run_cli(*args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd, args


SWEEP_CHANGES = {
    "a fixed setting": (["optimizer.momentum=0.5"], "holds a sweep of other settings (optimizer.momentum=0.5 is new)"),
    "the swept values": (["optimizer.lr=0.1,0.2"], "(optimizer.lr=0.1,0.2 where it has optimizer.lr=0.1,0.3)"),
    "the sweeper": (["hparams_search=optuna"], "holds a sweep of other settings (hparams_search=optuna is new)"),
    "a swept data root": (["data.root=data,other"], "holds a sweep of other settings (data.root=data,other is new)"),
}


@pytest.mark.parametrize("change", SWEEP_CHANGES)
def test_a_sweep_folder_refuses_a_sweep_of_other_settings_untouched(small_sweep, change):
    cwd, args = small_sweep
    extra, message = SWEEP_CHANGES[change]
    keys = {e.split("=")[0] for e in extra}
    before = snapshot(cwd / "sweep")
    proc = run_cli(*[a for a in args if a.split("=")[0] not in keys], *extra, cwd=cwd)
    line = one_line_error(proc)
    assert (
        message in line
        and "rerun it as it was (device=cpu data.download=false" in line
        and "trainer.epochs=1 optimizer.lr=0.1,0.3)" in line
    )
    assert snapshot(cwd / "sweep") == before  # multirun.yaml and every job's .hydra/ included


def test_the_same_sweep_again_trains_nothing_and_its_job_folders_resume(small_sweep):
    cwd, args = small_sweep
    again = run_cli(*args, cwd=cwd)
    assert again.returncode == 0 and again.stdout.count("not retraining") == 2
    job = cwd / "sweep" / "1_optimizer.lr=0.3"  # '=' and ',' in the name
    longer = run_cli(f"resume={job}", "trainer.epochs=2", cwd=cwd)
    assert longer.returncode == 0, longer.stderr
    assert "Resuming in" in longer.stdout + longer.stderr and epochs_completed(job) == 2
    assert [s for s, _ in scalars(job)["test/acc"]] == [2, 4]  # continued: 2 steps an epoch, no repeats


def test_a_sweep_rerun_with_fewer_epochs_than_trained_is_refused(small_sweep):
    cwd, args = small_sweep  # job 1 trained on to 2 epochs above
    before = snapshot(cwd / "sweep")
    proc = run_cli(*args, cwd=cwd)
    assert "holds jobs trained for 2 epochs already; trainer.epochs=1 asks for fewer" in one_line_error(proc)
    assert snapshot(cwd / "sweep") == before


def test_a_single_run_and_a_sweep_do_not_share_a_folder(small_sweep, done_run):
    cwd, args = small_sweep
    as_run = run_cli(*QUICK, "hydra.run.dir=sweep", cwd=cwd)
    assert "sweep holds a sweep, not a single run" in one_line_error(as_run)
    as_sweep = run_cli("-m", *QUICK, "optimizer.lr=0.1,0.3", f"hydra.sweep.dir={done_run}", cwd=cwd)
    assert "holds a single run, not a sweep" in one_line_error(as_sweep)


# 3. No stale states ----------------------------------------------------------------------------------------


def test_a_full_disk_ends_failed_in_one_line(tmp_path, fashion_mnist):
    disk = tmp_path / "disk"
    if os.geteuid() != 0 or not mount_tmpfs(disk, "400k"):
        pytest.skip("needs root and tmpfs to make a small full disk")
    try:
        proc = run_cli(*QUICK, "hydra.run.dir=disk/run", cwd=tmp_path)
        line = one_line_error(proc, code=1)
        assert line.endswith("No space left on device") and "disk/run/checkpoints/" in line
        metrics = json.loads((disk / "run" / "metrics.json").read_text())
        assert metrics["status"] == "failed" and "No space left on device" in metrics["error"]
        assert "run failed: OSError" in (disk / "run" / "train.log").read_text()
        subprocess.run(
            ["mount", "-o", "remount,size=4m", str(disk)], check=True
        )  # space again: the same command starts over
        again = run_cli(*QUICK, "hydra.run.dir=disk/run", cwd=tmp_path)
        assert again.returncode == 0 and "left no checkpoint (status failed): starting over" in again.stdout
    finally:
        unmount(disk)


BUG = (
    "import lenet_exp.loop as t\ndef broken(*a, **k):\n    raise RuntimeError('a bug in evaluate')\n"
    "t.evaluate = broken\n"
)


def test_a_bug_after_training_starts_leaves_failed_with_the_reason(tmp_path, fashion_mnist):
    proc = start_patched(BUG, *QUICK, "hydra.run.dir=run", cwd=tmp_path)
    out, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 1 and "Traceback" in err  # a bug keeps its traceback for the report
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["error"] == "RuntimeError: a bug in evaluate"
    assert "run failed: RuntimeError: a bug in evaluate" in (tmp_path / "run" / "train.log").read_text()


def test_a_killed_run_never_shows_as_running(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "running", "epochs_completed": 1}))
    holder = popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    assert RunFolder(tmp_path).live_metrics()["status"] == "running"  # its process is alive
    holder.kill()  # SIGKILL: no handler runs, metrics.json still says running
    holder.wait()
    shown = RunFolder(tmp_path).live_metrics()
    assert shown["status"] == "interrupted" and "killed?" in shown["error"]


# 4. Honest restarts ----------------------------------------------------------------------------------------


def test_a_record_without_last_pt_is_refused_not_silently_retrained(done_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(done_run, copy)
    (copy / "checkpoints" / "last.pt").unlink()
    before = snapshot(copy)
    same = run_cli(*QUICK, f"hydra.run.dir={copy}", cwd=tmp_path)  # finished: nothing to continue
    assert same.returncode == 0 and "already holds this run, completed" in same.stdout
    longer = run_cli(*QUICK, "trainer.epochs=3", f"hydra.run.dir={copy}", cwd=tmp_path)
    line = one_line_error(longer)
    assert "holds a run trained for 2 epochs (status completed) but no checkpoints/last.pt to continue from" in line
    assert "restore that file to continue, or move the folder away" in line
    assert snapshot(copy) == before


@pytest.mark.parametrize("damage", ["metrics.json removed", "metrics.json garbled", "metrics.json a list"])
def test_trained_weights_without_last_pt_are_never_retrained_over(done_run, tmp_path, damage):
    copy = tmp_path / "copy"
    shutil.copytree(done_run, copy)
    (copy / "checkpoints" / "last.pt").unlink()
    metrics = copy / "metrics.json"
    metrics.unlink() if damage.endswith("removed") else metrics.write_text(
        '{"status": "comp' if damage.endswith("garbled") else "[1, 2]"
    )
    before = snapshot(copy)
    line = one_line_error(run_cli(f"resume={copy}", cwd=tmp_path))
    assert "move the folder away (or choose a new output folder) to start over" in line
    assert snapshot(copy) == before


def test_a_run_killed_before_its_first_checkpoint_starts_over_and_says_so(tmp_path, fashion_mnist):
    args = [*LONGER, "data.limit_train=40960", "trainer.epochs=1", "hydra.run.dir=run"]
    proc = start_cli(*args, cwd=tmp_path)
    deadline = time.time() + HANG
    while not (tmp_path / "run" / "metrics.json").exists():  # written as training starts
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.6)  # into epoch 1, which takes a few seconds on 2 cores
    proc.kill()
    proc.wait()
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    rerun = run_cli(*args, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "left no checkpoint (status running): starting over" in rerun.stdout
    steps = [s for s, _ in scalars(tmp_path / "run")["train/loss"]]
    assert len(steps) == 5 and steps == sorted(set(steps))  # the killed try's points are replaced, not repeated


# 5. Validation that covers every key ------------------------------------------------------------------------

BAD_VALUES = {
    "model.num_classes=5": "model.num_classes=5 cannot fit fashion_mnist: its labels are 0-9, so expected >= 10",
    "model.in_channels=3": "model.in_channels=3 does not fit fashion_mnist (1x28x28 images): expected 1",
    "model.image_size=32": "model.image_size=32 does not fit fashion_mnist (1x28x28 images): expected 28",
    "model.conv_channels=[]": "model.conv_channels=[] is not allowed: expected a non-empty list of integers >= 1",
    "model.hidden=[120,-5]": "model.hidden=[120, -5] is not allowed: expected a list of integers >= 1",
    "model.kernel_size=0": "model.kernel_size=0 is not allowed: expected an integer >= 1",
    "model.padding=-1": "model.padding=-1 is not allowed: expected an integer >= 0",
    "model.init=ones": "model.init='ones' is not allowed: expected one of xavier_uniform, kaiming_uniform, default",
    "seed=4294967296": "seed=4294967296 is not allowed: expected an integer in [0, 2**32)",
    "optimizer.lr=inf": "optimizer.lr=inf is not allowed: expected a finite number > 0",
    "optimizer.weight_decay=nan": "optimizer.weight_decay=nan is not allowed",
    "optimizer=adam optimizer.betas=[0.9,1.5]": (
        "optimizer.betas=[0.9, 1.5] is not allowed: expected two numbers in [0, 1)"
    ),
    "device.threads=100000": (
        "device.threads=100000 is not allowed: expected null (torch's default) or an integer >= 1 <= 256"
    ),
    "trainer.log_points=1.5": "trainer.log_points=1.5 is not allowed: expected an integer >= 1",
    "data.root=a_file": "data.root=a_file: is a file, not a folder",
    "data=mnist data.root=a_file/sub": "data.root=a_file/sub: a_file is a file, so no folder can be made under it",
    "+sed=5": "+sed=5: nothing reads sed, so it would be ignored. Did you mean seed?",
    "~model": "~model: lenet_exp reads model; set another value (or option) instead of removing it",
    "~optimizer.lr": "~optimizer.lr: lenet_exp reads optimizer.lr",
    "seed=1,2": "seed=1,2: several values need --multirun: python -m lenet_exp --multirun",
    "--multirun optimizer.lr=interval(0.1,1)": (
        "optimizer.lr=interval(0.1,1): a search space needs a search sweeper (hparams_search=optuna)"
    ),
    "--multirun seed=1,2 hydra.sweep.subdir=../../out": (
        "hydra.sweep.subdir=../../out: job folders must stay inside the sweep folder"
    ),
    "--multirun model.kernel_size=5,30": "model: a 28x28 input shrinks to nothing after conv 2",
    "+optimizer.nesterov=true": "optimizer: Nesterov momentum requires a momentum and zero dampening",
    "optimizer=adam +optimizer.capturable=true": "optimizer cannot take a step with these settings: If capturable=True",
    "hydra.run.dir=${oc.env:NO_SUCH_VARIABLE}": "hydra.run.dir: cannot be resolved",
    "resume=x${y}": (
        "hydra.run.dir=x${y}: a folder name holding '${' would be read as an interpolation by Hydra; rename the folder"
    ),
    "hydra.run.dir=dangling": "hydra.run.dir=dangling: is a broken link (it points to nothing)",
    "hydra.run.dir=/proc/lenet_exp_run": (
        "hydra.run.dir=/proc/lenet_exp_run: cannot write there (No such file or directory)"
    ),
    "+optimizer.dampening=abc": (  # even where momentum 0 never reads it
        "optimizer.dampening='abc' is not allowed: expected a number"
    ),
    "optimizer=adam +optimizer.amsgrad=maybe": "optimizer.amsgrad='maybe' is not allowed: expected true or false",
    "hparams_search=optuna": "hparams_search=optuna searches over a sweep: add --multirun",
    "--multirun hparams_search=optuna hydra.sweeper.n_trials=0": (
        "hydra.sweeper.n_trials=0 is not allowed: expected an integer >= 1"
    ),
    "--multirun seed=1,2 hydra/launcher=parallel hydra.launcher.n_jobs=0": "hydra.launcher.n_jobs=0 is not allowed",
    "--multirun seed=1,2 hydra.sweeper.max_batch_size=1,2": (
        "hydra.sweeper.max_batch_size=1,2: hydra.sweeper.max_batch_size is a setting of the sweep itself"
    ),
    "--multirun hydra.sweeper.params.optimizer.lr=0.1,0.2": (
        "hydra.sweeper.params.optimizer.lr=0.1: no such part of Hydra's config with this sweeper and launcher"
    ),
    "--multirun seed=1,2 hydra/launcher=fused hydra.launcher.max_models=0": (
        "hydra.launcher.max_models=0 is not allowed: expected an integer >= 1"
    ),
    "--multirun hparams_search=halving optimizer.lr=interval(0.01,0.1)": (
        "hparams_search=halving halves a grid (lists, range(...), choice(...))"
    ),
    "hparams_search=null": (
        "hparams_search=null: a group takes one of its options (exercises, halving, lenet_best, lenet_ranged, optuna, "
        "ranged); leave hparams_search out for its default"
    ),
    "--multirun hydra/sweeper=halving optimizer.lr=0.1,0.3": (
        "hydra/sweeper=halving: choose it through its preset, hparams_search=halving"
    ),
    "--multirun seed=1,2 hydra/launcher=bogus": (
        "Could not find 'hydra/launcher/bogus' Available options in 'hydra/launcher': basic, fused, fused_slurm, joblib"
    ),
    "--multirun seed=1,2 hydra.sweep.subdir=same": "hydra.sweep.subdir=same: every job needs a folder of its own",
    "--multirun seed=range(0,0)": "seed=range(0,0): this sweep has no values",
    "--multirun seed=1,2 hydra.sweep.subdir=j/${hydra.job.num}": (
        "hydra.sweep.subdir=j/${hydra.job.num}: a job's folder is one name inside the sweep folder"
    ),
    "scheduler=onecycle optimizer=adam optimizer.lr=1e30 scheduler.div_factor=1e-8": (
        "optimizer cannot take a step with these settings (onecycle's start rate, 1e+38)"
    ),
    "--cfg job --multirun seed=1,2": "--cfg prints one composed config: drop --multirun",
    "scheduler=onecycle scheduler.div_factor=1e-300": (
        "scheduler.div_factor=1e-300: onecycle starts at a learning rate of 9e+299 (optimizer.lr=0.9), outside what a "
        "training step can take"
    ),
    "scheduler=onecycle scheduler.final_div_factor=1e-300": "scheduler.final_div_factor=1e-300: onecycle ends at",
    "scheduler=onecycle scheduler.final_div_factor=1e300": "onecycle ends at a learning rate of 3.6e-302",
    "--multirun data.val_size=0,1000": (
        "data.val_size: this sweep holds out a validation split for some jobs (1000) and none for others (0)"
    ),
    "--multirun hparams_search=halving data.val_size=0,1000 optimizer.lr=0.1,0.3": "data.val_size: this sweep holds",
    "--multirun hparams_search=halving scheduler=cosine scheduler.epochs=2 hydra.sweeper.max_epochs=3 seed=0,1": (
        "scheduler.epochs=2 ends the learning-rate schedule before the search's last rung (3 epochs)"
    ),
    "--multirun hparams_search=halving scheduler=cosine scheduler.epochs=9,2 hydra.sweeper.max_epochs=9 seed=0,1": (
        "scheduler.epochs=2 ends the learning-rate schedule before the search's last rung (9 epochs)"
    ),
    "-cn config ~optimizer.lr": "~optimizer.lr: lenet_exp reads optimizer.lr",
}


@pytest.fixture(scope="module")
def bad_value_runs(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("bad_values")
    (cwd / "a_file").write_text("x")
    (cwd / "dangling").symlink_to(cwd / "nowhere")
    (cwd / "x${y}" / ".hydra").mkdir(parents=True)  # a run folder whose name Hydra would read as an interpolation
    (cwd / "x${y}" / ".hydra" / "overrides.yaml").write_text("[]")
    (cwd / "x${y}" / ".hydra" / "config.yaml").write_text("{}")
    own_folder = lambda arg: "dir=" in arg or arg.startswith("resume=")  # noqa: E731
    procs = [  # through the command's own checks, in this process: each is refused before Hydra starts
        refused(
            *([] if arg.startswith("resume=") else QUICK),
            *arg.split(),
            *([] if own_folder(arg) else [f"hydra.run.dir=run{i}"]),
            cwd=cwd,
        )
        for i, arg in enumerate(BAD_VALUES)
    ]
    return cwd, dict(zip(BAD_VALUES, procs))


@pytest.mark.parametrize("override", BAD_VALUES)
def test_values_that_cannot_work_are_refused_before_anything_is_written(bad_value_runs, override):
    cwd, procs = bad_value_runs
    assert BAD_VALUES[override] in one_line_error(procs[override])
    assert sorted(p.name for p in cwd.iterdir()) == [
        "a_file",
        "dangling",
        "x${y}",
    ]  # no run folder, no empty outputs/ or multirun/


def test_a_model_that_cannot_be_built_is_refused_and_leaves_no_folder(tmp_path):
    proc = run_cli(*QUICK, "model.kernel_size=13", "hydra.run.dir=run", cwd=tmp_path)
    assert "a 28x28 input shrinks to nothing after conv 2" in one_line_error(proc)
    assert list(tmp_path.iterdir()) == []


def test_the_bench_goes_through_the_same_checks(tmp_path):
    proc = run_cli("model.num_classes=5", cwd=tmp_path, module="lenet_exp.bench", timeout=HANG)
    assert "model.num_classes=5 cannot fit fashion_mnist" in one_line_error(proc)


# 6. Signals ----------------------------------------------------------------------------------------------


def test_log_points_beyond_the_steps_of_an_epoch_cost_nothing():
    from lenet_exp.loop import log_steps

    assert log_steps(3, 10**10) == {1, 2, 3}  # at once, not a loop over ten billion points


def test_a_signal_while_files_are_written_before_training_waits_for_them(monkeypatch):
    monkeypatch.setattr(signals, "ECHO_S", 0.0)  # the second signal here is the user's own, not an echo
    with StopSignals() as stop:
        with stop.writing():  # the .hydra/ record, before training
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)
        assert stop.signum == signal.SIGTERM  # noted, not raised mid-write
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGTERM)  # outside a write, before training: stop at once
            time.sleep(0.01)
        stop.signum = None  # handled here: none is left pending for the block's end


def test_a_second_signal_waits_for_the_write_and_stops_at_once_otherwise(monkeypatch):
    monkeypatch.setattr(signals, "ECHO_S", 0.0)
    with StopSignals() as stop:
        stop.training = True
        with stop.writing():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C while the checkpoint is written: it finishes
            time.sleep(0.01)
        assert stop.signum == signal.SIGINT
        with pytest.raises(Interrupted) as hard:
            os.kill(os.getpid(), signal.SIGINT)  # a second one between steps: stop now
            time.sleep(0.01)
        stop.signum = None  # handled here: none is left pending for the block's end
        assert not hard.value.saved


def test_the_same_signal_again_at_once_is_an_echo_of_the_first_not_a_hurried_second():
    """A terminal's Ctrl-C reaches a worker both from the terminal and from its sweep passing it on: one stop, saved."""
    with StopSignals() as stop:
        stop.training = True
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # the echo, well inside ECHO_S
        time.sleep(0.01)
        assert stop.signum == signal.SIGINT  # flagged for the loop's save, not raised
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGTERM)  # another signal is a second stop: at once
            time.sleep(0.01)
        stop.signum = None


SLOW_LOAD = (
    "import time, lenet_exp.data as t\nload = t.load_dataset\n"
    "def slow(*a):\n    print('loading', flush=True)\n    time.sleep(30)\n    return load(*a)\nt.load_dataset = slow\n"
)


SLOW_CHECK = (
    "import time, lenet_exp.training as t\ncheck = t.check_trainable\n"
    "def slow(*a):\n    print('checking', flush=True)\n    time.sleep(30)\n    return check(*a)\nt.check_trainable = "
    "slow\n"
)


def test_ctrl_c_during_a_sweep_jobs_checks_stops_the_sweep_and_fails_nothing(tmp_path):
    """The stop is no error: no `except Exception` on the way (the checks have several) may record it as one."""
    proc = start_patched(
        SLOW_CHECK, "--multirun", *QUICK, "optimizer.lr=0.1,0.3", "hydra.sweep.dir=sweep", cwd=tmp_path
    )
    while "checking" not in proc.stdout.readline():
        assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 130 and "Interrupted by SIGINT: before training started; nothing was written" in err
    assert not list((tmp_path / "sweep").glob("*/metrics.json"))  # job 0 not failed, job 1 never started


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_data_loads_ends_in_one_line(tmp_path, sig):
    proc = start_patched(SLOW_LOAD, *QUICK, "hydra.run.dir=run", cwd=tmp_path)
    assert proc.stdout.readline() == "loading\n"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 128 + sig
    assert err == f"Interrupted by {signal.Signals(sig).name}: before training started; nothing was written\n"
    assert not (tmp_path / "run").exists()


# 7. resume= for any folder ---------------------------------------------------------------------------------


def test_resume_takes_a_folder_with_commas_equals_and_non_ascii(tmp_path, fashion_mnist):
    name = "runs/ü 日本,a=b"
    first = run_cli(*QUICK, "trainer.epochs=1", f"hydra.run.dir='{name}'", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    again = run_cli(f"resume={name}", "trainer.epochs=2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert epochs_completed(tmp_path / name) == 2 and [p.name for p in (tmp_path / "runs").iterdir()] == ["ü 日本,a=b"]


# 8. Summaries ----------------------------------------------------------------------------------------------


def test_summary_marks_unreadable_jobs_and_ranks_completed_first(tmp_path):
    make_job(
        tmp_path,
        "0_optimizer.lr=0.1",
        ["optimizer.lr=0.1"],
        {"status": "completed", "test_acc": 0.7, "epochs_completed": 2},
    )
    make_job(
        tmp_path,
        "1_optimizer.lr=0.2",
        ["optimizer.lr=0.2"],
        {"status": "interrupted", "test_acc": 0.9, "epochs_completed": 1},
    )
    make_job(tmp_path, "2_optimizer.lr=0.3", ["optimizer.lr=0.3"], '{"status": "compl')
    make_job(tmp_path, "3_optimizer.lr=0.4", "[unclosed", {"status": "completed", "test_acc": 0.8})
    make_job(
        tmp_path,
        "4_optimizer.lr=0.5",
        ["optimizer.lr=0.5"],
        {"status": "running", "test_acc": 0.95, "epochs_completed": 1},
    )
    rows = collect(tmp_path).rows
    assert [(r["job"], r["status"]) for r in rows] == [
        (0, "completed"),
        (4, "interrupted"),
        (1, "interrupted"),
        (2, "unreadable"),
        (3, "unreadable"),
    ]
    assert rows[3]["error"].startswith("metrics.json: ") and rows[4]["error"].startswith(".hydra/overrides.yaml: ")
    assert summarize_main([str(tmp_path)]) == 0
    md = (tmp_path / "summary.md").read_text()
    assert (
        "Best: job 0, test acc 0.7000" in md
        and "| unreadable |" in md
        and (tmp_path / "summary.png").stat().st_size > 0
    )


def test_a_refused_job_without_files_of_its_own_still_has_its_row(tmp_path):
    make_job(tmp_path, "0_optimizer.lr=0.1", ["optimizer.lr=0.1"], {"status": "completed", "test_acc": 0.7})
    (tmp_path / "1_optimizer.lr=0.3").mkdir()  # another process held it before anything was written
    note = {
        "run_dir": "1_optimizer.lr=0.3",
        "reason": "in use by process 7",
        "overrides": ["optimizer.lr=0.3"],
        "metrics_mtime": None,
    }
    (tmp_path / ".refused").write_text(json.dumps(note) + "\n")
    rows = {r["job"]: r for r in collect(tmp_path).rows}
    assert (
        rows[1]["status"] == "refused"
        and rows[1]["error"] == "in use by process 7"
        and rows[1]["overrides"] == {"optimizer.lr": "0.3"}
    )


def test_a_pipe_for_metrics_json_is_unreadable_not_waited_on(tmp_path):
    make_job(tmp_path, "0_optimizer.lr=0.1", ["optimizer.lr=0.1"], None)
    os.mkfifo(tmp_path / "0_optimizer.lr=0.1" / "metrics.json")
    row = collect(tmp_path).rows[0]
    assert row["status"] == "unreadable" and row["error"] == "metrics.json: not a regular file"


def test_summary_survives_damaged_sweep_files(tmp_path):
    make_job(
        tmp_path,
        "0_optimizer.lr=0.1",
        ["optimizer.lr=0.1"],
        {"status": "completed", "test_acc": 0.7, "history": {"test_acc": [0.7]}},
    )
    make_job(
        tmp_path,
        "1_optimizer.lr=0.2",
        ["optimizer.lr=0.2"],
        {"status": "completed", "test_acc": 0.8, "examples_per_sec": "fast"},
    )
    make_job(
        tmp_path,
        "2_optimizer.lr=0.3",
        ["optimizer.lr=0.3"],
        {"status": "completed", "test_acc": 0.9, "history": {"test_acc": 5}},
    )
    make_job(tmp_path, "3_optimizer.lr=0.4", ["optimizer.lr=0.4"], None)
    with open(tmp_path / "3_optimizer.lr=0.4" / "metrics.json", "wb") as f:
        f.truncate(17 << 20)  # far larger than any metrics.json: not read whole
    (tmp_path / "multirun.yaml").write_text(": [")
    assert summarize_main([str(tmp_path)]) == 0
    rows = {r["job"]: r for r in collect(tmp_path).rows}
    assert rows[0]["status"] == "completed" and {rows[j]["status"] for j in (1, 2, 3)} == {"unreadable"}
    assert "examples_per_sec is 'fast'" in rows[1]["error"] and "larger than 16 MB" in rows[3]["error"]


@pytest.mark.parametrize(
    "arg,message",
    [("nowhere", "Error: nowhere: no such folder"), ("a_file", "Error: a_file: is a file, not a sweep folder")],
)
def test_summarize_names_a_missing_folder_in_one_line(tmp_path, arg, message):
    (tmp_path / "a_file").write_text("x")
    proc = run_cli(arg, module="lenet_exp.summarize", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == message


@pytest.fixture(autouse=True)
def _no_deterministic_leak():
    yield
    torch.use_deterministic_algorithms(False)


# 7. Folders written by earlier versions -----------------------------------------------------------------------


def test_a_run_folder_written_before_the_one_house_change_resumes(tmp_path, fashion_mnist):
    """tests/data/run_before_one_house: a 1-epoch run written by the version before the run folder object and the
    config schema; asked for a second epoch, it continues from its own last.pt and keeps its first epoch's figures."""
    old = REPO / "tests" / "data" / "run_before_one_house"
    run = shutil.copytree(old, tmp_path / "run")
    before = json.loads((old / "metrics.json").read_text())
    proc = run_cli(f"resume={run}", "trainer.epochs=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Resuming in" in proc.stdout + proc.stderr
    after = json.loads((run / "metrics.json").read_text())
    assert after["status"] == "completed" and after["epochs_completed"] == 2
    assert after["history"]["test_acc"][0] == before["history"]["test_acc"][0]
    assert after["steps_completed"] == 2 * before["steps_completed"]


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"status": "completed", "test_acc": Infinity}',
        '{"status": "x", "test_acc": NaN}',
    ],
)
def test_a_metrics_json_no_run_writes_is_a_damaged_record_not_a_traceback(tmp_path, text):
    """Nested past the parser's depth, or figures no run writes (a run writes null for a non-finite figure)."""
    (tmp_path / "metrics.json").write_text(text)
    with pytest.raises(run_folder.DamagedRecord, match="metrics.json"):
        RunFolder(tmp_path).metrics()


# 5. Records that stay true at the edges ----------------------------------------------------------------------


def hparams_session(run_dir) -> tuple[dict, str]:
    """The run's HParams session as TensorBoard reads it: its hparams (name -> value as written) and its end status."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    end = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_end_info"])
    hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.session_start_info.hparams.items()}
    return hparams, api_pb2.Status.Name(end.session_end_info.status)


@pytest.fixture(scope="module")
def halving(tmp_path_factory, fashion_mnist):
    """A halving search of two settings over rungs of 1 and 3 epochs: job 1 pruned after 1 epoch."""
    cwd = tmp_path_factory.mktemp("halving")
    args = ["-m", "hparams_search=halving", "optimizer.lr=0.9,0.1", *QUICK[:-1], "trainer.epochs=3"]
    proc = run_cli(*args, "hydra.sweep.dir=sweep", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    jobs = {json.loads((p / "metrics.json").read_text())["status"]: p for p in (cwd / "sweep").iterdir() if p.is_dir()}
    assert set(jobs) == {"completed", "pruned"}
    return cwd, jobs


def test_hparams_status_agrees_with_metrics_json_and_holds_only_the_swept_keys(halving):
    """Pruned (by the search, after the run ended) is not a success, and says at which rung; a rung's trainer.epochs
    is not swept."""
    _, jobs = halving
    completed, pruned = hparams_session(jobs["completed"]), hparams_session(jobs["pruned"])
    assert set(completed[0]) == set(pruned[0]) == {"optimizer.lr", "status"}
    assert completed[0]["status"].startswith("completed") and completed[1] == "STATUS_SUCCESS"
    assert pruned[0]["status"].startswith("pruned at rung 1 of 2") and pruned[1] == "STATUS_UNKNOWN"


@pytest.mark.parametrize("extra", [[], ["trainer.epochs=1"]])
def test_a_pruned_job_asked_for_no_more_epochs_changes_nothing_and_says_how_to_continue(halving, extra):
    cwd, jobs = halving
    before = snapshot(cwd / "sweep")
    proc = run_cli(f"resume={jobs['pruned']}", *extra, cwd=cwd)
    assert proc.returncode == 0 and "Resuming" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.stdout.strip().splitlines() == [
        f"{jobs['pruned']} already holds this run, pruned by its search after rung 1 of 2 (1 epoch): val acc "
        f"{json.loads((jobs['pruned'] / 'metrics.json').read_text())['val_acc']:.4f}, ranked 2 of 2: not retraining; "
        "give trainer.epochs=2 or more to continue it"
    ]
    assert snapshot(cwd / "sweep") == before  # bytes and times: metrics.json, .hydra/, no final.pt


def test_a_pruned_job_continued_is_completed_in_its_record_and_in_tensorboard(halving, tmp_path):
    cwd, jobs = halving
    job = shutil.copytree(jobs["pruned"], tmp_path / jobs["pruned"].name)
    proc = run_cli(f"resume={job}", "trainer.epochs=2", cwd=cwd)
    assert proc.returncode == 0 and "Resuming in" in proc.stdout + proc.stderr, proc.stderr
    assert json.loads((job / "metrics.json").read_text())["status"] == "completed"
    assert hparams_session(job)[1] == "STATUS_SUCCESS"


def test_a_diverged_run_is_a_failure_in_tensorboard(tmp_path, fashion_mnist):
    proc = run_cli(*QUICK, "optimizer.lr=100", "activation=relu", "seed=1", "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "diverged"
    assert hparams_session(tmp_path / "run")[1] == "STATUS_FAILURE"


def damage_settings(state):
    state["settings"] = "not a mapping"


def damage_epoch(epoch):
    return lambda state: state["progress"].update(epoch=epoch)


def damage_history(state):
    state["progress"]["epoch"] = 1
    state["progress"]["history"] = {k: v[:1] for k, v in state["progress"]["history"].items()}


@pytest.mark.parametrize(
    "damage, reason",
    [
        (damage_settings, "its settings or weights are not a mapping"),
        (damage_epoch(-1), "no readable progress in it"),
        (damage_epoch(99), "progress.epoch=99, but its history holds 2 epochs"),
        (damage_history, "progress.epoch=1, but metrics.json says 2 epochs completed"),
    ],
)
def test_a_checkpoint_damaged_in_its_fields_is_refused_in_one_line(done_run, tmp_path, damage, reason):
    run = shutil.copytree(done_run, tmp_path / "run")
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    damage(state)
    torch.save(state, run / "checkpoints" / "last.pt")
    before = snapshot(run)
    proc = run_cli(f"resume={run}", "trainer.epochs=3", cwd=tmp_path)
    line = one_line_error(proc)
    assert line.startswith(f"Error: {run / 'checkpoints' / 'last.pt'}: cannot resume") and reason in line
    assert snapshot(run) == before


READ_ONLY_AFTER_EPOCH_1 = """
import subprocess
from lenet_exp import member as train
end_epoch = train.Member.end_epoch
def read_only_after(self, *figures):
    end_epoch(self, *figures)
    if self.folder.path.name.startswith("0_"):
        d = str(self.folder.path)
        subprocess.run(["mount", "--bind", d, d], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", d], check=True)
train.Member.end_epoch = read_only_after
"""


def test_a_job_folder_turned_read_only_ends_the_sweep_not_completed(tmp_path, fashion_mnist):
    if os.geteuid() != 0 or not mount_tmpfs(tmp_path / "probe", "1m"):
        pytest.skip("needs root and mounts to make a folder read-only")
    unmount(tmp_path / "probe")
    job = tmp_path / "sweep" / "0_seed=0"
    args = ["-m", *QUICK, "trainer.epochs=3", "seed=0,1", "hydra.sweep.dir=sweep"]
    try:
        proc = start_patched(READ_ONLY_AFTER_EPOCH_1, *args, cwd=tmp_path)
        out, err = proc.communicate(timeout=HANG)
    finally:
        unmount(job)
    assert proc.returncode == 1 and "Traceback" not in out + err and ".tmp" not in err, err
    assert f"Error: {job}/" in err and err.strip().endswith("1 did not finish (job 0 refused); see sweep/summary.md")
    rows = {r["job"]: r for r in read_csv(tmp_path / "sweep" / "summary.csv")}
    assert rows["0"]["status"] == "refused" and str(job) in rows["0"]["error"] and rows["1"]["status"] == "completed"


SLOW_SECOND_START = """
import time
from lenet_exp import training as train
prepare, calls = train.prepare, []
def slow(cfg, folder):
    calls.append(folder)
    if len(calls) == 2:
        print("STARTING-2", flush=True)
        time.sleep(60)
    return prepare(cfg, folder)
train.prepare = slow
"""


def test_a_fused_sweep_stopped_while_its_jobs_start_says_what_was_written_and_leaves_no_empty_folder(tmp_path):
    args = ["-m", "hydra/launcher=fused", *QUICK[:-1], "trainer.epochs=1", "optimizer.lr=0.1,0.2,0.3"]
    proc = start_patched(SLOW_SECOND_START, *args, "hydra.sweep.dir=sweep", cwd=tmp_path)
    while (line := proc.stdout.readline()) != "STARTING-2\n":
        assert line, proc.communicate()[1]  # the second job never started
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        "Interrupted by SIGTERM: before training started; nothing was trained (the jobs started so far recorded their "
        "settings)"
    )
    jobs = [p for p in (tmp_path / "sweep").iterdir() if p.is_dir()]
    assert [p.name for p in jobs] == ["0_optimizer.lr=0.1"] and os.listdir(jobs[0]) == [".hydra"]
    again = run_cli(*args, "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert {r["status"] for r in read_csv(tmp_path / "sweep" / "summary.csv")} == {"completed"}


def workers_of(pid: int) -> list[int]:
    """The sweep's worker processes: its children that hold a file under a job folder (its lock)."""
    children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == pid]
    return [c for c in children if any("sweep/" in _link(c, fd) for fd in _fds(c))]


def _parent(pid: int) -> int | None:
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _fds(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []


def _link(pid: int, fd: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return ""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL])  # the harder case: no handler of the worker runs
def test_a_parallel_sweep_whose_worker_is_killed_ends_in_one_line_and_its_rerun_completes_all(tmp_path, sig):
    pytest.importorskip("joblib")
    args = ["-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", *LONGER[:-1], "trainer.epochs=2"]
    args += ["optimizer.lr=0.1,0.2", "hydra.sweep.dir=sweep"]
    proc = start_cli(*args, cwd=tmp_path)
    deadline = time.monotonic() + HANG
    while not any(epochs_completed(p) for p in job_dirs(tmp_path / "sweep")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    os.kill(workers_of(proc.pid)[0], sig)
    out = proc.communicate(timeout=HANG)[0]
    assert proc.returncode == 1 and "Traceback" not in out, out
    assert out.strip().splitlines()[-1].startswith("Error: a worker process of the sweep ended unexpectedly")
    assert "{" not in out.strip().splitlines()[-1]  # the workers' exit codes in words, not as a set
    rows = read_csv(tmp_path / "sweep" / "summary.csv")
    assert rows and all(r["status"] in ("interrupted", "failed", "not started") for r in rows), rows  # none running
    records = [json.loads(p.read_text())["status"] for p in (tmp_path / "sweep").glob("*/metrics.json")]
    assert records and "running" not in records, records  # the jobs' own records too, not only the summary's view
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    rows = read_csv(tmp_path / "sweep" / "summary.csv")
    assert [r["status"] for r in rows] == ["completed"] * 2


def test_a_run_marked_failed_after_it_ended_says_so_in_tensorboard_too(make_cfg, tmp_path, fashion_mnist):
    """metrics.json and the HParams session tell one story: a job a later start refuses (a config error in a sweep,
    say) is `failed` in both, never failed in one and a success in the other."""
    from lenet_exp.training import train

    train(make_cfg("trainer.epochs=1", "data.limit_train=256", "data.limit_test=128"), tmp_path / "run")
    assert session_status(tmp_path / "run") == "STATUS_SUCCESS"
    RunFolder(tmp_path / "run").record_end("ConfigError: trainer.epochs=9 runs past the end of the schedule")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "failed"
    assert session_status(tmp_path / "run") == "STATUS_FAILURE"
