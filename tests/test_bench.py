"""The benchmark command runs both pipelines and prints their figures (speed itself is not asserted)."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from helpers import HANG, popen, run_cli

from lenet_exp.build import build
from lenet_exp.data import Split
from lenet_exp.loop import Solo
from lenet_exp.pipelines import LenetExp
from lenet_exp.schema import Settings
from lenet_exp.signals import Interrupted


@pytest.mark.slow
def test_bench_prints_both_pipelines_and_the_ratio(tmp_path, fashion_mnist):
    args = [
        "--steps",
        "6",
        "--repeats",
        "2",
        "--workers",
        "1",
        "--target-acc",
        "0.2",
        "--max-epochs",
        "3",
        "activation=tanh",
        "optimizer.lr=0.3",
        "data.limit_train=3072",
        "data.limit_test=1000",
    ]
    proc = run_cli("--device", "cpu", *args, cwd=tmp_path, module="lenet_exp.bench")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("LeNet, FashionMNIST, batch 256, 6 timed steps x 2 alternations on cpu")
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^(textbook|lenet_exp)\s+([\d,]+)", proc.stdout, re.M)}
    assert set(rows) == {"textbook", "lenet_exp"} and all(int(v.replace(",", "")) > 0 for v in rows.values())
    assert re.search(r"ratio lenet_exp / textbook: \d+\.\d\dx", proc.stdout)
    assert proc.stdout.count("epochs)") == 2  # both reached 0.2 test accuracy within --max-epochs
    assert "Warning" not in proc.stderr  # the book's 4 workers on 2 cores is deliberate, not worth a warning
    assert (
        "[1/2] textbook: timing 6 steps ..." in proc.stderr and "[2/2] lenet_exp: timing 6 steps ..." in proc.stderr
    )  # progress


BAD_ARGS = {
    ("--steps", "0"): "argument --steps: '0': expected an integer >= 1",
    ("--repeats", "two"): "argument --repeats: 'two': expected an integer >= 1",
    ("--workers", "-1"): "argument --workers: '-1': expected an integer >= 0",
    ("--target-acc", "1.5"): "argument --target-acc: '1.5': expected a test accuracy in [0, 1)",
    ("--device", "tpu"): "argument --device: invalid choice: 'tpu'",
    ("device.nope=1",): "device.nope: no such key. (python -m lenet_exp --cfg job lists every key)",
    ("data=imagenet",): "data=imagenet: unknown option of group 'data'; allowed: fashion_mnist, mnist",
    ("data.batch_size=0",): "data.batch_size=0 is not allowed: expected an integer >= 1",
    ("data=mnist", "data.root=nowhere", "data.download=false"): "mnist: files not found in nowhere/MNIST/raw",
    ("--sweep", "0"): "argument --sweep: '0': expected an integer >= 1",
    (
        "--sweep",
        "2",
        "--repeats",
        "3",
    ): "--repeats is for the pipeline comparison; --sweep measures each arrangement once",
    ("--jobs", "2"): "--jobs is for --sweep K",
}


@pytest.mark.parametrize("args", BAD_ARGS, ids=" ".join)
def test_bench_refuses_bad_input_in_one_line(tmp_path, args):
    proc = run_cli(*args, cwd=tmp_path, module="lenet_exp.bench", timeout=HANG)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("Error: ") and BAD_ARGS[args] in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_bench_on_missing_cuda_says_so(tmp_path):
    proc = run_cli("--device", "cuda", cwd=tmp_path, module="lenet_exp.bench", timeout=HANG)
    assert (
        proc.returncode == 2
        and proc.stderr.strip()
        == "Error: device=cuda: CUDA is not available on this machine; use device=auto or device=cpu"
    )


@pytest.mark.slow
def test_ctrl_c_ends_the_bench_without_figures(tmp_path, fashion_mnist):
    # Many steps, so SIGINT lands in the timed loops; whichever pipeline it hits, the bench stops there.
    cmd = [sys.executable, "-m", "lenet_exp.bench", "--device", "cpu", "--steps", "100000", "--workers", "1"]
    proc = popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline() == "[1/3] textbook: timing 100000 steps ...\n"
    time.sleep(1.5)  # into the DataLoader's loop, workers running
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 130 and out == ""
    assert err.strip().splitlines()[-1] == "Interrupted by SIGINT: no figures printed"


def test_ctrl_c_in_lenet_exps_loop_stops_the_bench(make_cfg):
    """lenet_exp's loop turns SIGINT into a flag (to checkpoint in training); the bench must still stop on it."""
    cfg = make_cfg()
    settings = Settings.from_cfg(cfg)
    data = Split(torch.randint(0, 256, (2048, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (2048,)))
    pipeline = LenetExp(settings, data, data, torch.device("cpu"))
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(Interrupted) as stopped:  # without it the 1,000 steps would run to the end
        pipeline.run(Solo(*build(cfg, settings, torch.device("cpu")), settings), steps=1000)
    assert stopped.value.signum == signal.SIGINT


def test_bench_compiles_lenet_exps_model_when_asked(make_cfg):
    from lenet_exp.pipelines import lenet_exp_parts

    for compile_ in (False, True):
        cfg = make_cfg(f"device.compile={str(compile_).lower()}")
        (trainee,) = lenet_exp_parts(cfg, Settings.from_cfg(cfg), torch.device("cpu"))
        assert isinstance(trainee.net, torch._dynamo.eval_frame.OptimizedModule) == compile_
