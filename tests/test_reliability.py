"""Bad input, interrupts, crashes and damaged files: clear errors, exact resumption, nothing half-written."""

import json
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import HANG, SMALL, epochs_completed, popen, refused, run_cli, run_in_new_folder, scalars, start_cli

from lenet_exp.files import atomic_write
from lenet_exp.run_folder import LAST
from lenet_exp.training import train

FIGURES = ("status", "epochs_completed", "train_loss", "train_acc", "test_acc", "best_test_acc", "history")
BAD_INPUTS = {
    "optimizer.lr=abc": "optimizer.lr='abc' is not allowed: expected a finite number > 0",
    "optimizer.lr=0": "optimizer.lr=0 is not allowed: expected a finite number > 0",
    "data.batch_size=0": "data.batch_size=0 is not allowed: expected an integer >= 1",
    "trainer.epochs=0": "trainer.epochs=0 is not allowed",
    "data.limit_train=0": "data.limit_train=0 is not allowed",
    "optimizer=rmsprop": "optimizer=rmsprop: unknown option of group 'optimizer'; allowed: adam, sgd",
    "optimizer.learning_rate=0.1": (
        "optimizer.learning_rate: no such key. Did you mean optimizer.lr? (python -m lenet_exp --cfg job lists every "
        "key)"
    ),
    "lr=0.1": "lr: no such key. Did you mean optimizer.lr?",
    "trainer.epoch=2": "trainer.epoch: no such key. Did you mean trainer.epochs?",
    "+lr=0.1": "+lr=0.1: nothing reads lr, so it would be ignored. Did you mean optimizer.lr?",
    "--multirun optimizer.lr=0.1 0.3 0.9": (
        "0.3: not an override (key=value); a sweep's values go after one key, joined by commas without spaces: "
        "optimizer.lr=0.1,0.3,0.9"
    ),
    "--multirun activation=sigmoid, relu": (
        "activation=sigmoid,: a sweep's values are joined by commas without spaces: activation=sigmoid,relu"
    ),
    "optimizer.lr=0.1 --multirun hydra.sweep.dir=a=b": (
        "hydra.sweep.dir=a=b: not a valid override (mismatched input '=' expecting <EOF>); quote a value that holds "
        "'=', ',' or spaces: hydra.sweep.dir='a=b'"
    ),
    "optimizer.lr=[0.1": "optimizer.lr=[0.1: not a valid override",
    "+optimizer.learning_rate=0.1": "optimizer: SGD.__init__() got an unexpected keyword argument 'learning_rate'",
    "model.norm=layer": "model.norm='layer' is not allowed: expected one of none, batch",
    "model.dropout=1": "model.dropout=1 is not allowed: expected a number in [0, 1)",
    "data.augment=maybe": "data.augment='maybe' is not allowed: expected true or false",
    "model.norm=batch data.limit_train=1025": (
        "model.norm=batch needs two or more examples in every training batch, but the last batch of an epoch of 1025 "
        "holds one (data.batch_size=256); change data.batch_size or data.limit_train"
    ),
    "device.name=cuda": "device=cuda: CUDA is not available on this machine; use device=auto or device=cpu",
    "resume=nowhere": "resume=nowhere: not a run folder",
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    """Every bad input through the command's own checks (in this process: each is refused before Hydra starts)."""
    cwd = tmp_path_factory.mktemp("bad")
    procs = [refused(*SMALL, *arg.split(), f"hydra.run.dir=runs/{i}", cwd=cwd) for i, arg in enumerate(BAD_INPUTS)]
    return cwd, dict(zip(BAD_INPUTS, procs))


@pytest.mark.parametrize("override", BAD_INPUTS)
def test_bad_input_gets_a_clear_error(bad_runs, override):
    if override == "device.name=cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    cwd, procs = bad_runs
    proc = procs[override]
    assert proc.returncode != 0
    assert BAD_INPUTS[override] in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert (
        not (cwd / "runs").exists() and not (cwd / "outputs").exists() and not (cwd / "multirun").exists()
    )  # no empty folders either


def test_corrupt_data_file_is_named_with_the_remedy(tmp_path, fashion_mnist):
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    src = "/usr/share/datasets/fashion-mnist/"
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (raw / f"{name}.gz").write_bytes(open(src + name + ".gz", "rb").read())
    damaged = raw / "train-labels-idx1-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:5000])
    proc = run_cli(*SMALL, "data.root=data", "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 2
    assert f"{damaged.relative_to(tmp_path)}: cannot read" in proc.stderr and "delete it and rerun" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run" / "metrics.json").exists()


RESUME_RUN = [
    "device=cpu",
    "data.download=false",
    "data.limit_train=20000",
    "data.limit_test=1000",
    "trainer.epochs=3",
    "scheduler=onecycle",  # its place on the schedule resumes too
]


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
    return run_in_new_folder(tmp_path_factory, "unbroken", *RESUME_RUN)[0] / "run"


def interrupt_in_epoch_2(cwd, sig, folder: str | None = "run", extra: tuple = ()) -> subprocess.Popen:
    """Start the run (in `folder`, else in the default outputs/<date>/<time>), wait until epoch 1 is recorded, then
    send `sig` a little into epoch 2."""
    proc = start_cli(*RESUME_RUN, *extra, *([f"hydra.run.dir={folder}"] if folder else []), cwd=cwd)
    run = lambda: cwd / folder if folder else next(iter(cwd.glob("outputs/*/*")), cwd / "none")  # noqa: E731
    deadline = time.time() + HANG
    while epochs_completed(run()) < 1:
        assert proc.poll() is None and time.time() < deadline, (
            proc.stdout.read() if proc.poll() is not None else "timeout"
        )
        time.sleep(0.02)
    time.sleep(0.4)
    proc.send_signal(sig)
    proc.wait(60)
    return proc


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM]
)  # SIGINT takes the same handler (signals.StopSignals; test_run_folder sends it)
def test_interrupt_then_rerun_equals_an_unbroken_run(tmp_path, unbroken, sig, fashion_mnist):
    """Stopped in a folder of its own making (outputs/<date>/<time>): its last line gives the command that continues
    it there, to an unbroken run's figures."""
    proc = interrupt_in_epoch_2(tmp_path, sig, folder=None)
    out = proc.stdout.read()
    assert proc.returncode == 128 + sig, out
    assert "checkpoint saved" in out and "Traceback" not in out
    (run,) = tmp_path.glob("outputs/*/*")
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"Interrupted by {sig.name}: checkpoint saved in {run}; continue with: "), last
    command = shlex.split(last.split("; continue with: ", 1)[1].removesuffix("."))
    assert command == ["python", "-m", "lenet_exp", f"resume={run}"]
    interrupted = json.loads((run / "metrics.json").read_text())
    assert interrupted["status"] == "interrupted" and interrupted["epochs_completed"] == 1
    state = torch.load(run / LAST, weights_only=False)
    assert state["progress"]["epoch"] == 1 and state["progress"]["step"] > 0  # stopped mid-epoch

    # A kill during a later checkpoint write leaves only a temporary file beside the good checkpoint.
    (run / "checkpoints" / ".last.pt.x1y2z3.tmp").write_bytes(b"half a checkpoint")
    rerun = run_cli(*command[3:], cwd=tmp_path)  # the command it gave, as a user pastes it
    assert rerun.returncode == 0, rerun.stderr
    assert list(tmp_path.glob("outputs/*/*")) == [run]  # continued there, no new folder
    resumed, reference = (
        json.loads((run / "metrics.json").read_text()),
        json.loads((unbroken / "metrics.json").read_text()),
    )
    assert {k: resumed[k] for k in FIGURES} == {k: reference[k] for k in FIGURES}  # digit for digit
    assert resumed["status"] == "completed"
    got, want = scalars(run), scalars(unbroken)
    for tag in ("train/loss", "train/acc", "test/acc", "train/lr"):
        assert got[tag] == want[tag], tag  # same steps, same values: nothing repeated or missing
    assert len(got["train/loss"]) == 15


