"""The Hydra side of the halving search: read the grid from the command line, hand each rung's jobs to the launcher."""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.lenet_exp_halving import _impl
from lenet_exp.signals import Interrupted
from lenet_exp.summary_table import rungs_text
from lenet_exp.sweep import key_of, swept_keys
from lenet_exp.task import refresh_summary, stop
from lenet_exp.words import plural

log = logging.getLogger(__name__)


class HalvingSweeper(Sweeper):
    """Synchronous successive halving: each rung is one batch for the launcher; losers stop, winners go on in place."""

    def __init__(self, eta: int, min_epochs: int, max_epochs: int | None, params: Any = None) -> None:
        self.eta, self.min_epochs, self.max_epochs = eta, min_epochs, max_epochs
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.launcher = None
        self.hydra_context: HydraContext | None = None
        self.launched = 0
        self.outside: dict = {}  # the signal handlers outside the search's own steps: the launcher's and its jobs'

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        sweep_dir = Path(self.config.hydra.sweep.dir)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        given = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        grid = BasicSweeper.split_arguments(parser.parse_overrides(given), None)[0]
        max_epochs = self.max_epochs or int(self.config.trainer.epochs)
        rungs = _impl.rung_epochs(self.min_epochs, self.eta, max_epochs)
        self.last_rung = rungs[-1]
        try:
            jobs = _impl.jobs_of_grid(grid, sweep_dir, swept_keys(sweep_dir, self.params))
        except _impl.RepeatedJob as e:
            print(f"Error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        settings = _impl.settings_of(jobs)
        grid = plural(len(jobs), "job")  # in the summary's words: settings named where seeds make them fewer than jobs
        grid = grid if len(settings) == len(jobs) else f"{plural(len(settings), 'setting')} ({grid})"
        log.info("Successive halving: %s, %s, keeping the best 1/%d after each", grid, rungs_text(rungs), self.eta)
        record = _impl.SearchRecord(sweep_dir, self.eta, rungs, jobs, started=time.monotonic())
        try:
            with _impl.signal_handlers(dict.fromkeys(_impl.STOP_SIGNALS, _impl.interrupt)) as self.outside:
                return _impl.search(settings, rungs, self.eta, train=self._train, record=record)
        except _impl.RungIncomplete as e:
            print(f"Error: {e}", file=sys.stderr)
            raise SystemExit(e.status) from None
        except Interrupted as e:
            refresh_summary(sweep_dir)  # the statuses the search wrote so far (pruned) show in the summary
            stop(e.signum, _impl.STOPPED)
        finally:
            record.save()

    def _schedule_epochs(self, job: _impl.Job) -> int | None:
        """The last rung's epochs for a job on a learning-rate schedule (None on a constant rate)."""
        chosen = next((o.split("=", 1)[1] for o in job.overrides if key_of(o) == "scheduler"), None)
        return None if (chosen or self.config.scheduler.name) == "none" else self.last_rung

    def _train(self, jobs: list[_impl.Job], epochs: int) -> None:
        """One rung for the launcher: each job to `epochs` epochs in its own folder, from its checkpoint. The launcher
        and its jobs handle signals as in any sweep; its lines show each job's own number."""
        batch = [job.launch_overrides(epochs, self._schedule_epochs(job)) for job in jobs]
        self.validate_batch_is_legal(batch)
        numbers = {self.launched + i: job.num for i, job in enumerate(jobs)}
        with _impl.signal_handlers({**self.outside, signal.SIGTERM: _impl.last_word}), _impl.numbered(numbers):
            self.launcher.launch(batch, initial_job_idx=self.launched)
        self.launched += len(batch)
