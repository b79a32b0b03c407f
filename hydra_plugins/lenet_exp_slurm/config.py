"""The Slurm launcher's settings: submitit's Slurm keys, with defaults for a CPU partition (`hydra/launcher=slurm`)."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf


@dataclass
class LenetSlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.lenet_exp_slurm.slurm_launcher.LenetSlurmLauncher"
    cpus_per_task: int | None = 1  # the job's torch threads follow it (device.threads null)
    gpus_per_node: int | None = None  # null: 1 with device=cuda, none otherwise
    mem_gb: int | None = 4
    timeout_min: int = 60
    array_parallelism: int = 64
    max_num_timeout: int = 3  # requeues after reaching the time limit before a job counts as failed


ConfigStore.instance().store(group="hydra/launcher", name="lenet_slurm", node=LenetSlurmConf, provider="lenet_exp")
