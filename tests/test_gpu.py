"""The CUDA path: training on the GPU with each speed option. Skipped where no GPU is present."""

import pytest
import torch
from helpers import REPO, SYSTEM_FASHION_MNIST

from lenet_exp.training import train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
# A GPU machine without the system package gets the files in the repo's data/ (scripts/gpu_prepare.sh puts them there).
REPO_DATA = REPO / "data"


@pytest.fixture
def gpu_cfg(make_cfg):
    """make_cfg, reading Fashion-MNIST from the system copy or else from the repo's data/ folder."""
    if (SYSTEM_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        return make_cfg
    if not (REPO_DATA / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("needs Fashion-MNIST: the dataset-fashion-mnist package, or scripts/gpu_prepare.sh")
    return lambda *overrides: make_cfg(f"data.root={REPO_DATA}", *overrides)


@pytest.mark.parametrize("options", [[], ["device.amp=true"], ["device.compile=true"], ["device.channels_last=false"]])
def test_trains_on_cuda(gpu_cfg, tmp_path, options):
    cfg = gpu_cfg(
        "device=cuda", "activation=tanh", "optimizer.lr=0.3", "data.limit_train=10000", "data.limit_test=2000", *options
    )
    metrics = train(cfg, tmp_path, {})
    assert metrics["status"] == "completed" and metrics["device"].startswith("cuda")
    assert metrics["test_acc"] > 0.6


def test_auto_picks_cuda(gpu_cfg, tmp_path):
    metrics = train(gpu_cfg("device=auto", "trainer.epochs=1"), tmp_path, {})
    assert metrics["device"].startswith("cuda")


def test_cuda_and_cpu_agree_on_the_data_order(gpu_cfg, tmp_path):
    """The shuffle is drawn on the CPU, so both devices see the same batches; figures agree closely."""
    cpu = train(gpu_cfg("device=cpu", "deterministic=true"), tmp_path / "cpu", {})
    gpu = train(gpu_cfg("device=cuda", "deterministic=true"), tmp_path / "gpu", {})
    assert gpu["train_loss"] == pytest.approx(cpu["train_loss"], rel=1e-3)


def test_deterministic_job_after_a_non_deterministic_one_in_one_process(gpu_cfg, tmp_path):
    """CUBLAS_WORKSPACE_CONFIG is read at the first cuBLAS call: it must be set before the first job, not the second."""
    train(gpu_cfg("device=cuda", "trainer.epochs=1"), tmp_path / "fast", {})
    metrics = train(gpu_cfg("device=cuda", "trainer.epochs=1", "deterministic=true"), tmp_path / "exact", {})
    assert metrics["status"] == "completed"


def test_gpu_checkpoints_load_on_the_cpu_as_written(gpu_cfg, tmp_path):
    from lenet_exp.model import LeNet

    train(gpu_cfg("device=cuda", "trainer.epochs=1"), tmp_path, {})
    for name in ("best.pt", "final.pt"):
        weights = torch.load(tmp_path / "checkpoints" / name)  # no map_location
        assert all(t.device.type == "cpu" for t in weights.values())
        LeNet(torch.nn.Sigmoid).load_state_dict(weights)


def test_amp_counts_accuracy_from_fp32_logits(gpu_cfg, tmp_path):
    from lenet_exp.build import build
    from lenet_exp.schema import Settings

    cfg = gpu_cfg("device=cuda", "device.amp=true")
    model, _ = build(cfg, Settings.from_cfg(cfg), torch.device("cuda"))
    with torch.autocast("cuda", torch.bfloat16):
        assert model(torch.rand(4, 1, 28, 28, device="cuda")).dtype == torch.float32
