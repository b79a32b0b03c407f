"""The fused launcher's config: `hydra/launcher=fused hydra.launcher.max_models=N` (its keys and their rules are
lenet_exp's FusedSettings)."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from lenet_exp.plugins import FusedSettings


@dataclass
class FusedLauncherConf(FusedSettings):
    _target_: str = "hydra_plugins.lenet_exp_fused.fused_launcher.FusedLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="fused", node=FusedLauncherConf, provider="lenet_exp")
