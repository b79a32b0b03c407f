"""The two pipelines the bench compares, on the same LeNet, data and steps: (a) the textbook's, a torchvision data set
with ToTensor and a DataLoader (4 workers, shuffled), and a loop that reads loss and accuracy back every step, as the
book does; (b) lenet_exp's, data resident on the device, index-slice batches, syncs only at log points.
`python -m lenet_exp.bench` runs them (bench.py); torch loads here, not there, so its refusals are quick."""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from lenet_exp.build import build
from lenet_exp.data import DATASETS, DatasetSpec, Split
from lenet_exp.loop import Solo
from lenet_exp.schedule import scheduler_for
from lenet_exp.schema import Settings
from lenet_exp.timing import WARMUP, say, sync, timed_steps, train_steps
from lenet_exp.words import plural


def write_torchvision_layout(root: Path, spec: DatasetSpec, train: Split, test: Split) -> None:
    """The raw IDX files torchvision's data set class reads, from tensors already loaded and checked."""
    raw = root / spec.folder / "raw"
    raw.mkdir(parents=True)
    for prefix, split in (("train", train), ("t10k", test)):
        n = len(split).to_bytes(4, "big")
        images, labels = split.images.numpy().tobytes(), split.labels.to(torch.uint8).numpy().tobytes()
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03" + n + (28).to_bytes(4, "big") * 2 + images)
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01" + n + labels)


class Textbook:
    """The book's pipeline: torchvision data set, ToTensor, DataLoader with workers, a syncing loop."""

    def __init__(self, root: Path, spec: DatasetSpec, batch_size: int, workers: int, device: torch.device) -> None:
        from torchvision import transforms

        # The book's 4 workers on a machine with fewer cores is the setting measured: no advice about it.
        warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
        tf = transforms.ToTensor()
        self.train_set = spec.torchvision_class()(str(root), train=True, transform=tf, download=False)
        self.test_set = spec.torchvision_class()(str(root), train=False, transform=tf, download=False)
        DataLoader = torch.utils.data.DataLoader
        self.train_iter = DataLoader(self.train_set, batch_size, shuffle=True, num_workers=workers)
        self.test_iter = DataLoader(self.test_set, batch_size, shuffle=False, num_workers=workers)
        self.device = device

    def run(self, model: nn.Module, optimizer, steps: int) -> float:
        """Train WARMUP + `steps` steps (cycling epochs); returns the seconds of the steps after warm-up."""
        loss_fn, done, metric, start = nn.CrossEntropyLoss(), 0, [0.0, 0.0, 0], 0.0
        while True:
            batches = iter(self.train_iter)
            try:
                for X, y in batches:
                    if done == WARMUP:
                        sync(self.device)
                        start = time.perf_counter()
                    X, y = X.to(self.device), y.to(self.device)
                    optimizer.zero_grad()
                    y_hat = model(X)
                    loss = loss_fn(y_hat, y)
                    loss.backward()
                    optimizer.step()
                    with torch.no_grad():  # the book's Accumulator: float() of each figure, every step
                        metric[0] += float(loss * X.shape[0])
                        metric[1] += float((y_hat.argmax(axis=1) == y).sum())
                        metric[2] += X.shape[0]
                    done += 1
                    if done == steps + WARMUP:
                        sync(self.device)
                        return time.perf_counter() - start
            finally:  # stop the loader's workers before anything else is said, even on Ctrl-C
                getattr(batches, "_shutdown_workers", lambda: None)()

    def train_full_epoch(self, model: nn.Module, optimizer) -> None:
        self.run(model, optimizer, len(self.train_iter) - WARMUP)  # warm-up steps included: one whole pass

    def test_acc(self, model: nn.Module, optimizer=None) -> float:
        model.eval()
        with torch.no_grad():
            correct = sum(
                float((model(X.to(self.device)).argmax(axis=1) == y.to(self.device)).sum()) for X, y in self.test_iter
            )
        model.train()
        return correct / len(self.test_set)


