"""Sweeps, searches and fused groups as Slurm job arrays through submitit: `hydra/launcher=slurm`."""
