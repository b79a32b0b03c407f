"""Fused sweeps: the same training as alone, grouping rules, a diverging member, a killed and resumed group, a fused
halving search, every job's files as a run alone leaves them, and Hydra's own launcher conformance suites."""

import errno
import json
import logging
import re
import signal
import time

import pytest
import torch
from helpers import HANG, epochs_completed, job_dirs, read_csv, run_cli, scalars, start_cli
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite
from hydra.version import VersionBase
from packaging.version import Version

from lenet_exp import run_folder
from lenet_exp.config import compose_config
from lenet_exp.fused import fusion_key, groups_of
from lenet_exp.jobs import Job
from lenet_exp.model import LeNet
from lenet_exp.training import train, train_group

SLICE = ["device=cpu", "data.download=false", "data.limit_train=2560", "data.limit_test=512", "trainer.progress=false"]


def jobs_of(tmp_path, variants: list[list[str]], prefix: str, epochs: int = 1) -> list[Job]:
    return [
        Job(
            compose_config([*SLICE, f"trainer.epochs={epochs}", *v]),
            tmp_path / f"{prefix}{i}",
            {},
            log=logging.getLogger(f"{prefix}{i}"),
            in_sweep=True,
        )
        for i, v in enumerate(variants)
    ]


def max_difference(a_dir, b_dir) -> float:
    a, b = (
        torch.load(a_dir / "checkpoints" / "last.pt", weights_only=True)["model"],
        torch.load(b_dir / "checkpoints" / "last.pt", weights_only=True)["model"],
    )
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_fused_training_is_training_alone(tmp_path, fashion_mnist):
    """Own init, own data order, own optimizer state and settings: after 30 steps the weights agree within 1e-4.

    (ReLU networks are left out: at their kinks the last bit of a sum decides, so even a run alone drifts as far
    as this from one with another CPU thread count.)"""
    variants = [
        ["optimizer=adam", "optimizer.lr=0.003", "activation=tanh"],
        [
            "optimizer=adam",
            "optimizer.lr=0.001",
            "optimizer.betas=[0.8,0.99]",
            "optimizer.weight_decay=0.001",
            "activation=sigmoid",
            "seed=1",
        ],
        ["optimizer.lr=0.2", "optimizer.momentum=0.5", "activation=tanh", "seed=2"],
        [
            "optimizer.lr=0.5",
            "optimizer.weight_decay=0.0005",
            "activation=sigmoid",
            "model.init=kaiming_uniform",
            "seed=3",
        ],
        ["optimizer.lr=0.1", "optimizer.momentum=0.9", "activation=sigmoid", "seed=4"],
    ]
    jobs = jobs_of(tmp_path, variants, "fused", epochs=3)  # 10 steps an epoch
    results = train_group(jobs, fuse=True)
    for i, job in enumerate(jobs):
        alone = train(job.cfg, tmp_path / f"alone{i}", {})
        assert max_difference(job.run_dir, tmp_path / f"alone{i}") < 1e-4, i
        # the accuracies agree but for a test image or two sitting on a decision boundary
        assert results[i]["history"]["test_acc"] == pytest.approx(alone["history"]["test_acc"], abs=0.01), i


def test_which_settings_split_a_group():
    key = lambda *o: fusion_key(compose_config([*SLICE, *o]))  # noqa: E731
    same = key()
    for varying in (
        ["optimizer.lr=0.1"],
        ["optimizer.momentum=0.9"],
        ["optimizer.weight_decay=0.01"],
        ["activation=relu"],
        ["model.init=default"],
        ["seed=3"],
    ):
        assert key(*varying) == same, varying
    for splitting in (
        ["data.batch_size=128"],
        ["trainer.epochs=3"],
        ["data.limit_train=1024"],
        ["model.hidden=[64,32]"],
        ["optimizer=adam"],
        ["model.pool=max"],
        ["deterministic=true"],
        ["model.norm=batch"],
        ["data.augment=true"],
    ):
        assert key(*splitting) not in (same, None), splitting
    assert (
        key("device.compile=true") is None and key("+optimizer.nesterov=true", "optimizer.momentum=0.9") is None
    )  # alone
    assert key("activation._target_=torch.nn.PReLU") is None  # an activation with weights of its own trains alone
    # one that is not a function of each number alone: applied to all models' numbers at once, it would mix them
    assert key("activation._target_=torch.nn.Softmax", "+activation.dim=1") is None
    assert key("model.dropout=0.1") is None  # its masks would not be each model's own
    assert key("activation._target_=torch.nn.RReLU") is None and key("activation=leaky_relu") == key()
    keys = [same, same, None, same, key("optimizer=adam"), key("optimizer=adam")]
    assert groups_of(keys, max_models=2) == [[0, 1], [2], [3], [4, 5]]


