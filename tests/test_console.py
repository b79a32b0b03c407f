"""What a newcomer sees: a console that tells the story, a bar that never runs into log lines, a command line that
answers without loading torch."""

import contextlib
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import pytest
from helpers import popen, run_cli

QUICK = ["device=cpu", "data.download=false", "data.limit_train=4096", "data.limit_test=256", "trainer.epochs=2"]
LOG_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\]\[")


def run_on_terminal(*args: str, cwd) -> str:
    """The real command on a pseudo-terminal (stdout and stderr both), as a user at a terminal sees it."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = popen([sys.executable, "-m", "lenet_exp", *args], cwd=cwd, env=env, stdin=child, stdout=child, stderr=child)
    os.close(child)
    out = b""
    with contextlib.suppress(OSError):  # OSError: the child closed the terminal
        while chunk := os.read(main, 65536):
            out += chunk
    os.close(main)
    assert proc.wait(120) == 0, out.decode(errors="replace")[-2000:]
    return out.decode()


@pytest.fixture(scope="module")
def terminal_run(tmp_path_factory, fashion_mnist):
    cwd = tmp_path_factory.mktemp("tty")
    return cwd, run_on_terminal(
        *QUICK, "data.limit_train=16384", "optimizer.lr=0.3", "activation=tanh", "hydra.run.dir=run", cwd=cwd
    )


def frames(raw: str) -> list[list[str]]:
    """Each line of the terminal as the texts written over one another on it: a carriage return starts it over."""
    return [line.split("\r") for line in raw.replace("\r\n", "\n").split("\n")]


def test_the_bar_moves_and_never_shares_a_line_with_a_log_line(terminal_run):
    _, raw = terminal_run
    written = [f for parts in frames(raw) for f in parts]
    first_epoch = [f for f in written if "epoch 1/2:" in f]
    done = [int(m.group(1)) for f in first_epoch if (m := re.search(r"(\d+)/16384", f))]
    assert len(set(done)) >= 8  # it moves during the epoch, not only at its 5 log points
    for epoch in ("epoch 1/2:", "epoch 2/2:"):  # an epoch shows no figures before its own first log point
        first = next(f for f in written if epoch in f)
        assert "loss=" not in first, first
    # the epoch's own speed and figures
    assert any(re.search(r"ex/s, loss=\d\.\d{3} acc=\d\.\d{3}\]", f) for f in first_epoch)
    for part in written:
        if "[lenet_exp" in part:
            assert LOG_LINE.match(part), part  # a log line starts its own line: no bar text before it
            assert "ex/s" not in part
    shown = [parts[-1] for parts in frames(raw)]  # what each line shows at the end
    assert any(line.startswith("[") and "epoch 2/2  loss" in line for line in shown)


def test_the_console_tells_the_story_of_a_run(terminal_run):
    cwd, raw = terminal_run
    shown = [parts[-1] for parts in frames(raw) if LOG_LINE.match(parts[-1])]
    assert any(
        "Data: 60000 train examples from /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz" in line
        for line in shown
    )
    done = r"Done: 2 epochs, test acc 0\.\d{4}, best test acc 0\.\d{4} \(epoch \d\); [\d.]+ s; files in "
    assert re.search(done + re.escape(str(cwd / "run")), shown[-1])


def test_a_resumed_run_says_where_it_continues(terminal_run, tmp_path):
    cwd, _ = terminal_run
    proc = run_cli(f"resume={cwd / 'run'}", "trainer.epochs=3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"Resuming in {cwd / 'run'} from epoch 3 (global step 128)" in proc.stdout


def test_without_a_terminal_there_is_no_bar_only_whole_log_lines(tmp_path, fashion_mnist):
    proc = run_cli(*QUICK, "trainer.epochs=1", "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    assert "ex/s" not in proc.stdout and "\r" not in proc.stdout


@pytest.mark.parametrize(
    "args", [["--help"], ["--cfg", "job"], ["optimizer.lr=abc"], ["lr=0.1"], ["--multirun", "seed=1", "2"]]
)
def test_the_command_line_answers_without_loading_torch(tmp_path, args):
    """torch, torchvision, TensorBoard and matplotlib load only where the work needs them (a second or more each)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lenet_exp", *args], cwd=tmp_path, capture_output=True, text=True
    )
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    heavy = imported & {"torch", "torchvision", "tensorboard", "matplotlib"}
    assert not heavy, sorted(heavy)
    assert list(tmp_path.iterdir()) == []


def test_flags_anywhere_even_info_after_an_override(tmp_path):
    proc = run_cli("optimizer.lr=0.1", "--info", cwd=tmp_path)
    assert proc.returncode == 0 and "Config search path" in proc.stdout and list(tmp_path.iterdir()) == []
