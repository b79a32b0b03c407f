"""lenet_exp from Python (a notebook, a script): compose a config, train it in a folder of its own, load a LeNet.

    import lenet_exp
    cfg = lenet_exp.compose(["activation=relu", "optimizer.lr=0.1", "trainer.epochs=2"])
    result = lenet_exp.train(cfg, "runs/relu")         # logs to the console, as the command does
    result.metrics["test_acc"], result.history["test_acc"], result.model
    model = lenet_exp.load("runs/relu", which="best")  # a LeNet in eval mode, on the CPU
    logits = model(images)                              # images: (B, 1, 28, 28) floats in [0, 1]

The folder is a run folder like any other: `python -m lenet_exp resume=runs/relu trainer.epochs=4` continues it,
`python -m lenet_exp.evaluate runs/relu` looks at it, TensorBoard shows it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lenet_exp.config import compose_config
from lenet_exp.errors import ConfigError
from lenet_exp.preflight import check_overrides
from lenet_exp.run_folder import BEST, FINAL, RECORD
from lenet_exp.schema import Settings, check_config, check_keys
from lenet_exp.words import one_line

CONSOLE_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # the command's own (conf/hydra/job_logging)


@dataclass
class Result:
    """A trained run: its folder, metrics.json's figures (`status`, `test_acc`, `val_acc`, ...), each epoch's figures
    (`history["test_acc"]`, ...), and the trained LeNet (its final weights, in eval mode, on the CPU)."""

    run_dir: Path
    metrics: dict
    model: object

    @property
    def history(self) -> dict[str, list]:
        return self.metrics.get("history") or {}


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config the command would train for these overrides (`["optimizer.lr=0.1", "activation=relu"]`), with the
    command's checks and one-line errors (ConfigError); without Hydra's node. One value per key: sweeps are the
    command's (`python -m lenet_exp --multirun`)."""
    if isinstance(overrides, str):  # not read letter by letter
        raise TypeError(f"compose({overrides!r}): give a list of overrides, compose([{overrides!r}])")
    overrides = list(overrides or [])
    if not all(isinstance(o, str) for o in overrides):
        raise TypeError(f"compose({overrides!r}): overrides are texts, such as 'optimizer.lr=0.1'")
    check_overrides(overrides, multirun=False)
    return compose_config(overrides)


def typed(cfg: DictConfig | dict | str | Path) -> DictConfig:
    """A config as training takes it: one compose() gave, or a run's saved one (`.hydra/config.yaml`, as a
    DictConfig, a dict, the file's path or the run folder's), held to the same rules."""
    if isinstance(cfg, (str, Path)):
        path = Path(cfg) / RECORD / "config.yaml" if Path(cfg).is_dir() else Path(cfg)
        if not path.is_file():
            raise ConfigError(f"{cfg}: not a config file or a run folder (no {RECORD}/config.yaml in it)")
        try:
            cfg = OmegaConf.load(path)
        except Exception as e:  # not YAML, not text
            raise ConfigError(f"{path}: not a config file ({one_line(e, 120)})") from None
    try:
        cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
        if not isinstance(cfg, DictConfig):
            raise ConfigError(f"config: a mapping of keys, not {type(cfg).__name__}")
        check_keys(cfg)  # a key no run reads is refused, as the command refuses it
        check_config(cfg)
    except OmegaConfBaseException as e:  # a dict written by hand that lacks keys, say
        what = f"{e.full_key}: missing" if getattr(e, "full_key", None) else one_line(e).split(" full_key:")[0]
        raise ConfigError(f"config: {what}; start from lenet_exp.compose() and change its values") from None
    return cfg


@contextmanager
def console_log(run_dir: Path, quiet: bool) -> Iterator[None]:
    """The run's lines on the console (unless `quiet`) and in its train.log, as the command writes them; whatever
    logging the caller set up is left as it was."""
    logger = logging.getLogger("lenet_exp")
    handlers = [logging.FileHandler(run_dir / "train.log", delay=True)]
    if not quiet and not logging.getLogger().handlers:  # a notebook with its own logging keeps its own
        handlers.append(logging.StreamHandler())
    for handler in handlers:
        handler.setFormatter(logging.Formatter(CONSOLE_FORMAT))
        logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(level)
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()


def train(cfg: DictConfig | dict | str | Path, run_dir: str | Path, quiet: bool = False) -> Result:
    """Train the configured LeNet in `run_dir` (continuing what an earlier try left there, as the command does) and
    return its Result. Ctrl-C saves a checkpoint first and raises lenet_exp.signals.Interrupted; train again to
    continue. A finished run asked for again is not retrained."""
    from lenet_exp.training import train as train_run

    cfg, run_dir = typed(cfg), Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with console_log(run_dir, quiet):
        metrics = train_run(cfg, run_dir)
    which = "final" if (run_dir / FINAL).is_file() else "best"
    return Result(run_dir, metrics, load(run_dir, which) if (run_dir / BEST).is_file() else None)


def load(run_dir: str | Path, which: str = "best"):
    """The LeNet a run trained, ready for `model(images)`: its `best` epoch's weights (on the choosing split) or its
    `final` ones, in eval mode, on the CPU. FileNotFoundError, naming the file, where the run has none; ConfigError
    where they are damaged."""
    import torch

    from lenet_exp.build import build_model

    if which not in ("best", "final"):
        raise ValueError(f"which={which!r}: expected 'best' or 'final'")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such folder")
    weights = run_dir / (BEST if which == "best" else FINAL)
    if not weights.is_file():
        why = "it has not finished an epoch" if which == "best" else "it has not completed (see its metrics.json)"
        raise FileNotFoundError(f"{weights}: no such checkpoint; {why}")
    cfg = typed(run_dir)
    model = build_model(cfg, Settings.from_cfg(cfg), torch.device("cpu"))
    try:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except Exception as e:  # truncated, empty, not weights, another model's: whatever torch makes of it
        reason = one_line((str(e).strip() or type(e).__name__).splitlines()[0], 120)
        raise ConfigError(f"{weights}: damaged, or not this run's weights ({reason}); train the run again") from None
    return model.eval()
