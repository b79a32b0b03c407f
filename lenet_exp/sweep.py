"""What a sweep varies: its swept keys, and job folder names made of them (`3_activation=relu,optimizer.lr=0.1`).

Swept keys are the command-line overrides with several values or a sweep function
(`optimizer.lr=0.1,0.3`, `range(...)`, `choice(...)`) and the keys of `hydra.sweeper.params`
(what the Optuna preset searches). Keys every job shares stay out of the folder names.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

IGNORED = ("hydra.", "hparams_search")  # overrides that say how to sweep, not what is trained


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def swept_keys(sweep_dir: Path, sweeper_params: DictConfig | dict | None = None) -> list[str]:
    """The keys a sweep varies, from its multirun.yaml (basic sweeper) and the sweeper's params."""
    keys = list(sweeper_params or {})
    saved = sweep_dir / "multirun.yaml"
    if saved.is_file():
        hydra_cfg = OmegaConf.load(saved).hydra
        keys += list(hydra_cfg.sweeper.get("params") or {})
        parsed = OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task))
        keys += [o.key_or_group for o in parsed if o.is_sweep_override()]
    return [k for k in dict.fromkeys(keys) if not k.startswith(IGNORED)]


def job_dirname(*, _root_: DictConfig) -> str:
    """Resolver for hydra.sweep.subdir: the job's values of the swept keys, sorted, as `key=value,...`."""
    hc = _root_.hydra
    keys = set(swept_keys(Path(hc.sweep.dir), hc.sweeper.get("params")))
    overrides = [o.lstrip("+~") for o in hc.overrides.task if _key(o) in keys]
    return ",".join(sorted(overrides)).replace("/", "_") or "job"


OmegaConf.register_new_resolver("lenet_exp.job_dirname", job_dirname, replace=True)
