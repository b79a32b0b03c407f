"""The halving sweeper's config: `hydra/sweeper=halving`, set by the `hparams_search=halving` preset (its keys and
their rules are lenet_exp's HalvingSettings)."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from lenet_exp.plugins import HalvingSettings


@dataclass
class HalvingSweeperConf(HalvingSettings):
    _target_: str = "hydra_plugins.lenet_exp_halving.halving_sweeper.HalvingSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="halving", node=HalvingSweeperConf, provider="lenet_exp")
