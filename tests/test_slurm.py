"""hydra/launcher=slurm on a live one-node Slurm cluster (scripts/slurm_local.sh, which .ci/run starts): the preset as
it is on a CPU partition, one-line refusals of what the cluster cannot run, finished jobs never resubmitted, a
pre-empted job requeued to identical figures, Ctrl-C leaving no job queued, and a halving search by job arrays."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import HANG, REPO, epochs_completed, popen, read_csv, run_cli, start_cli

TINY = ["data.download=false", "data.limit_train=256", "data.limit_test=128", "trainer.progress=false"]
SLURM = ["-m", "hydra/launcher=slurm", *TINY]


@pytest.fixture(scope="module")
def slurm(fashion_mnist):
    """A live cluster: the project's own, started here when it is not up (CI starts it first)."""
    script = REPO / "scripts" / "slurm_local.sh"
    if subprocess.run(["bash", script, "status"], capture_output=True).returncode != 0:
        if os.geteuid() != 0:
            pytest.skip("no Slurm cluster answers, and starting one (bash scripts/slurm_local.sh start) needs root")
        started = subprocess.run(["bash", script, "start"], capture_output=True, text=True, timeout=HANG)
        if started.returncode != 0:
            pytest.skip(f"no Slurm cluster could be started here: {started.stderr.strip()[-300:]}")


def queued(name_part: str = "") -> list[str]:
    """Our jobs still in Slurm's queue (submitit names them after the task: `__main__`)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%j|%T"], capture_output=True, text=True).stdout.split()
    return [line for line in out if name_part in line]


def submitted(sweep) -> int:
    """Job arrays the sweep folder's submitit logs record."""
    return len(list((sweep / ".submitit").glob("*/*_submission.sh")))


