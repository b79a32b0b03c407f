"""The Hydra side of the parallel launcher: joblib's launcher, whose pool breaks when a worker process is killed (its
sweep's SIGTERM, the out-of-memory killer); that ends the sweep in one line, with its summary brought up to date,
instead of a traceback."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Sequence
from concurrent.futures import BrokenExecutor
from pathlib import Path

from hydra.core.utils import JobReturn

try:
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
except ImportError:  # joblib's plugin is an extra (pip install ".[parallel]"): without it, no parallel launcher
    from hydra.plugins.launcher import Launcher as JoblibLauncher


class ParallelLauncher(JoblibLauncher):
    """joblib's local processes; a worker that dies ends the sweep in one line (a job it left `running` is recorded
    interrupted, and the rerun continues it), and the sweep's SIGTERM stops every worker after its checkpoint."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        os.environ.setdefault("PYTHONWARNINGS", "ignore:resource_tracker:UserWarning")  # a killed worker's semaphores
        came: list[int] = []
        # Ctrl-C or SIGTERM: the workers stop after their checkpoints (a terminal's Ctrl-C reaches them too, and they
        # take the forwarded one for the same), then end the pool; never joblib's teardown, which kills them mid-save
        forward = lambda signum, frame: (came.append(signum), stop_workers(signum))  # noqa: E731
        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return super().launch(job_overrides, initial_job_idx)
        except BrokenExecutor as e:
            from lenet_exp.launch import (
                stop,
                sweep_end,
            )  # here, not at the top: Hydra imports every plugin at each start

            stop_workers(came[0] if came else signal.SIGTERM)  # the pool is broken: the others stop after checkpoints
            end = sweep_end(Path(str(self.config.hydra.sweep.dir)))
            if came:
                stop(came[0], end)
            codes = re.search(r"exit codes of the workers are (\S+)", str(e))
            why = f" ({codes.group(1).strip('{}')})" if codes else ""  # joblib writes a set: {SIGKILL(-9)}
            raise SystemExit(f"Error: a worker process of the sweep ended unexpectedly{why}; {end}") from None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def stop_workers(signum: int = signal.SIGTERM) -> None:
    """The signal to this process's pool workers still alive (joblib would kill them outright as this process ends,
    and their jobs would stay `running`): each saves its checkpoint and records itself `interrupted`."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
            if int(fields[1]) == os.getpid() and b"popen_loky_posix" in command:  # fields[1]: the parent's pid
                os.kill(int(stat.parent.name), signum)
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
