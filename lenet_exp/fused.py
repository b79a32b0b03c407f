"""Horizontal fusion: G LeNets of one shape trained as one model, each with its own weights, data order,
optimizer state and hyperparameters.

The fused model is derived from the G ordinary models (never written twice): every layer holds the G
models' weights stacked on a new first dimension. A convolution over G models is one grouped convolution
(model g's images are channel group g), a linear layer one batched matrix product (models on the batch
dimension), an activation is applied per model (models may differ in it), a batch norm normalises each model's
channels over its own batch and keeps its own running statistics. The loss is the sum of each
model's own mean loss, so each model's gradient is exactly what it would be alone. The optimizer applies
torch's SGD or Adam update with a hyperparameter per model. Each model's weights and optimizer state
convert to and from an ordinary LeNet's and torch optimizer's, so every job's checkpoint is a single
run's.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn import functional as F

from lenet_exp.model import LeNet, full_precision, mixed_precision
from lenet_exp.schema import LENET
from lenet_exp.settings import all_settings

log = logging.getLogger("lenet_exp")
CPU_NOTE = (
    "On the CPU a fused model trains slower than its jobs one after another (0.58-0.87x on the README's machine); "
    "fusion is for GPUs. `python -m lenet_exp.bench --sweep K` measures it on this machine."
)


@functools.cache
def note_cpu() -> None:
    """The CPU note, once per process (not once per group or rung)."""
    log.info(CPU_NOTE)


# Optimizers the fused step reproduces, and the settings each may vary per model.
FUSABLE = {
    "torch.optim.SGD": {"lr", "momentum", "weight_decay", "dampening"},
    "torch.optim.Adam": {"lr", "betas", "eps", "weight_decay"},
}
DEFAULTS = {"momentum": 0.0, "weight_decay": 0.0, "dampening": 0.0, "betas": (0.9, 0.999), "eps": 1e-8}


# a LeNet layer's state dict entry -> the stacked tensor's name prefix in the fused model (w3: layer 3's weights)
STATE = {"weight": "w", "bias": "b", "running_mean": "mean", "running_var": "var", "num_batches_tracked": "count"}


class PerModelActivation(nn.Module):
    """Each model's own activation on its slice of the model dimension; one call where all models share it."""

    def __init__(self, activations: list[nn.Module]) -> None:
        super().__init__()
        kinds: dict[str, list[int]] = {}
        for g, act in enumerate(activations):
            kinds.setdefault(repr(act), []).append(g)
        self.acts = nn.ModuleList(activations[members[0]] for members in kinds.values())
        for i, members in enumerate(kinds.values()):
            self.register_buffer(f"members{i}", torch.tensor(members), persistent=False)

    def forward(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        if len(self.acts) == 1:
            return self.acts[0](x)
        out = torch.zeros_like(x)
        for i, act in enumerate(self.acts):
            members = getattr(self, f"members{i}")
            out = out.index_copy(dim, members, act(x.index_select(dim, members)))
        return out


class FusedLeNet(nn.Module):
    """G LeNets of one layer plan as one module: input (B, G*C, H, W) with model g's images in channel group g,
    output logits (G, B, classes)."""

    def __init__(self, models: list[LeNet]) -> None:
        super().__init__()
        template, self.G = models[0], len(models)
        self.input_shape, self.plan, self.entries = template.input_shape, [], []
        for i, layer in enumerate(template):
            if isinstance(layer, (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)):
                self._stack(i, [m[i] for m in models])
                if isinstance(layer, nn.Conv2d):
                    self.plan.append(("conv", i, (layer.stride, layer.padding)))
                elif isinstance(layer, nn.Linear):
                    self.plan.append(("linear", i, None))
                else:
                    self.plan.append(("norm", i, (layer.eps, layer.momentum)))
            elif isinstance(layer, nn.Flatten):
                self.plan.append(("flatten", i, None))
            elif isinstance(layer, (nn.AvgPool2d, nn.MaxPool2d)):
                self.add_module(f"pool{i}", layer)
                self.plan.append(("pool", i, None))
            elif isinstance(layer, nn.Dropout):  # fusion_key keeps a model with dropout alone
                raise ValueError("a fused model cannot draw each model's own dropout masks")
            else:
                self.add_module(f"act{i}", PerModelActivation([m[i] for m in models]))
                self.plan.append(("act", i, None))

    def _stack(self, i: int, layers: list[nn.Module]) -> None:
        """Layer i's weights (parameters) and running statistics (buffers) of every model, stacked on a first dim."""
        for name in layers[0].state_dict():
            stacked = torch.stack([layer.state_dict()[name].detach() for layer in layers]).clone()
            if name in ("weight", "bias"):
                self.register_parameter(f"{STATE[name]}{i}", nn.Parameter(stacked))
            else:
                self.register_buffer(f"{STATE[name]}{i}", stacked)
            self.entries.append((i, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        G, B = self.G, x.shape[0]
        last = self.plan[-1][1]
        for kind, i, meta in self.plan:
            if kind == "conv":  # (B, G*Cin, H, W) -> (B, G*Cout, H', W'): one grouped convolution
                w, b = getattr(self, f"w{i}"), getattr(self, f"b{i}", None)  # no bias before a batch norm
                x = F.conv2d(x, w.flatten(0, 1), None if b is None else b.flatten(), meta[0], meta[1], groups=G)
            elif kind == "norm":
                x = self._norm(i, x, *meta)
            elif kind == "pool":
                x = getattr(self, f"pool{i}")(x)
            elif kind == "flatten":  # (B, G*C, H, W) -> (G, B, C*H*W)
                x = x.reshape(B, G, -1).transpose(0, 1)
            elif kind == "linear":  # (G, B, in) -> (G, B, out): one batched product; the classifier in fp32, as LeNet's
                w, b = getattr(self, f"w{i}"), getattr(self, f"b{i}", None)
                if i == last:
                    with full_precision(x):
                        return torch.baddbmm(b.float().unsqueeze(1), x.float(), w.float().transpose(1, 2))
                x = (
                    torch.bmm(x, w.transpose(1, 2))
                    if b is None
                    else torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
                )
            else:  # activation: model g's slice is dim 1 of (B, G, C, H, W) in the conv stage, dim 0 of (G, B, F) after
                if x.dim() == 4:
                    x = getattr(self, f"act{i}")(x.view(B, G, -1, *x.shape[2:]), dim=1).view(B, -1, *x.shape[2:])
                else:
                    x = getattr(self, f"act{i}")(x, dim=0)
        return x

    def _norm(self, i: int, x: torch.Tensor, eps: float, momentum: float) -> torch.Tensor:
        """Batch normalisation of each model's own channels over its own batch: the G models' channels side by side
        are one batch norm over G*C channels ((B, G*C, H, W) as it comes; (G, B, F) as (B, G*F)). The stacked
        running statistics are updated in place through their flat views."""
        if self.training:
            getattr(self, f"count{i}").add_(1)
        flat = x if x.dim() == 4 else x.transpose(0, 1).reshape(x.shape[1], -1)
        args = [getattr(self, f"{n}{i}").view(-1) for n in ("mean", "var", "w", "b")]
        y = F.batch_norm(flat, *args, self.training, momentum, eps)
        return y if x.dim() == 4 else y.view(x.shape[1], self.G, -1).transpose(0, 1)

    def model_state(self, g: int) -> dict:
        """Model g's weights (and running statistics) as an ordinary LeNet's state dict, CPU tensors."""
        return {f"{i}.{name}": getattr(self, f"{STATE[name]}{i}")[g].detach().cpu().clone() for i, name in self.entries}

    @torch.no_grad()
    def load_model_state(self, g: int, state: dict) -> None:
        for i, name in self.entries:
            getattr(self, f"{STATE[name]}{i}")[g].copy_(state[f"{i}.{name}"])

    def stacked(self) -> list[nn.Parameter]:
        """The stacked parameters in LeNet's parameter order (each layer's weight, then bias)."""
        return [getattr(self, f"{STATE[name]}{i}") for i, name in self.entries if name in ("weight", "bias")]


class FusedOptimizer:
    """torch's SGD or Adam step (single-tensor form) on stacked parameters, with every hyperparameter per model.

    Models marked inactive (diverged) take no step; their slices are never mixed with the others'.
    """

    def __init__(self, params: list[nn.Parameter], kind: str, settings: list[dict]) -> None:
        self.params, self.kind = params, kind
        device = params[0].device
        value = lambda key: torch.tensor(
            [float(DEFAULTS.get(key, 0.0) if s.get(key) is None else s[key]) for s in settings], device=device
        )  # noqa: E731
        self.lr, self.wd = value("lr"), value("weight_decay")
        if kind == "torch.optim.SGD":
            self.momentum = value("momentum")
            self.dampening = torch.where(
                self.momentum > 0, value("dampening"), torch.zeros_like(self.momentum)
            )  # unused without momentum
        else:
            betas = [tuple(s.get("betas") or DEFAULTS["betas"]) for s in settings]
            self.beta1 = torch.tensor([b[0] for b in betas], device=device)
            self.beta2 = torch.tensor([b[1] for b in betas], device=device)
            self.eps = value("eps")
        self.state: dict[int, dict] = {i: {} for i in range(len(params))}
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @staticmethod
    def _per_model(t: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return t.view(-1, *([1] * (p.dim() - 1)))

    @torch.no_grad()
    def step(self, active: torch.Tensor, factor: float = 1.0) -> None:
        """One step of each active model, at its own learning rate times the group's schedule `factor`."""
        self.steps += 1
        lr = self.lr * factor
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            per = lambda t, p=p: self._per_model(t, p)
            grad = p.grad + per(self.wd) * p
            if self.kind == "torch.optim.SGD":
                buf = self.state[i].get("momentum_buffer")
                if buf is None:
                    buf = self.state[i]["momentum_buffer"] = grad.clone()
                else:
                    buf.mul_(per(self.momentum)).add_(grad * (1 - per(self.dampening)))
                update = torch.where(per(self.momentum) > 0, buf, grad) * per(lr)
            else:
                state = self.state[i]
                if not state:
                    state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
                state["exp_avg"].lerp_(grad, 1 - per(self.beta1))
                state["exp_avg_sq"].mul_(per(self.beta2)).add_(grad * grad * (1 - per(self.beta2)))
                bias1, bias2 = 1 - self.beta1**self.steps, 1 - self.beta2**self.steps
                denom = (state["exp_avg_sq"].sqrt() / per(bias2.sqrt())).add_(per(self.eps))
                update = state["exp_avg"] / denom * per(lr / bias1)
            p.sub_(torch.where(per(active), update, torch.zeros_like(update)))

    def member_state(self, g: int, model: LeNet, optimizer: torch.optim.Optimizer) -> dict:
        """Model g's optimizer state in `optimizer`'s own format (a torch SGD or Adam over `model`'s parameters)."""
        for i, param in enumerate(model.parameters()):
            state = self.state[i]
            if (
                self.kind == "torch.optim.SGD"
                and "momentum_buffer" in state
                and optimizer.param_groups[0]["momentum"] != 0
            ):
                optimizer.state[param] = {"momentum_buffer": state["momentum_buffer"][g].detach().cpu().clone()}
            elif self.kind == "torch.optim.Adam" and state:
                optimizer.state[param] = {
                    "step": torch.tensor(float(self.steps)),
                    "exp_avg": state["exp_avg"][g].detach().cpu().clone(),
                    "exp_avg_sq": state["exp_avg_sq"][g].detach().cpu().clone(),
                }
        return optimizer.state_dict()

    @torch.no_grad()
    def load_member_state(self, g: int, state_dict: dict) -> None:
        """Model g's slice of the state from a single run's optimizer state dict (its last.pt)."""
        states = state_dict.get("state", {})
        for i, p in enumerate(self.params):
            state = states.get(i) or states.get(str(i)) or {}
            if self.kind == "torch.optim.SGD" and "momentum_buffer" in state:
                self.state[i].setdefault("momentum_buffer", torch.zeros_like(p))[g].copy_(state["momentum_buffer"])
            elif self.kind == "torch.optim.Adam" and "exp_avg" in state:
                self.state[i].setdefault("exp_avg", torch.zeros_like(p))[g].copy_(state["exp_avg"])
                self.state[i].setdefault("exp_avg_sq", torch.zeros_like(p))[g].copy_(state["exp_avg_sq"])
                self.steps = int(float(state["step"]))


def step_loss(
    logits: torch.Tensor, labels: torch.Tensor, active: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each model's mean cross-entropy (G,), the sum to backpropagate (inactive ones left out), correct counts (G,)."""
    G, B = labels.shape
    losses = F.cross_entropy(logits.reshape(G * B, -1), labels.reshape(-1), reduction="none").view(G, B).mean(dim=1)
    total = torch.where(active, losses, torch.zeros_like(losses)).sum()
    return losses, total, (logits.argmax(dim=-1) == labels).sum(dim=1)


def model_input(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 (G, B, 28, 28), model g's batch in row g -> float (B, G, 28, 28) in [0, 1]: channel group g is model g."""
    x = images.transpose(0, 1).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def eval_chunk(eval_batch_size: int, models: int) -> int:
    """Test images per fused forward pass: the same memory as one model's eval batch."""
    return max(1, math.floor(eval_batch_size / models))


class FusedTrainee:
    """G runs trained as one fused model: the step, evaluation and each model's files, for the training loop."""

    def __init__(self, runs: list) -> None:
        self.runs, self.s, self.G = runs, runs[0].s, len(runs)
        self.model = FusedLeNet([r.model for r in runs]).to(runs[0].device)
        settings = [
            {k: v for k, v in OmegaConf.to_container(r.cfg.optimizer, resolve=True).items() if not k.startswith("_")}
            for r in runs
        ]
        self.optimizer = FusedOptimizer(self.model.stacked(), runs[0].cfg.optimizer._target_, settings)
        self.active = torch.ones(self.G, dtype=torch.bool, device=runs[0].device)  # (G,) the models that take steps
        for g, r in enumerate(runs):  # a group resumed: each model's optimizer state from its own last.pt
            if r.plan.state:
                self.optimizer.load_member_state(g, r.plan.state["optimizer"])

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (G, B, 28, 28) uint8, labels (G, B): a step of each model; summed losses (G,), correct counts (G,)."""
        x = model_input(images, self.s.device.channels_last)  # (B, G, 28, 28)
        with mixed_precision(self.s.device.amp, x):
            logits = self.model(x)  # (G, B, 10)
            losses, total, correct = step_loss(logits, labels, self.active)
        self.optimizer.zero_grad()
        total.backward()
        self.optimizer.step(self.active, self.factor())
        with warnings.catch_warnings():  # the runs' own optimizers take no step (the fused one does): torch warns
            warnings.simplefilter("ignore", UserWarning)
            for r in (r for r in self.runs if r.scheduler):  # each run's own schedule: its last.pt and its train/lr
                r.scheduler.step()
        return losses.detach() * labels.shape[1], correct

    def factor(self) -> float:
        """The schedule's factor for this step, the same for every model of the group (fusion_key holds the schedule):
        the factor a run alone's LambdaLR applies to its base learning rate."""
        scheduler = self.runs[0].scheduler
        return scheduler.lr_lambdas[0](scheduler.last_epoch) if scheduler else 1.0

    @torch.inference_mode()
    def evaluate(self, data) -> list[float]:
        """Each model's accuracy on the same split, in chunks as large as one model's evaluation batch."""
        self.model.eval()
        correct = torch.zeros(self.G, dtype=torch.long, device=data.labels.device)
        chunk = eval_chunk(self.s.device.eval_batch_size, self.G)
        for i in range(0, len(data), chunk):
            images = data.images[i : i + chunk]
            x = model_input(images.unsqueeze(0).expand(self.G, *images.shape), self.s.device.channels_last)
            with mixed_precision(self.s.device.amp, x):
                correct += (self.model(x).argmax(dim=-1) == data.labels[i : i + len(images)]).sum(dim=1)
        self.model.train()
        return (correct.double() / len(data)).tolist()

    def weights(self, g: int) -> dict:
        return self.model.model_state(g)

    def states(self, g: int) -> tuple[dict, dict]:
        """Model g's weights and optimizer state exactly as its run alone would save them (a run alone resumes them)."""
        run = self.runs[g]
        run.model.load_state_dict(self.model.model_state(g))
        optimizer = instantiate(run.cfg.optimizer)(run.model.parameters())
        for group, own in zip(optimizer.param_groups, run.optimizer.param_groups):  # the rate on its schedule
            group.update({k: own[k] for k in ("lr", "initial_lr") if k in own})
        return run.model.state_dict(), self.optimizer.member_state(g, run.model, optimizer)


@torch.no_grad()
def elementwise(activation: nn.Module) -> bool:
    """Whether the activation maps each number alone, and the same way each time, as a fused model needs: it applies
    it to all models' numbers at once (Softmax over a dimension would mix the models; RReLU draws its own numbers)."""
    x = torch.linspace(-4, 4, 24).reshape(2, 3, 4)
    try:
        whole, one_by_one = activation(x), torch.cat([activation(v) for v in x.reshape(-1, 1)])
    except Exception:
        return False
    return whole.shape == x.shape and torch.allclose(whole.reshape(-1), one_by_one, rtol=1e-5, atol=1e-6)


def why_alone(cfg: DictConfig) -> str | None:
    """Why a job the fused launcher would otherwise fuse must train alone, in one line, or None: dropout draws its
    masks from the run's own random stream, which a fused model of G runs cannot keep for each."""
    if OmegaConf.select(cfg, "model.dropout", default=0):
        return (
            "model.dropout > 0: jobs with dropout train one at a time, not fused (a fused model cannot draw each "
            "model's own dropout masks, so its figures would not be the job's own)"
        )
    return None


def fusion_key(cfg: DictConfig) -> tuple | None:
    """What jobs must share to train as one fused model (data, batch, epochs, layer sizes, device, optimizer class), or
    None for a job that trains alone (another model or optimizer, compiled, optimizer settings the fused step lacks)."""
    optimizer = OmegaConf.to_container(cfg.optimizer, resolve=True)
    allowed = FUSABLE.get(optimizer.get("_target_"))
    if cfg.model.get("_target_") != LENET or allowed is None or cfg.device.compile or why_alone(cfg):
        return None
    if any(k not in allowed and not k.startswith("_") for k in optimizer):
        return None
    try:
        activation = instantiate(cfg.activation)
        if any(True for _ in activation.parameters()) or not elementwise(activation):  # PReLU, Softmax, RReLU: alone
            return None
    except Exception:
        return None
    varying = ("seed", "activation.", "model.init", *(f"optimizer.{k}" for k in allowed))
    return tuple(
        sorted(
            (k, repr(v)) for k, v in all_settings(cfg).items() if not k.startswith(varying) and k != "trainer.progress"
        )
    )


def groups_of(keys: list[tuple | None], max_models: int) -> list[list[int]]:
    """Job indices grouped by fusion key, in order, at most `max_models` a group; a job with no key alone."""
    by_key: dict[tuple, list[int]] = {}
    groups: list[list[int]] = []
    for i, key in enumerate(keys):
        if key is None:
            groups.append([i])
        else:
            by_key.setdefault(key, []).append(i)
    for members in by_key.values():
        groups += [members[j : j + max_models] for j in range(0, len(members), max_models)]
    return sorted(groups, key=lambda g: g[0])


def fused_groups(runs: dict) -> list[list[int]]:
    """The runs (index -> Run) that train as one fused model: one group per fusion key and progress point (jobs
    resumed from different checkpoints train apart); a run no other can join trains alone."""
    points: dict[tuple, list[int]] = {}
    for i, run in runs.items():
        key = fusion_key(run.cfg)
        points.setdefault((key, run.p.epoch, run.p.step, run.p.global_step) if key else ("alone", i), []).append(i)
    if any(len(idxs) > 1 and runs[idxs[0]].device.type == "cpu" for idxs in points.values()):
        note_cpu()
    return list(points.values())