def test_the_preset_runs_on_a_cpu_partition_and_a_rerun_submits_nothing(slurm, tmp_path):
    proc = run_cli(*SLURM, "seed=0,1", "trainer.epochs=2", "hydra.sweep.dir=s", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(tmp_path / "s" / "summary.csv")
    assert sorted(r["status"] for r in rows) == ["completed", "completed"]
    for r in rows:  # a job uses the CPUs it was given: cpus_per_task=1
        state = json.loads((tmp_path / "s" / r["run_dir"] / "metrics.json").read_text())
        assert state["cpu_threads"] == 1 and state["epochs_completed"] == 2
    arrays = submitted(tmp_path / "s")
    again = run_cli(*SLURM, "seed=0,1", "trainer.epochs=2", "hydra.sweep.dir=s", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "Not resubmitted, finished already: job 0, job 1" in again.stdout + again.stderr
    assert submitted(tmp_path / "s") == arrays


@pytest.mark.parametrize(
    "overrides,error",
    [
        (["hydra.launcher.cpus_per_task=64"], "hydra.launcher.cpus_per_task=64: the nodes of partition debug have"),
        (["hydra.launcher.mem_gb=100000"], "hydra.launcher.mem_gb=100000: the nodes of partition debug have"),
        (["hydra.launcher.partition=gpu_big"], "hydra.launcher.partition=gpu_big: no such partition on this cluster"),
        (["hydra.launcher.gpus_per_node=1"], "hydra.launcher.gpus_per_node=1: partition debug has no GPUs"),
        (["device=cuda"], "device=cuda (a GPU for each job): partition debug has no GPUs"),
        (["hydra.launcher.timeout_min=1"], "hydra.launcher.timeout_min=1: each try is warned 120 s before its limit"),
    ],
)
def test_what_the_cluster_cannot_run_is_refused_in_one_line_before_anything_is_submitted(
    slurm, tmp_path, overrides, error
):
    proc = run_cli(*SLURM, "seed=0,1", *overrides, "hydra.sweep.dir=s", cwd=tmp_path)
    assert proc.returncode == 2 and error in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "s").exists()


def wait_for(predicate, what: str, seconds: float = 300):
    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, f"waited {seconds} s for {what}"
        time.sleep(0.5)


def slurm_job_of(sweep, num: int) -> str:
    """The Slurm id (array_task) of sweep job `num`, from submitit's log names."""
    logs = (sweep / ".submitit").glob("*/*_log.out")
    ids = sorted({p.name.rsplit("_", 2)[0] for p in logs}, key=lambda i: int(i.split("_")[-1]))
    return ids[num]


def test_a_preempted_job_requeues_itself_and_ends_as_if_never_stopped(slurm, tmp_path):
    common = [*TINY, "seed=0", "device.threads=1", "data.limit_train=16384", "trainer.epochs=3"]
    proc = start_cli("-m", "hydra/launcher=slurm", *common, "hydra.sweep.dir=s", cwd=tmp_path)
    wait_for(lambda: any(epochs_completed(d) >= 1 for d in (tmp_path / "s").glob("0_*")), "the first epoch")
    slurm_id = slurm_job_of(tmp_path / "s", 0)
    subprocess.run(["scancel", "--signal=TERM", slurm_id], check=True)  # what a cluster sends before it reclaims a node
    wait_for(lambda: "PENDING" in "".join(queued(slurm_id)) or proc.poll() is not None, "the requeue")
    subprocess.run(["scontrol", "update", f"jobid={slurm_id}", "StartTime=now"], capture_output=True)  # no hold
    out, _ = proc.communicate(timeout=HANG)
    assert proc.returncode == 0, out
    (job,) = (tmp_path / "s").glob("0_*")
    log = (job / "train.log").read_text()
    assert "Requeued on Slurm" in log and "Resuming" in log, log
    alone = run_cli("-m", *common, "hydra.sweep.dir=b", cwd=tmp_path)  # the basic launcher, never stopped
    assert alone.returncode == 0, alone.stderr
    figures = [json.loads((d / "metrics.json").read_text())["history"] for d in (job, *(tmp_path / "b").glob("0_*"))]
    assert figures[0] == figures[1] and not queued(slurm_id)


def test_ctrl_c_cancels_every_job_after_its_checkpoint_and_the_rerun_continues(slurm, tmp_path):
    args = [*SLURM, "seed=0,1", "data.limit_train=16384", "trainer.epochs=3", "hydra.sweep.dir=s"]
    proc = start_cli(*args, cwd=tmp_path)
    wait_for(lambda: any(epochs_completed(d) >= 1 for d in (tmp_path / "s").glob("[0-9]_*")), "a first epoch")
    arrays = {slurm_job_of(tmp_path / "s", 0).split("_")[0]}
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=HANG)
    assert proc.returncode == 130 and "Traceback" not in out, out
    assert not [q for a in arrays for q in queued(a)]  # nothing left queued or running
    started = [d for d in (tmp_path / "s").glob("[0-9]_*") if (d / "metrics.json").exists()]
    statuses = {d.name: json.loads((d / "metrics.json").read_text())["status"] for d in started}
    assert "interrupted" in statuses.values() and "running" not in statuses.values(), statuses
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert {r["status"] for r in read_csv(tmp_path / "s" / "summary.csv")} == {"completed"}


@pytest.mark.parametrize(
    "search",
    [
        ["hparams_search=halving", "optimizer.lr=0.1,0.9"],
        ["hparams_search=ranged", "hydra.sweeper.n_trials=2", "hydra.sweeper.batch=2", "data.val_size=64"],
    ],
    ids=["grid", "ranges"],
)
def test_a_halving_search_submits_a_job_array_per_rung(slurm, tmp_path, search):
    proc = run_cli(*SLURM, *search, "trainer.epochs=3", "hydra.sweep.dir=s", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "s" / "halving.json").read_text())
    assert record["finished"] and record["rungs"] == [1, 3]
    rows = read_csv(tmp_path / "s" / "summary.csv")
    assert sorted(r["status"] for r in rows) == ["completed", "pruned"] and submitted(tmp_path / "s") == 2