NEXT_CHAPTER = ("model.norm=batch", "model.dropout=0.3", "data.augment=true")


def test_the_next_chapters_knobs_resume_exactly(tmp_path, fashion_mnist):
    """Batch norm's running statistics, dropout's random stream and the augmentation's draws all continue where the
    stop left them: the rerun's figures and curves are an unbroken run's, digit for digit."""
    unbroken = run_cli(*RESUME_RUN, *NEXT_CHAPTER, "hydra.run.dir=unbroken", cwd=tmp_path)
    assert unbroken.returncode == 0, unbroken.stderr
    proc = interrupt_in_epoch_2(tmp_path, signal.SIGTERM, "run", NEXT_CHAPTER)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stdout.read()
    state = torch.load(tmp_path / "run" / LAST, weights_only=False)
    assert state["progress"]["epoch"] == 1 and state["progress"]["step"] > 0  # stopped mid-epoch
    assert "1.running_mean" in state["model"]
    rerun = run_cli(*RESUME_RUN, *NEXT_CHAPTER, "hydra.run.dir=run", cwd=tmp_path)
    assert rerun.returncode == 0 and "Resuming" in rerun.stdout + rerun.stderr, rerun.stderr
    resumed, reference = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("run", "unbroken"))
    assert {k: resumed[k] for k in FIGURES} == {k: reference[k] for k in FIGURES}
    got, want = scalars(tmp_path / "run"), scalars(tmp_path / "unbroken")
    for tag in ("train/loss", "train/acc", "test/acc"):
        assert got[tag] == want[tag], tag


