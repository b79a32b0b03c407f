"""The fused launcher's settings: `hydra/launcher=fused hydra.launcher.max_models=N`, most jobs in one fused model."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from lenet_exp.schema import INT_GE_1, checked


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.lenet_exp_fused.fused_launcher.FusedLauncher"
    max_models: int = checked((INT_GE_1[0], "an integer >= 1 (1: every job alone)"), default=64)


ConfigStore.instance().store(group="hydra/launcher", name="fused", node=FusedLauncherConf, provider="lenet_exp")
