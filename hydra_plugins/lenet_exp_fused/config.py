"""The fused launcher's settings: `hydra/launcher=fused hydra.launcher.max_models=N`."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.lenet_exp_fused.fused_launcher.FusedLauncher"
    max_models: int = 64  # most jobs trained together as one fused model (>= 1; 1: every job alone)


ConfigStore.instance().store(group="hydra/launcher", name="fused", node=FusedLauncherConf, provider="lenet_exp")
