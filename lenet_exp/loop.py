"""The training loop, for one model or a fused group of G: epochs of shuffled steps through a trainee (`Solo` for one
model, exactly the textbook's step; lenet_exp.fused's for G), evaluation once an epoch, and each run's files through
its Member. Loss and correct counts stay on the device until a log point: one sync per log point, not per step."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from lenet_exp.augment import augmented, epoch_augmentation
from lenet_exp.build import cpu_weights
from lenet_exp.console import EpochBar
from lenet_exp.data import Split, to_input
from lenet_exp.jobs import Job, Progress, Run
from lenet_exp.member import Member
from lenet_exp.model import mixed_precision
from lenet_exp.schema import Settings
from lenet_exp.signals import Interrupted, StopSignals


def log_steps(num_batches: int, points: int) -> set[int]:
    """The 1-based steps of an epoch at which train loss/acc are recorded: `points` evenly spaced, the last included."""
    points = min(points, num_batches)  # at most one point a step
    return {math.ceil(num_batches * (k + 1) / points) for k in range(points)}


class Solo:
    """One model and its own torch optimizer: the step a run alone takes, exactly as the textbook's loop does."""

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, s: Settings, scheduler: LambdaLR | None = None
    ) -> None:
        self.model, self.optimizer, self.scheduler, self.s = model, optimizer, scheduler, s
        self.net = torch.compile(model) if s.device.compile else model

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (1, B, 28, 28) uint8, labels (1, B): one step; the summed loss and correct count (on device)."""
        x, y = to_input(images[0], self.s.device.channels_last), labels[0]  # (B, 1, 28, 28), (B,)
        with mixed_precision(self.s.device.amp, x):
            logits = self.net(x)  # (B, 10)
            loss = nn.functional.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.scheduler:
            self.scheduler.step()  # per batch
        return loss.detach() * len(y), (logits.argmax(dim=1) == y).sum()

    def evaluate(self, data: Split) -> list[float]:
        return [evaluate(self.net, data, self.s)]

    def weights(self, g: int) -> dict:
        return cpu_weights(self.model)

    def states(self, g: int) -> tuple[dict, dict]:
        return self.model.state_dict(), self.optimizer.state_dict()


def train_epoch(
    trainee,
    data: Split,
    orders: torch.Tensor,
    draws: torch.Tensor | None,
    progress: list[Progress],
    active: list[bool],
    s: Settings,
    stop,
    bar=None,
) -> Iterator[None]:
    """Train the active models from their step to the end of the epoch, or until a signal comes; yields at each log
    point, once `progress` holds the running figures (the caller may then clear a model's `active` flag).

    `orders` (G, N): each model's own shuffle; `draws` (G, N, 3): each model's augmentation of each place in it, or
    None without augmentation. Loss and correct counts stay on the device until a log point.
    """
    bs, first = s.data.batch_size, progress[active.index(True)]
    num_batches = math.ceil(len(data) / bs)
    points = log_steps(num_batches, s.trainer.log_points)
    device = data.images.device
    loss_sums = torch.tensor([p.loss_sum for p in progress], device=device)  # (G,), no sync per step
    corrects = torch.tensor([p.correct for p in progress], device=device)
    stepping = list(active)
    if len(stepping) > 1:  # a fused group: its models that take steps (one diverged before this epoch takes none)
        trainee.active = torch.tensor(stepping, device=device)
    for step in range(first.step, num_batches):
        if stop.signum is not None:
            break
        idx = orders[:, step * bs : (step + 1) * bs]  # (G, B)
        images = (
            data.images[idx] if draws is None else augmented(data.images[idx], draws[:, step * bs : (step + 1) * bs])
        )
        losses, correct = trainee.step(images, data.labels[idx])
        loss_sums += losses
        corrects += correct
        for p in (p for p, on in zip(progress, stepping) if on):
            p.step, p.global_step, p.seen = step + 1, p.global_step + 1, p.seen + idx.shape[1]
        if bar:
            bar.advance(idx.shape[1])
        if step + 1 in points:
            _read_back(progress, stepping, loss_sums, corrects)  # the only syncs of the epoch
            yield
            if active != stepping:  # a model diverged or failed alone: it takes no more steps
                stepping = list(active)
                if not any(stepping):
                    return
                trainee.active = torch.tensor(stepping, device=device)
    _read_back(progress, stepping, loss_sums, corrects)


def _read_back(progress: list[Progress], stepping: list[bool], loss_sums: torch.Tensor, corrects: torch.Tensor) -> None:
    for p, on, loss_sum, n_correct in zip(progress, stepping, loss_sums.tolist(), corrects.tolist()):
        if on:
            p.loss_sum, p.correct = loss_sum, int(n_correct)


@torch.inference_mode()
def evaluate(model: nn.Module, data: Split, s: Settings) -> float:
    """Accuracy on a split, in large batches."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=data.labels.device)
    for i in range(0, len(data), s.device.eval_batch_size):
        x = to_input(data.images[i : i + s.device.eval_batch_size], s.device.channels_last)
        with mixed_precision(s.device.amp, x):
            correct += (model(x).argmax(dim=1) == data.labels[i : i + len(x)]).sum()
    model.train()
    return correct.item() / len(data)


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The shuffle of one epoch: a permutation seeded by (seed, epoch), the same on every device."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).to(device)


def fit(runs: list[Run], jobs: list[Job], trainee, stop: StopSignals, show_bar: bool = False) -> list[dict | Exception]:
    """The training loop, for one run or a fused group: epochs of train_epoch and evaluate; returns each run's figures,
    or the error of one whose own files failed. Any other end leaves each unfinished run's record saying so."""
    members = [Member(run, job, g, trainee, stop) for g, (run, job) in enumerate(zip(runs, jobs))]
    s, device, train_set, val_set, test_set = runs[0].s, runs[0].device, *runs[0].data
    bar = EpochBar(show_bar, len(train_set))
    try:
        for m in members:
            m.attempt(m.open)
        active = [m.active for m in members]
        stop.training = True
        while any(active) and (p := members[active.index(True)].p).epoch < s.trainer.epochs:
            bar.start(p.epoch + 1, s.trainer.epochs, p.seen)
            began = time.perf_counter()
            orders = torch.stack([epoch_order(len(train_set), r.s.seed, p.epoch, device) for r in runs])  # (G, N)
            draws = epoch_augmentation(s.data.augment, [r.s.seed for r in runs], len(train_set), p.epoch, device)
            for _ in train_epoch(trainee, train_set, orders, draws, [r.p for r in runs], active, s, stop, bar):
                bar.figures(p.loss_sum / p.seen, p.correct / p.seen)
                for g, m in enumerate(members):
                    m.attempt(m.log_point)
                    if not math.isfinite(m.p.loss_sum):
                        m.attempt(m.finish, "diverged")
                    active[g] = m.active
            _count_time(members, time.perf_counter() - began)  # train_epoch ends synced
            if stop.signum is not None and p.seen < len(train_set):  # a signal in the epoch: its steps stop there
                bar.close()
                for m in members:
                    m.attempt(m.interrupt, stop.signum)
                raise Interrupted(stop.signum)
            if any(active):
                accs = trainee.evaluate(test_set)
                vals = trainee.evaluate(val_set) if val_set is not None else [None] * len(members)
                for g, m in enumerate(members):
                    m.attempt(m.end_epoch, accs[g], vals[g])
                    active[g] = m.active
        bar.close()
        for m in members:
            m.attempt(m.finish, "completed")
        return [m.done if m.done is not None else m.error for m in members]
    except BaseException as e:
        for m in (m for m in members if m.done is None and m.error is None):
            m.fail(e)
        raise
    finally:
        stop.training = False
        bar.close()
        for m in (m for m in members if m.logger):
            m.logger.close(quietly=True)  # after an error: the error to report is the first one


def _count_time(members: list[Member], seconds: float) -> None:
    for p in (m.p for m in members if m.active):
        p.train_seconds, p.epoch_seconds = p.train_seconds + seconds, p.epoch_seconds + seconds