class LenetExp:
    """lenet_exp's own hot loop (train_epoch / evaluate) on device-resident data, through the trainee training uses."""

    def __init__(self, settings: Settings, train: Split, test: Split, device: torch.device) -> None:
        self.s, self.train_set, self.test_set = settings, train.to(device), test.to(device)
        self.epochs = itertools.count()  # each pass over the data its own shuffle, from one measurement to the next

    def run(self, trainee: Solo, steps: int) -> float:
        return timed_steps(trainee, self.train_set, [0], steps, self.s, self.epochs)

    def train_full_epoch(self, trainee: Solo) -> None:
        train_steps(trainee, self.train_set, [0], None, self.s, next(self.epochs))

    def test_acc(self, trainee: Solo) -> float:
        return trainee.evaluate(self.test_set)[0]


def lenet_exp_parts(cfg, settings: Settings, device: torch.device, examples: int = 60_000) -> tuple[Solo]:
    """lenet_exp's trainee as training builds it: model, optimizer, its schedule (`scheduler=cosine`) over `examples`
    an epoch, compiled when `device.compile=true`."""
    model, optimizer = build(cfg, settings, device)
    return (Solo(model, optimizer, settings, scheduler_for(optimizer, settings, examples)),)


def time_to_accuracy(name: str, pipeline, fresh, args: argparse.Namespace, device: torch.device) -> str:
    """Wall seconds (training and evaluation) from scratch until test acc >= --target-acc, with the epochs taken."""
    say(f"{name}: training from scratch to test acc {args.target_acc} (at most {args.max_epochs} epochs)")
    parts = fresh()
    sync(device)
    start = time.perf_counter()
    for epoch in range(1, args.max_epochs + 1):
        pipeline.train_full_epoch(*parts)
        if pipeline.test_acc(*parts) >= args.target_acc:
            sync(device)
            return f"{time.perf_counter() - start:.1f} s ({epoch} epochs)"
    return f"not in {args.max_epochs} epochs"


def run(args: argparse.Namespace, cfg, settings: Settings, device: torch.device, train: Split, test: Split) -> None:
    """Alternate the two pipelines, time both to the target accuracy, print the table."""
    # Same seed, so the same initial weights each time; the book's model keeps the default NCHW layout.
    book = replace(settings, device=replace(settings.device, channels_last=False))
    fresh = {
        "textbook": lambda: build(cfg, book, device),
        "lenet_exp": lambda: lenet_exp_parts(cfg, settings, device, len(train)),
    }
    with tempfile.TemporaryDirectory() as root:
        spec = DATASETS[settings.data.name]
        write_torchvision_layout(Path(root), spec, train, test)
        pipelines = {
            "textbook": Textbook(Path(root), spec, settings.data.batch_size, args.workers, device),
            "lenet_exp": LenetExp(settings, train, test, device),
        }
        speeds: dict[str, list[float]] = {name: [] for name in pipelines}
        for repeat in range(1, args.repeats + 1):
            for name, pipeline in pipelines.items():
                say(f"[{repeat}/{args.repeats}] {name}: timing {args.steps} steps ...")
                seconds = pipeline.run(*fresh[name](), args.steps)
                speeds[name].append(args.steps * settings.data.batch_size / seconds)
                say(f"[{repeat}/{args.repeats}] {name}: {speeds[name][-1]:,.0f} examples/sec")
        timed = pipelines if args.target_acc > 0 else {}
        ttas = {name: time_to_accuracy(name, p, fresh[name], args, device) for name, p in timed.items()}

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    options = ", ".join(f"{k}={getattr(settings.device, k)}" for k in ("channels_last", "amp", "compile"))
    given = f", overrides: {' '.join(args.overrides)}" if args.overrides else ""
    print(
        f"LeNet, {spec.folder}, batch {settings.data.batch_size}, {args.steps} timed steps x "
        f"{plural(args.repeats, 'alternation')} on {device} ({name}), torch {torch.__version__}, {options}{given}"
    )
    tta_header = f"{f'time to {args.target_acc} test acc':>28}" if ttas else ""
    print(f"{'pipeline':<12}{'examples/sec (mean)':>22}{'min':>12}{'max':>12}{tta_header}")
    for name, values in speeds.items():
        tta = f"{ttas[name]:>28}" if ttas else ""
        print(f"{name:<12}{statistics.mean(values):>22,.0f}{min(values):>12,.0f}{max(values):>12,.0f}{tta}")
    ratio = statistics.mean(speeds["lenet_exp"]) / statistics.mean(speeds["textbook"])
    print(f"ratio lenet_exp / textbook: {ratio:.2f}x")
