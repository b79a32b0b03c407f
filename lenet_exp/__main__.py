"""Command line: train one configuration, or sweep many with --multirun.

    python -m lenet_exp                                   # the textbook run (same as `lenet-exp`)
    python -m lenet_exp optimizer.lr=0.3 activation=relu data=mnist device=cuda
    python -m lenet_exp --multirun optimizer.lr=0.1,0.3,0.9 activation=sigmoid,relu
    python -m lenet_exp resume=outputs/2026-11-27/21-40-00  # continue an interrupted run in place
    python -m lenet_exp --help                            # config groups and options
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from lenet_exp import run_files, sweep  # noqa: F401  (sweep registers the job folder resolver)
from lenet_exp.config import CONFIG_PATH, ConfigError, check_overrides
from lenet_exp.data import DataError
from lenet_exp.summarize import write_summary
from lenet_exp.train import Interrupted, train

log = logging.getLogger("lenet_exp")
USER_ERRORS = (ConfigError, DataError, run_files.CheckpointError)
LAUNCHER_PID = "LENET_EXP_LAUNCHER_PID"  # the command's own process, seen by jobs that run in worker processes


def hparams_of(cfg: DictConfig, overrides: list[str], choices: dict) -> dict:
    """The run's key settings for TensorBoard's HParams dashboard: group choices, main values, every override."""
    keys = ["optimizer.lr", "data.batch_size", "trainer.epochs", "seed"]
    keys += [o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o and not o.startswith("hydra")]
    settings = {g: choices[g] for g in ("model", "activation", "optimizer", "data", "device") if g in choices}
    for key in keys:
        value = OmegaConf.select(cfg, key, default=None)
        if key not in settings and value is not None:
            settings[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return settings


def _fail(run_dir: Path, error: str) -> float:
    """Record a failed sweep job so the summary shows it, and let the sweep go on."""
    metrics = run_files.read_metrics(run_dir) or {"epochs_completed": 0}
    run_files.write_metrics(run_dir, {**metrics, "status": "failed", "error": error})
    return math.nan


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
def task(cfg: DictConfig) -> float:
    """Hydra's task function: train in the run folder and return the final test accuracy for sweepers."""
    hc = HydraConfig.get()
    run_dir, multirun = Path(hc.runtime.output_dir), hc.mode == RunMode.MULTIRUN
    launcher = int(os.environ.get(LAUNCHER_PID, 0))
    in_worker = multirun and os.getppid() == launcher  # joblib or submitit_local: stop if the sweep dies
    try:
        metrics = train(cfg, run_dir, hparams_of(cfg, list(hc.overrides.task), dict(hc.runtime.choices)), launcher if in_worker else None)
        return math.nan if metrics["test_acc"] is None else metrics["test_acc"]
    except Interrupted as e:
        print(f"Interrupted by {e}: checkpoint saved in {run_dir}; rerun the same command to continue.", file=sys.stderr)
        if in_worker:  # end the worker process too: an idle worker would outlive the stopped sweep
            write_summary(Path(hc.sweep.dir))
            logging.shutdown()
            os._exit(128 + e.signum)
        raise SystemExit(128 + e.signum) from None
    except USER_ERRORS as e:
        print(f"Error: {e}", file=sys.stderr)
        if not multirun:
            raise SystemExit(2) from None
        return _fail(run_dir, str(e))
    except Exception as e:
        if not multirun:
            raise
        log.exception("job failed")
        return _fail(run_dir, f"{type(e).__name__}: {e}".splitlines()[0])
    finally:
        if multirun:
            write_summary(Path(hc.sweep.dir))


def expand_resume(argv: list[str]) -> list[str]:
    """Turn `resume=<folder>` into that run's own overrides plus `hydra.run.dir=<folder>`."""
    given = [a for a in argv[1:] if a.startswith("resume=")]
    if not given:
        return argv
    folder = Path(given[-1].split("=", 1)[1])
    saved = folder / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        raise ConfigError(f"resume={folder}: not a run folder (no {saved}); give the folder of an earlier run")
    rest = [a for a in argv[1:] if not a.startswith("resume=")]
    keys = {a.split("=", 1)[0] for a in rest}
    earlier = [o for o in yaml.safe_load(saved.read_text()) or [] if o.split("=", 1)[0] not in keys]
    return [argv[0], *earlier, *rest, f"hydra.run.dir={folder}"]


def main() -> None:
    os.environ[LAUNCHER_PID] = str(os.getpid())
    try:
        sys.argv = expand_resume(sys.argv)
        check_overrides(sys.argv[1:])
    except ConfigError as e:
        print(f"Error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    task()


if __name__ == "__main__":
    main()
