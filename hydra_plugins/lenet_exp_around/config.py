"""The sweeper's config: `hydra/sweeper=around`, set by the `hparams_search=exercises` preset (its keys and their rules
are lenet_exp's AroundSettings)."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from lenet_exp.plugins import AroundSettings


@dataclass
class AroundSweeperConf(AroundSettings):
    _target_: str = "hydra_plugins.lenet_exp_around.around_sweeper.AroundSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="around", node=AroundSweeperConf, provider="lenet_exp")
