"""The Hydra side of the halving searches: the grid (or the ranges) from the command line, each rung's jobs handed to
the launcher as one batch (the searches themselves are lenet_exp.halving's and lenet_exp.ranged's)."""

from __future__ import annotations

from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class HalvingSweeper(Sweeper):
    """Synchronous successive halving: each rung is one batch for the launcher; losers stop, winners go on in place."""

    def __init__(self, eta: int, min_epochs: int, max_epochs: int | None, params: Any = None) -> None:
        self.eta, self.min_epochs, self.max_epochs = eta, min_epochs, max_epochs
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None  # Hydra's validate_batch_is_legal composes with its loader
        self.launcher = None
        self.launched = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from lenet_exp import halving  # here, not at the top: Hydra imports every plugin at each start

        search = halving.Search(self.config, self.params, arguments, self.eta, self.min_epochs, self.max_epochs)
        return search.run(self._launch)

    def _launch(self, batch: list[list[str]], numbers: dict[int, int]) -> None:
        """A rung's jobs as one batch, numbered on from the last; the launcher's lines show each job's own number."""
        from lenet_exp import halving

        self.validate_batch_is_legal(batch)
        with halving.numbered({self.launched + i: num for i, num in numbers.items()}):
            self.launcher.launch(batch, initial_job_idx=self.launched)
        self.launched += len(batch)


class RangedSweeper(HalvingSweeper):
    """Successive halving over settings drawn from ranges, wave by wave, by Optuna's sampler."""

    def __init__(self, n_trials: int, batch: int, sampler: str, seed: int, **halving: Any) -> None:
        super().__init__(**halving)
        self.drawing = {"n_trials": n_trials, "batch": batch, "sampler": sampler, "seed": seed}

    def sweep(self, arguments: list[str]) -> Any:
        from lenet_exp import ranged  # here, not at the top: Hydra imports every plugin at each start

        search = ranged.RangedSearch(self.config, self.params, arguments, self.eta, self.min_epochs, self.max_epochs,
                                     **self.drawing)  # fmt: skip
        return search.run(self._launch)
