"""The Hydra side of the Slurm launcher: a batch of jobs in, one JobReturn per job out (see _core for the work)."""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
except ImportError:  # submitit's plugin is an extra (pip install ".[slurm]"): without it, no Slurm launcher
    from hydra.plugins.launcher import Launcher as SlurmLauncher


class LenetSlurmLauncher(SlurmLauncher):
    """submitit's Slurm launcher, run by lenet_exp's rules: finished jobs are not resubmitted, a pre-empted job requeues
    itself, Ctrl-C cancels the jobs, a job that ends without a result is one line, not a traceback, and with
    max_models > 1 each fused group is one Slurm job."""

    @property
    def max_models(self) -> int:
        return int(self.params.get("max_models") or 1)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra_plugins.lenet_exp_slurm import _core

        return _core.launch(self, job_overrides, initial_job_idx)

    def run_group(self, overrides: list[list[str]], nums: list[int], singleton_state: dict) -> list[JobReturn]:
        """What a Slurm job runs: its sweep points, alone or as one fused model."""
        from hydra_plugins.lenet_exp_slurm import _core

        return _core.run_group(self, overrides, nums, singleton_state)
