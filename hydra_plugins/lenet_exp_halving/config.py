"""The halving sweeper's settings and rules: `hydra/sweeper=halving`, set by the `hparams_search=halving` preset."""

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore

from lenet_exp.schema import INT_GE_1, checked, int_at_least


@dataclass
class HalvingSweeperConf:
    _target_: str = "hydra_plugins.lenet_exp_halving.halving_sweeper.HalvingSweeper"
    eta: int = checked(int_at_least(2))  # keep the best 1/eta of the settings after each rung
    min_epochs: int = checked(INT_GE_1)  # epochs of the first rung
    max_epochs: int | None = checked(int_at_least(1, null="trainer.epochs"))  # epochs of the last rung
    params: Any | None = None  # sweep overrides held in the config, as the basic sweeper's


ConfigStore.instance().store(group="hydra/sweeper", name="halving", node=HalvingSweeperConf, provider="lenet_exp")
