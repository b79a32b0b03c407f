"""The Hydra side of one knob at a time: the listed keys from the config and the command line, every job handed to the
launcher as one batch (the jobs themselves are lenet_exp.around's)."""

from __future__ import annotations

from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class AroundSweeper(Sweeper):
    """The base setting, then each listed key changed alone: one batch for the launcher."""

    def __init__(self, params: Any = None) -> None:
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None  # Hydra's validate_batch_is_legal composes with its loader
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from lenet_exp import around  # here, not at the top: Hydra imports every plugin at each start

        around.start(self.config)
        batch = around.jobs(self.config, self.params, arguments)
        self.validate_batch_is_legal(batch)
        return [self.launcher.launch(batch, initial_job_idx=0)]