def test_corrupt_checkpoint_is_refused_not_retrained(tmp_path, fashion_mnist):
    proc = interrupt_in_epoch_2(tmp_path, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM
    last = tmp_path / "run" / LAST
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    damaged = last.read_bytes()
    rerun = run_cli(*RESUME_RUN, "hydra.run.dir=run", cwd=tmp_path)
    assert rerun.returncode == 2
    assert "checkpoints/last.pt: cannot resume from this checkpoint" in rerun.stderr and "Traceback" not in rerun.stderr
    assert last.read_bytes() == damaged
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "interrupted"


def test_other_settings_in_the_same_folder_are_refused(unbroken):
    proc = run_cli(*RESUME_RUN, "optimizer.lr=0.3", f"hydra.run.dir={unbroken}", cwd=unbroken.parent)
    assert proc.returncode == 2
    assert "holds a run with other settings (optimizer.lr=0.9 there, 0.3 now)" in proc.stderr


WRITER = """
import sys
from pathlib import Path
from lenet_exp.files import atomic_write
i = 0
while True:
    atomic_write(Path(sys.argv[1]), bytes([i % 251]) * 4_000_000)
    i += 1
"""


def test_kill_during_writes_never_leaves_a_partial_file(tmp_path):
    target = tmp_path / "last.pt"
    atomic_write(target, b"\x07" * 4_000_000)
    for delay in (0.05, 0.13, 0.21, 0.37):
        writer = popen([sys.executable, "-c", WRITER, str(target)])
        time.sleep(delay + 0.5)  # past interpreter start-up, into the write loop
        writer.kill()
        writer.wait()
        content = target.read_bytes()
        assert len(content) == 4_000_000 and content == content[:1] * 4_000_000


def test_same_seed_gives_identical_figures(make_cfg, tmp_path, fashion_mnist):
    cfg = make_cfg("deterministic=true")
    a, b = train(cfg, tmp_path / "a", {}), train(cfg, tmp_path / "b", {})
    assert {k: a[k] for k in FIGURES} == {k: b[k] for k in FIGURES}
    c = train(make_cfg("deterministic=true", "seed=1"), tmp_path / "c", {})
    assert c["history"] != a["history"]