def test_a_rejected_sbatch_and_a_cluster_without_accounting_are_one_line(slurm, tmp_path):
    rejected = run_cli(*SLURM, "seed=0,1", "hydra.launcher.constraint=bigmem", "hydra.sweep.dir=s", cwd=tmp_path)
    assert rejected.returncode == 2 and "Traceback" not in rejected.stderr, rejected.stderr
    assert "Error: Slurm refused the job array (sbatch: " in rejected.stderr and "hydra.launcher" in rejected.stderr
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sacct").write_text("#!/bin/sh\necho 'Slurm accounting storage is disabled' >&2\nexit 1\n")
    (fake / "sacct").chmod(0o755)
    env = {"PATH": f"{fake}:{os.environ['PATH']}"}
    proc = run_cli(*SLURM, "seed=0,1", "hydra.sweep.dir=t", cwd=tmp_path, env=env)
    assert proc.returncode == 2 and not (tmp_path / "t").exists(), proc.stderr
    assert proc.stderr.startswith("Error: hydra/launcher=slurm follows its jobs with sacct, which fails here (Slurm")


@pytest.mark.parametrize("how", ["cancelled"])  # "killed" (SIGKILL of the job's process): `failed`, in one line
def test_a_job_killed_or_cancelled_by_hand_ends_in_one_line_and_is_not_requeued(slurm, tmp_path, how):
    args = [*SLURM, "seed=0", "data.limit_train=16384", "trainer.epochs=3", "hydra.sweep.dir=s"]
    proc = start_cli(*args, cwd=tmp_path)
    wait_for(lambda: any(epochs_completed(d) >= 1 for d in (tmp_path / "s").glob("0_*")), "the first epoch")
    if how == "killed":  # outright (out of memory, say): no checkpoint, no word
        job = subprocess.run(["pgrep", "-f", f"_submit {tmp_path}"], capture_output=True, text=True).stdout.split()
        assert job, "the job's process"
        for pid in job:
            os.kill(int(pid), signal.SIGKILL)
    else:  # a user's plain scancel: the job saves its checkpoint and stays cancelled
        subprocess.run(["scancel", slurm_job_of(tmp_path / "s", 0)], check=True)
    out, _ = proc.communicate(timeout=HANG)
    assert proc.returncode == 1 and "Traceback" not in out, out
    (row,) = read_csv(tmp_path / "s" / "summary.csv")
    (job_dir,) = (tmp_path / "s").glob("0_*")
    assert "Requeued" not in (job_dir / "train.log").read_text() and int(row["epochs_completed"]) < 3
    if how == "killed":
        assert "Error: job 0: Slurm job " in out and " without a result (its log: " in out
        assert row["status"] == "failed" and "without a result" in (tmp_path / "s" / "summary.md").read_text()
        return
    assert "Job 0: Slurm job " in out and "it saved its checkpoint first: interrupted, to continue" in out
    assert row["status"] == "interrupted" and (job_dir / "checkpoints" / "last.pt").is_file()
    again = run_cli(*args, cwd=tmp_path)  # the rerun continues it from its checkpoint
    assert again.returncode == 0, again.stderr
    assert json.loads((job_dir / "metrics.json").read_text())["epochs_completed"] == 3


