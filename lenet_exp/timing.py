"""Timing the training loop: warm-up steps excluded, the device synchronised (for both benchmarks)."""

from __future__ import annotations

import itertools
import sys
import time

import torch

from lenet_exp.augment import epoch_augmentation
from lenet_exp.data import Split
from lenet_exp.jobs import Progress
from lenet_exp.loop import epoch_order, train_epoch
from lenet_exp.schema import Settings
from lenet_exp.signals import Interrupted, StopSignals

WARMUP = 5  # steps excluded from the timings (worker start-up, allocator, kernel selection)


def say(text: str) -> None:
    """Progress on stderr, so the table on stdout stays clean."""
    print(text, file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_steps(trainee, data: Split, seeds: list[int], steps: int | None, s: Settings, epoch: int = 0) -> None:
    """`steps` steps of the training loop (None: one whole pass) on the head of `data`, a shuffle per seed's model.
    Ctrl-C or SIGTERM end the benchmark (Interrupted), as in the textbook loop."""
    n = len(data) if steps is None else steps * s.data.batch_size
    part = Split(data.images[:n], data.labels[:n])
    orders = torch.stack([epoch_order(len(part), seed, epoch, data.images.device) for seed in seeds])  # (G, N)
    draws = epoch_augmentation(s.data.augment, seeds, len(part), epoch, data.images.device)
    with StopSignals() as stop:
        for _ in train_epoch(trainee, part, orders, draws, [Progress() for _ in seeds], [True] * len(seeds), s, stop):
            pass
    if stop.signum is not None:
        raise Interrupted(stop.signum)


def timed_steps(trainee, data: Split, seeds: list[int], steps: int, s: Settings, epochs=None) -> float:
    """WARMUP steps, then `steps` timed ones in passes of at most one epoch, each pass with the next epoch's shuffle
    (from `epochs`, else 0, 1, 2, ...); returns the seconds of the timed steps."""
    epochs = epochs or itertools.count()
    train_steps(trainee, data, seeds, WARMUP, s, next(epochs))
    sync(data.images.device)
    start = time.perf_counter()
    while steps > 0:
        chunk = min(steps, len(data) // s.data.batch_size)
        train_steps(trainee, data, seeds, chunk, s, next(epochs))
        steps -= chunk
    sync(data.images.device)  # train_epoch ends with a sync; this one is for the record
    return time.perf_counter() - start