def test_a_diverging_member_stops_alone_and_the_others_go_on_unchanged(tmp_path, fashion_mnist):
    variants = [
        ["optimizer.lr=0.3", "activation=tanh"],
        ["optimizer.lr=100", "activation=relu", "seed=1"],
        ["optimizer.lr=0.5", "seed=2"],
    ]
    jobs = jobs_of(tmp_path, variants, "fused", epochs=2)
    results = train_group(jobs, fuse=True)
    assert [r["status"] for r in results] == ["completed", "diverged", "completed"]
    assert not (jobs[1].run_dir / "checkpoints" / "final.pt").exists() and "non-finite" in results[1]["error"]
    for i in (0, 2):
        alone = train(jobs[i].cfg, tmp_path / f"alone{i}", {})
        assert max_difference(jobs[i].run_dir, tmp_path / f"alone{i}") < 1e-4
        assert results[i]["history"]["test_acc"] == pytest.approx(alone["history"]["test_acc"], abs=0.01)


def test_a_job_whose_own_files_fail_stops_alone_recorded_failed(tmp_path, fashion_mnist, monkeypatch, caplog):
    """A full disk under one job's folder: that job ends `failed` with the reason; the others finish unchanged."""
    variants = [["optimizer.lr=0.3"], ["optimizer.lr=0.5", "seed=1"], ["optimizer.lr=0.2", "activation=tanh", "seed=2"]]
    jobs = jobs_of(tmp_path, variants, "fused", epochs=2)
    save = run_folder.save_checkpoint

    def full_in_job_1(path, obj):
        if jobs[1].run_dir in path.parents:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        save(path, obj)

    monkeypatch.setattr(run_folder, "save_checkpoint", full_in_job_1)
    results = train_group(jobs, fuse=True)
    monkeypatch.setattr(run_folder, "save_checkpoint", save)
    assert isinstance(results[1], OSError) and [results[0]["status"], results[2]["status"]] == [
        "completed",
        "completed",
    ]
    failed = json.loads((jobs[1].run_dir / "metrics.json").read_text())
    assert (
        failed["status"] == "failed"
        and "No space left on device" in failed["error"]
        and failed["epochs_completed"] == 0
    )  # epoch 1 could not be saved
    assert "run failed: OSError" in caplog.text and "best.pt: No space left on device" in caplog.text
    for i in (0, 2):
        train(jobs[i].cfg, tmp_path / f"alone{i}", {})
        assert max_difference(jobs[i].run_dir, tmp_path / f"alone{i}") < 1e-4, i


def test_a_job_that_cannot_start_is_recorded_failed_and_its_group_trains(tmp_path, fashion_mnist):
    """A damaged checkpoint in one job's folder: that job is failed with the reason, the others continue theirs."""
    variants = [["optimizer.lr=0.3"], ["optimizer.lr=0.5", "seed=1"], ["optimizer.lr=0.2", "seed=2"]]
    train_group(jobs_of(tmp_path, variants, "fused", epochs=1), fuse=True)
    last = tmp_path / "fused1" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    results = train_group(jobs_of(tmp_path, variants, "fused", epochs=2), fuse=True)
    assert "cannot resume from this checkpoint" in str(results[1])
    failed = json.loads((tmp_path / "fused1" / "metrics.json").read_text())
    assert failed["status"] == "failed" and "cannot resume from this checkpoint" in failed["error"]
    assert [results[i]["epochs_completed"] for i in (0, 2)] == [2, 2] and last.stat().st_size == 100


FUSED = [
    "-m",
    "hydra/launcher=fused",
    *SLICE,
    "data.limit_train=5120",
    "trainer.epochs=2",
    "optimizer.lr=0.2,0.5",
    "activation=sigmoid,tanh",
]