def test_a_fused_group_is_one_slurm_job_and_trains_as_the_fused_launcher_here(slurm, tmp_path):
    grid = [*TINY, "optimizer.lr=0.1,0.9", "activation=sigmoid,relu", "trainer.epochs=2", "device.threads=1"]
    proc = run_cli("-m", "hydra/launcher=fused_slurm", *grid, "hydra.sweep.dir=s", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Submitted to Slurm as job array" in proc.stderr + proc.stdout and submitted(tmp_path / "s") == 1
    assert len(list((tmp_path / "s" / ".submitit").glob("*/*_log.out"))) == 1  # one Slurm job for the 4 jobs
    here = run_cli("-m", "hydra/launcher=fused", *grid, "hydra.sweep.dir=f", cwd=tmp_path)
    assert here.returncode == 0, here.stderr
    for job in (tmp_path / "s").glob("[0-9]_*"):
        there, local = (json.loads((d / job.name / "metrics.json").read_text()) for d in (job.parent, tmp_path / "f"))
        assert there["status"] == "completed" and there["history"] == local["history"], job.name
        assert (job / "checkpoints" / "last.pt").is_file() and (job / ".hydra" / "config.yaml").is_file()


def test_a_pending_task_cancelled_by_hand_ends_the_sweep_in_one_line(slurm, tmp_path):
    """Slurm keeps no record of a task cancelled before it started: the sweep sees it gone and says so, not waits."""
    args = [*SLURM, "seed=0,1,2", "trainer.epochs=1", "hydra.launcher.cpus_per_task=2", "hydra.sweep.dir=s"]
    proc = start_cli(*args, cwd=tmp_path)  # two CPUs a job on a node of two: one runs, two wait
    pending = lambda: subprocess.run(  # noqa: E731  one line a task, its state
        ["squeue", "-h", "-r", "-t", "PENDING", "-o", "%i"], capture_output=True, text=True
    ).stdout.split()
    wait_for(lambda: pending(), "a pending task")
    task = pending()[-1]  # `<array>_<n>`: sweep job n
    subprocess.run(["scancel", task], check=True)
    out, _ = proc.communicate(timeout=HANG)
    assert proc.returncode == 1 and "Traceback" not in out, out
    assert f"Slurm job {task} was cancelled before it started (Slurm keeps no record of it)" in out
    rows = {r["job"]: r["status"] for r in read_csv(tmp_path / "s" / "summary.csv")}
    cancelled = task.split("_")[1]
    assert rows == {n: "failed" if n == cancelled else "completed" for n in ("0", "1", "2")}, rows


def test_a_rerun_while_a_killed_sweeps_jobs_still_run_is_refused_in_one_line(slurm, tmp_path):
    args = [*SLURM, "seed=0,1", "data.limit_train=16384", "trainer.epochs=3", "hydra.sweep.dir=s"]
    proc = start_cli(*args, cwd=tmp_path)
    wait_for(lambda: (tmp_path / "s" / ".slurm_arrays").is_file(), "the submission")
    array = (tmp_path / "s" / ".slurm_arrays").read_text().split()[0]
    proc.kill()  # the sweep's process dies without a word; its jobs go on
    proc.wait()
    try:
        again = run_cli(*args, cwd=tmp_path)
        assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1, again.stderr
        assert f"has jobs on Slurm still, queued or running (job array {array} (" in again.stderr
        assert f"scancel {array}" in again.stderr and submitted(tmp_path / "s") == 1  # nothing submitted again
    finally:
        subprocess.run(["scancel", array], capture_output=True)


def test_a_sigterm_as_a_slurm_job_starts_stops_it_in_one_line(tmp_path):
    """submitit's own handler ignores SIGTERM until the task takes the signals over: the job's start puts lenet_exp's
    in its place (on Slurm it also requeues the job, as pre-emption asks); here, off Slurm, it stops in one line."""
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom lenet_exp.launch import stop_before_training\n"
        "stop_before_training(Path(sys.argv[1]))\nprint('started', flush=True)\ntime.sleep(60)\n"
    )
    proc = popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "started\n"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err == "Interrupted by SIGTERM: before training started; nothing was written\n"


def test_a_sigterm_while_a_slurm_job_loads_stops_it_once_it_can(tmp_path):
    """A SIGTERM after submitit has set its own handler (which would ignore it) but before the job takes the signals
    over: the launcher's package, loaded as the job unpickles it, keeps the signal, and the job stops as it starts."""
    code = (
        "import os, signal, sys, types\nfrom pathlib import Path\n"
        "sys.modules['__main__'].__spec__ = types.SimpleNamespace(name='submitit.core._submit')  # as on a node\n"
        "signal.signal(signal.SIGTERM, lambda *a: print('ignored', flush=True))  # submitit's bypass\n"
        "from hydra_plugins.lenet_exp_slurm import EARLY\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "from lenet_exp.launch import stop_before_training\n"
        "stop_before_training(Path(sys.argv[1]), EARLY)\nprint('trained on', flush=True)\n"
    )
    proc = popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and out == "", out
    assert err == "Interrupted by SIGTERM: before training started; nothing was written\n"
