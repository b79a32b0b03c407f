"""The parallel launcher's config: joblib's keys (`hydra/launcher=parallel`, whose YAML sets n_jobs and the loky
backend), under lenet_exp's launcher class."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from lenet_exp.plugins import ParallelSettings

try:
    from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
except ImportError:  # joblib's plugin is an extra (pip install ".[parallel]"): without it, no parallel launcher
    JobLibLauncherConf = None

if JobLibLauncherConf is not None:

    @dataclass
    class ParallelLauncherConf(ParallelSettings, JobLibLauncherConf):
        _target_: str = "hydra_plugins.lenet_exp_parallel.parallel_launcher.ParallelLauncher"

    ConfigStore.instance().store(
        group="hydra/launcher", name="lenet_parallel", node=ParallelLauncherConf, provider="lenet_exp"
    )