@pytest.fixture(scope="module")
def fused_sweep(tmp_path_factory, fashion_mnist):
    cwd = tmp_path_factory.mktemp("fused")
    proc = run_cli(*FUSED, "hydra.sweep.dir=sweep", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd / "sweep", proc


def test_a_fused_sweep_leaves_what_separate_jobs_leave(fused_sweep):
    sweep, proc = fused_sweep
    assert (
        "Fused launcher: 4 jobs in 1 group of 4" in proc.stdout
        and "Training jobs 0, 1, 2, 3 as one fused model" in proc.stdout
    )
    rows = read_csv(sweep / "summary.csv")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    for r in rows:
        job = sweep / r["run_dir"]
        assert {p.name for p in (job / ".hydra").iterdir()} == {"config.yaml", "hydra.yaml", "overrides.yaml"}
        assert "epoch 2/2" in (job / "train.log").read_text()
        curves = scalars(job)
        assert [s for s, _ in curves["test/acc"]] == [20, 40] and len(curves["train/loss"]) == 10
        assert {"train/lr", "train/examples_per_sec", "test/best_acc"} <= set(curves)
        for name in ("final.pt", "best.pt"):
            LeNet(torch.nn.Tanh if "tanh" in r["run_dir"] else torch.nn.Sigmoid).load_state_dict(
                torch.load(job / "checkpoints" / name)
            )
        metrics = json.loads((job / "metrics.json").read_text())
        assert float(r["test_acc"]) == metrics["test_acc"] == metrics["history"]["test_acc"][-1]


def test_a_fused_jobs_checkpoint_resumes_as_a_single_run(fused_sweep, tmp_path):
    sweep, _ = fused_sweep
    job = next(sweep.glob("3_*"))
    proc = run_cli(f"resume={job}", "trainer.epochs=3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Resuming in" in proc.stdout and epochs_completed(job) == 3
    assert [s for s, _ in scalars(job)["test/acc"]] == [20, 40, 60]


def test_a_killed_fused_group_checkpoints_every_job_and_resumes(fused_sweep, tmp_path):
    unbroken, _ = fused_sweep
    proc = start_cli(*FUSED, "hydra.sweep.dir=sweep", cwd=tmp_path)
    deadline = time.time() + HANG
    while not any(epochs_completed(job) >= 1 for job in job_dirs(tmp_path / "sweep")):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 128 + signal.SIGTERM
    statuses = {json.loads((job / "metrics.json").read_text())["status"] for job in job_dirs(tmp_path / "sweep")}
    assert statuses == {"interrupted"} and all(
        (job / "checkpoints" / "last.pt").exists() for job in job_dirs(tmp_path / "sweep")
    )
    rerun = run_cli(*FUSED, "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    figures = lambda sweep: {
        r["run_dir"]: (r["status"], r["test_acc"], r["train_loss"]) for r in read_csv(sweep / "summary.csv")
    }  # noqa: E731
    assert figures(tmp_path / "sweep") == figures(unbroken)  # a resumed fused group ends where an unbroken one does


def test_a_fused_halving_search(tmp_path, fashion_mnist):
    args = [
        "-m",
        "hparams_search=halving",
        "hydra/launcher=fused",
        *SLICE,
        "data.limit_train=1024",
        "trainer.epochs=3",
        "optimizer.lr=0.1,0.3,0.9",
        "activation=sigmoid,tanh",
        "hydra.sweep.dir=sweep",
    ]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (
        "Fused launcher: 6 jobs in 1 group of 6" in proc.stdout
        and "Fused launcher: 2 jobs in 1 group of 2" in proc.stdout
    )
    rows = read_csv(tmp_path / "sweep" / "summary.csv")
    assert sorted(r["status"] for r in rows) == ["completed", "completed", "pruned", "pruned", "pruned", "pruned"]
    for r in rows:
        steps = [s for s, _ in scalars(tmp_path / "sweep" / r["run_dir"])["train/loss"]]
        assert steps == list(range(1, 4 * int(r["epochs_completed"]) + 1))
    # rung 2 is a launch of its own: its lines still name the jobs by their folders' numbers, as summary.csv does
    done = sorted(int(r["job"]) for r in rows if r["status"] == "completed")
    rung2 = proc.stdout[proc.stdout.index("Rung 2 of 2") :]
    assert sorted({int(n) for n in re.findall(r"\[job (\d+)\]", rung2)}) == done
    assert sorted(map(int, re.findall(r"\t#(\d+) : ", rung2))) == done
    named = re.search(r"Training jobs (\d+), (\d+) as one fused model", rung2)
    assert sorted(map(int, named.groups())) == done


@pytest.mark.parametrize(
    "knob, said",
    [
        (["activation._target_=torch.nn.Softmax", "+activation.dim=1"], None),
        (
            ["model.dropout=0.2,0.3"],
            "Fused launcher: model.dropout > 0: jobs with dropout train one at a time, not fused",
        ),
    ],
)
def test_jobs_a_fused_model_cannot_keep_train_alone_with_the_figures_of_a_plain_sweep(knob, said, tmp_path):
    """Softmax over channels, applied to all of a fused model's numbers at once, would mix its models; dropout would
    draw masks that are not each job's own. Both train alone; dropout says so in one line."""
    args = [*SLICE, "data.limit_train=512", "trainer.epochs=1", "seed=0,1", *knob]
    fused = run_cli("-m", "hydra/launcher=fused", *args, "hydra.sweep.dir=fused", cwd=tmp_path)
    plain = run_cli("-m", *args, "hydra.sweep.dir=plain", cwd=tmp_path)
    assert fused.returncode == plain.returncode == 0, fused.stderr + plain.stderr
    assert "as one fused model" not in fused.stdout
    assert figures_of(tmp_path / "fused") == figures_of(tmp_path / "plain") and len(figures_of(tmp_path / "fused")) in (
        2,
        4,
    )
    lines = [line for line in (fused.stdout + fused.stderr).splitlines() if "Fused launcher: model.dropout" in line]
    assert len(lines) == (1 if said else 0) and (not said or said in lines[0]), lines


def test_batch_norm_and_augmentation_fuse_and_train_as_alone(tmp_path, fashion_mnist):
    """Each model's batch norm over its own batch, its running statistics, and its own augmentation draws: after
    20 steps the weights and statistics agree within 1e-3 with each job trained alone (statistics mixed across
    models, or another model's draws, miss by 0.1 or more). Max pooling is left out: batch norm's last bits then
    decide which of four near-equal numbers is the largest, so the runs drift apart as far as 1e-3 by chance."""
    knobs = ["model.norm=batch", "data.augment=true", "optimizer=adam", "optimizer.lr=0.003"]
    variants = [[*knobs, "activation=tanh"], [*knobs, "activation=sigmoid", "optimizer.lr=0.001", "seed=1"]]
    jobs = jobs_of(tmp_path, variants, "fused", epochs=2)
    results = train_group(jobs, fuse=True)
    for i, job in enumerate(jobs):
        alone = train(job.cfg, tmp_path / f"alone{i}", {})
        state = torch.load(job.run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
        assert {k for k in state if "running" in k} == {
            f"{n}.running_{s}" for n in (1, 5, 10, 13) for s in ("mean", "var")
        }
        assert max_difference(job.run_dir, tmp_path / f"alone{i}") < 1e-3, i
        assert results[i]["history"]["test_acc"] == pytest.approx(alone["history"]["test_acc"], abs=0.01), i


def figures_of(sweep) -> dict:
    """Each job's metrics.json but for its timings."""
    untimed = lambda metrics: {k: v for k, v in metrics.items() if "seconds" not in k and "per_sec" not in k}  # noqa: E731
    return {job.parent.name: untimed(json.loads(job.read_text())) for job in sweep.glob("*_*/metrics.json")}


@pytest.mark.parametrize("launcher_name, overrides", [("fused", [])])
class TestFusedLauncher(LauncherTestSuite):
    """Hydra's launcher suite: other task functions run as the basic launcher runs them."""

    @pytest.fixture(autouse=True)
    def hydra_1_1_defaults(self):
        """The suite expects Hydra 1.1's defaults (a job runs in its own folder); an earlier test in this process that
        named a newer version_base (the README's compose example) would leave its defaults behind."""
        base = VersionBase.instance()
        saved = base.getbase()
        base.setbase(Version("1.1"))
        yield
        base.version_base = saved


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [
        (
            {
                "defaults": [
                    {"override hydra/launcher": "fused"},
                    {"override hydra/hydra_logging": "hydra_debug"},
                    {"override hydra/job_logging": "disabled"},
                ]
            },
            ["-m"],
        )
    ],
)
class TestFusedLauncherIntegration(IntegrationTestSuite):
    """Hydra's integration suite, run through the fused launcher."""
