"""The CUDA path: training on the GPU with each speed option. Skipped where no GPU is present."""

import pytest
import torch

from lenet_exp.train import train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("options", [[], ["device.amp=true"], ["device.compile=true"], ["device.channels_last=false"]])
def test_trains_on_cuda(make_cfg, tmp_path, fashion_mnist, options):
    cfg = make_cfg("device=cuda", "activation=tanh", "optimizer.lr=0.3", "data.limit_train=10000", "data.limit_test=2000", *options)
    metrics = train(cfg, tmp_path, {})
    assert metrics["status"] == "completed" and metrics["device"].startswith("cuda")
    assert metrics["test_acc"] > 0.6


def test_auto_picks_cuda(make_cfg, tmp_path, fashion_mnist):
    metrics = train(make_cfg("device=auto", "trainer.epochs=1"), tmp_path, {})
    assert metrics["device"].startswith("cuda")


def test_cuda_and_cpu_agree_on_the_data_order(make_cfg, tmp_path, fashion_mnist):
    """The shuffle is drawn on the CPU, so both devices see the same batches; figures agree closely."""
    cpu = train(make_cfg("device=cpu", "deterministic=true"), tmp_path / "cpu", {})
    gpu = train(make_cfg("device=cuda", "deterministic=true"), tmp_path / "gpu", {})
    assert gpu["train_loss"] == pytest.approx(cpu["train_loss"], rel=1e-3)
