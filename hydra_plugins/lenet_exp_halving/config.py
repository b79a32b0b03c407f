"""The halving sweeper's settings: `hydra/sweeper=halving` (chosen by the `hparams_search=halving` preset, which sets them)."""

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class HalvingSweeperConf:
    _target_: str = "hydra_plugins.lenet_exp_halving.halving_sweeper.HalvingSweeper"
    eta: int = MISSING  # keep the best 1/eta of the settings after each rung
    min_epochs: int = MISSING  # epochs of the first rung
    max_epochs: int | None = MISSING  # epochs of the last rung (null: trainer.epochs)
    params: Any | None = None  # sweep overrides held in the config, as the basic sweeper's


ConfigStore.instance().store(group="hydra/sweeper", name="halving", node=HalvingSweeperConf, provider="lenet_exp")
