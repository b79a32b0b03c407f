"""The Hydra side of the fused launcher: a batch of jobs in, one JobReturn per job out (lenet_exp.launch does the
work)."""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class FusedLauncher(Launcher):
    """Jobs of lenet_exp's task that can train together do, as one fused model; others run as the basic launcher's."""

    def __init__(self, max_models: int) -> None:
        self.max_models = max_models
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from lenet_exp import launch  # here, not at the top: Hydra imports every plugin at each start

        return launch.launch_here(self, job_overrides, initial_job_idx)
