"""The halving sweepers' configs: `hydra/sweeper=halving` (a grid, set by the `hparams_search=halving` preset) and
`hydra/sweeper=ranged` (ranges drawn from, set by `hparams_search=ranged`); their keys and rules are lenet_exp's
HalvingSettings and RangedSettings."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from lenet_exp.plugins import HalvingSettings, RangedSettings


@dataclass
class HalvingSweeperConf(HalvingSettings):
    _target_: str = "hydra_plugins.lenet_exp_halving.halving_sweeper.HalvingSweeper"


@dataclass
class RangedSweeperConf(RangedSettings):
    _target_: str = "hydra_plugins.lenet_exp_halving.halving_sweeper.RangedSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="halving", node=HalvingSweeperConf, provider="lenet_exp")
ConfigStore.instance().store(group="hydra/sweeper", name="ranged", node=RangedSweeperConf, provider="lenet_exp")
