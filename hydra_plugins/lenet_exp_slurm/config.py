"""The Slurm launcher's settings: submitit's Slurm keys, with defaults for a CPU partition (`hydra/launcher=slurm`)."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
from lenet_exp.schema import INT_GE_0, INT_GE_1, checked, int_at_least


@dataclass
class LenetSlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.lenet_exp_slurm.slurm_launcher.LenetSlurmLauncher"
    cpus_per_task: int | None = checked(int_at_least(1), default=1)  # the job's torch threads follow it
    gpus_per_node: int | None = checked(int_at_least(0, null="1 with device=cuda, none otherwise"), default=None)
    mem_gb: int | None = checked(int_at_least(1, null="the partition's default"), default=4)
    timeout_min: int = checked(INT_GE_1, default=60)
    array_parallelism: int = checked(INT_GE_1, default=64)
    max_num_timeout: int = checked(INT_GE_0, default=3)  # tries that may end at the time limit before a job fails
    nodes: int = checked(int_at_least(1, 1), default=1)  # one node a job: lenet_exp trains on one device
    tasks_per_node: int = checked(int_at_least(1, 1), default=1)  # one process a job
    max_models: int = checked((INT_GE_1[0], "an integer >= 1 (1: a Slurm job for each sweep job)"), default=1)


ConfigStore.instance().store(group="hydra/launcher", name="lenet_slurm", node=LenetSlurmConf, provider="lenet_exp")
