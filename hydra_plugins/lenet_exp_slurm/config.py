"""The Slurm launcher's config: submitit's Slurm keys (`hydra/launcher=slurm`), with lenet_exp's own (SlurmSettings:
defaults for a CPU partition, and their rules) in place of submitit's where both have one."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from lenet_exp.plugins import SlurmSettings

try:
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
except ImportError:  # submitit's plugin is an extra (pip install ".[slurm]"): without it, no Slurm launcher
    SlurmQueueConf = None

if SlurmQueueConf is not None:

    @dataclass
    class LenetSlurmConf(SlurmSettings, SlurmQueueConf):
        _target_: str = "hydra_plugins.lenet_exp_slurm.slurm_launcher.LenetSlurmLauncher"

    ConfigStore.instance().store(group="hydra/launcher", name="lenet_slurm", node=LenetSlurmConf, provider="lenet_exp")
