"""The parts of a run, built from a composed config and checked before anything trains: the device, the model
with its activation, the optimizer, and one trial step on a copy that must work with the data set's shapes."""

from __future__ import annotations

import copy
import inspect
import re

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lenet_exp.cluster import cpus_given
from lenet_exp.data import DATASETS, DatasetSpec
from lenet_exp.errors import ConfigError
from lenet_exp.schema import BOOL, NO_CUDA, Settings, check_value, hint
from lenet_exp.words import one_line


def build(cfg: DictConfig, settings: Settings, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Instantiate the model (with the chosen activation) and the optimizer from their `_target_` nodes."""
    torch.manual_seed(settings.seed)
    model = build_model(cfg, settings, device)
    optimizer = _instantiate(cfg, "optimizer", lambda: instantiate(cfg.optimizer)(model.parameters()))
    return model, optimizer


def build_model(cfg: DictConfig, settings: Settings, device: torch.device) -> nn.Module:
    """The model with its activation, on `device` in the config's memory layout (its weights as the seed draws them)."""
    layout = torch.channels_last if settings.device.channels_last else torch.contiguous_format
    activation = _instantiate(cfg, "activation", lambda: instantiate(cfg.activation, _partial_=True))
    model = _instantiate(cfg, "model", lambda: instantiate(cfg.model, activation=activation))
    return model.to(device, memory_format=layout)


def _instantiate(cfg: DictConfig, group: str, make):
    """make(), with a bad `_target_` or argument turned into a one-line ConfigError naming the group."""
    try:
        return make()
    except (InstantiationException, TypeError, ValueError) as e:
        cause = e.__cause__ if isinstance(e, InstantiationException) and e.__cause__ else e
        unknown = re.search(r"unexpected keyword argument '([^']+)'", str(cause))
        close = hint(f"{group}.{unknown.group(1)}", [f"{group}.{k}" for k in cfg[group]]) if unknown else ""
        raise ConfigError(f"{group}: {one_line(cause)}" + (f".{close}" if close else "")) from None


def resolve_device(name: str) -> torch.device:
    """The torch device for `device.name`; auto picks CUDA, then Apple MPS, then the CPU."""
    has_mps = torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(NO_CUDA)
    if name == "mps" and not has_mps:
        raise ConfigError("device.name=mps: Apple MPS is not available on this machine; use device=auto or device=cpu")
    return torch.device(name)


def setup_device(s: Settings) -> torch.device:
    """The training device, with the determinism and CPU-thread settings applied (training and the bench alike):
    bitwise-repeatable kernels or the fastest ones (CUBLAS_WORKSPACE_CONFIG is set when lenet_exp is imported)."""
    device = resolve_device(s.device.name)
    if torch.are_deterministic_algorithms_enabled() != s.deterministic:  # the call imports torch's compiler (~1 s)
        torch.use_deterministic_algorithms(s.deterministic)
    torch.backends.cudnn.benchmark = not s.deterministic
    if threads := s.device.threads or cpus_given():  # a Slurm job uses the CPUs it was given, no more
        torch.set_num_threads(threads)
    return device


def check_trainable(cfg: DictConfig, model: nn.Module, spec: DatasetSpec, name: str, device: torch.device) -> None:
    """One training step on two blank images of the data set, on a copy: the model must take them and give a logit
    per class, and the optimizer must be able to take a step with its settings (torch judges their values)."""
    x = torch.zeros(2, spec.channels, spec.image_size, spec.image_size, device=device)
    size = f"{spec.channels}x{spec.image_size}x{spec.image_size}"
    trial = copy.deepcopy(model)
    try:
        out = trial(x)
    except Exception as e:
        raise ConfigError(f"model cannot take {name} images ({size}): {one_line(e, 300)}") from None
    if out.dim() != 2 or out.shape[1] < spec.classes:
        raise ConfigError(
            f"model gives outputs of shape {tuple(out.shape[1:])} per image; {name} needs at least {spec.classes} "
            "logits (model.num_classes)"
        )
    check_optimizer_types(cfg)
    for rate, where in rates_to_try(cfg):
        step = copy.deepcopy(model)
        try:
            optimizer = instantiate(cfg.optimizer, **({"lr": rate} if rate is not None else {}))(step.parameters())
            for _ in range(2):  # some settings are first used in the second step (SGD's dampening)
                optimizer.zero_grad()
                nn.functional.cross_entropy(step(x), torch.zeros(2, dtype=torch.long, device=device)).backward()
                optimizer.step()
        except Exception as e:
            raise ConfigError(f"optimizer cannot take a step with these settings{where}: {one_line(e, 300)}") from None


def rates_to_try(cfg: DictConfig) -> list[tuple[float | None, str]]:
    """The learning rates a trial step tries, with where the schedule reaches them: the optimizer's own, and
    onecycle's start and end (its base rate divided by its factors)."""
    rates: list[tuple[float | None, str]] = [(None, "")]
    schedule, lr = cfg.get("scheduler"), OmegaConf.select(cfg, "optimizer.lr", default=None)
    if schedule is not None and schedule.get("name") == "onecycle" and isinstance(lr, (int, float)):
        start = lr / schedule.div_factor
        rates += [(start, f" (onecycle's start rate, {start:g})"), (start / schedule.final_div_factor, " (its end)")]
    return rates


def check_optimizer_types(cfg: DictConfig) -> None:
    """A setting left to the optimizer's class (`+optimizer.dampening=...`) has its default's type, read or not."""
    try:
        signature = inspect.signature(get_class(cfg.optimizer._target_)).parameters
    except Exception:
        return  # not a class we can read: the trial step decides
    number = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number")
    for key, value in OmegaConf.to_container(cfg.optimizer, resolve=True).items():
        default = signature[key].default if key in signature else None
        if isinstance(default, (bool, int, float)):
            check_value(f"optimizer.{key}", value, BOOL if isinstance(default, bool) else number)


def check_buildable(cfg: DictConfig) -> None:
    """Build the model on the CPU and take one training step with it: a sweep's check of every model it varies."""
    s = Settings.from_cfg(cfg)
    model, _ = build(cfg, s, torch.device("cpu"))
    check_trainable(cfg, model, DATASETS[s.data.name], s.data.name, torch.device("cpu"))


def cpu_weights(model: nn.Module) -> dict:
    """The model's weights as CPU tensors: best.pt and final.pt load on any machine without map_location."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}
