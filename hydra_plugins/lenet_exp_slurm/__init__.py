"""Sweeps, searches and fused groups as Slurm job arrays through submitit: `hydra/launcher=slurm`."""

import signal
import sys

# On a node, this package is loaded as the job unpickles its launcher, before anything heavy: a SIGTERM from here until
# run_group takes the signals over is kept (submitit's own handler would ignore it, and the job would train on)
EARLY: list[int] = []
if getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", "") == "submitit.core._submit":
    signal.signal(signal.SIGTERM, lambda signum, frame: EARLY.append(signum))
