"""Fixtures: a compose() of the real config shrunk to a quick CPU run writing under tmp_path."""

from __future__ import annotations

import os

import pytest
import torch
from helpers import SMALL, SYSTEM_FASHION_MNIST, kill_started
from omegaconf import DictConfig

from lenet_exp.config import compose_config

# One CPU thread per test process: the suite runs two test processes on two cores, and each training subprocess
# inherits this, so threads never outnumber cores (oversubscribed, torch's threads spin and wait on each other).
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# Test files, the longest first (seconds summed over their tests, measured): two workers each take the next file as
# they finish one, so the longest going first leaves no long file running alone at the end. Others follow, in order.
LONGEST_FIRST = [
    "test_run_folder.py",  # 285 s
    "test_sweep.py",  # 184 s
    "test_slurm.py",  # 168 s, mostly waiting on the cluster
    "test_search.py",  # 136 s
    "test_fused.py",  # 134 s
    "test_reliability.py",  # 56 s
    "test_command_line.py",  # 40 s
]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's own order kept


@pytest.fixture(scope="session")
def fashion_mnist() -> None:
    """Real Fashion-MNIST from the system package (.ci/run installs it)."""
    if not (SYSTEM_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("needs the dataset-fashion-mnist system package")


@pytest.fixture
def make_cfg(tmp_path):
    """compose(overrides) -> the project's config, shrunk to a quick CPU run with data.root under tmp_path."""

    def make(*overrides: str, small: bool = True) -> DictConfig:
        base = [*SMALL, f"data.root={tmp_path / 'data'}"] if small else []
        return compose_config([*base, *overrides])

    return make


@pytest.fixture(autouse=True)
def _restore_torch_state():
    """Tests that train in-process must not leak determinism settings into each other."""
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test():
    """Whatever a test started (the command, a sweep's workers, a server) is killed when the test ends, passed, failed
    or timed out."""
    yield
    kill_started()
