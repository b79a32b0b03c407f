"""Benchmark: the textbook pipeline against lenet_exp's trainer, same LeNet, same data, same steps.

    python -m lenet_exp.bench                      # CPU or GPU, whichever `auto` picks
    python -m lenet_exp.bench --device cuda --repeats 5 --target-acc 0.75
    python -m lenet_exp.bench --sweep 6 --steps 100   # sweep arrangements: sequential, parallel, fused

(a) textbook: torchvision data set + ToTensor + DataLoader (4 workers, shuffled) and a loop
    that reads loss and accuracy back to the host every step, as the book does;
(b) lenet_exp: data resident on the device, index-slice batches, syncs only at log points.
The two alternate `--repeats` times; each figure is the mean, warm-up steps excluded. With
`--target-acc A`, each then trains from scratch until its test accuracy reaches A, timed with
evaluation (whole epochs, so this part is not bounded by `--steps`). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from lenet_exp.build import build, setup_device
from lenet_exp.config import INT_GE_0, INT_GE_1, ConfigError, Settings, check_overrides, compose_config
from lenet_exp.data import DATASETS, DataError, DatasetSpec, Split, load_dataset
from lenet_exp.signals import Interrupted, StopSignals
from lenet_exp.train import Progress, Solo, epoch_order, train_epoch

WARMUP = 5  # steps excluded from the timings (worker start-up, allocator, kernel selection)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_steps(trainee, data: Split, seeds: list[int], steps: int | None, s: Settings, stop, epoch: int = 0) -> None:
    """`steps` steps of the training loop (None: one whole pass) on the head of `data`, a shuffle per seed's model."""
    n = len(data) if steps is None else steps * s.data.batch_size
    part = Split(data.images[:n], data.labels[:n])
    orders = torch.stack([epoch_order(len(part), seed, epoch, data.images.device) for seed in seeds])  # (G, N)
    for _ in train_epoch(trainee, part, orders, [Progress() for _ in seeds], [True] * len(seeds), s, stop):
        pass


def write_torchvision_layout(root: Path, spec: DatasetSpec, train: Split, test: Split) -> None:
    """The raw IDX files torchvision's data set class reads, from tensors already loaded and checked."""
    raw = root / spec.folder / "raw"
    raw.mkdir(parents=True)
    for prefix, split in (("train", train), ("t10k", test)):
        n = len(split).to_bytes(4, "big")
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            b"\0\0\x08\x03" + n + (28).to_bytes(4, "big") * 2 + split.images.numpy().tobytes()
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            b"\0\0\x08\x01" + n + split.labels.to(torch.uint8).numpy().tobytes()
        )


class Textbook:
    """The book's pipeline: torchvision data set, ToTensor, DataLoader with workers, a syncing loop."""

    def __init__(self, root: Path, spec: DatasetSpec, batch_size: int, workers: int, device: torch.device) -> None:
        from torchvision import transforms

        # The book's 4 workers on a machine with fewer cores is the setting measured: no advice about it.
        warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
        tf = transforms.ToTensor()
        self.train_set = spec.torchvision_class()(str(root), train=True, transform=tf, download=False)
        self.test_set = spec.torchvision_class()(str(root), train=False, transform=tf, download=False)
        loader = lambda ds, shuffle: torch.utils.data.DataLoader(ds, batch_size, shuffle=shuffle, num_workers=workers)  # noqa: E731
        self.train_iter, self.test_iter = loader(self.train_set, True), loader(self.test_set, False)
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
        correct = 0
        with torch.no_grad():
            for X, y in self.test_iter:
                correct += float((model(X.to(self.device)).argmax(axis=1) == y.to(self.device)).sum())
        model.train()
        return correct / len(self.test_set)


class LenetExp:
    """lenet_exp's own hot loop (train_epoch / evaluate) on device-resident data, through the trainee training uses."""

    def __init__(self, settings: Settings, train: Split, test: Split, device: torch.device) -> None:
        self.s, self.device = settings, device
        self.train_set, self.test_set = train.to(device), test.to(device)
        self.epoch = 0

    def _epoch(self, trainee: Solo, steps: int | None) -> None:
        with StopSignals() as stop:
            train_steps(trainee, self.train_set, [0], steps, self.s, stop, self.epoch)
        self.epoch += 1
        if stop.signum is not None:  # Ctrl-C or SIGTERM ends the benchmark, as in the textbook loop
            raise Interrupted(stop.signum)

    def run(self, trainee: Solo, steps: int) -> float:
        self._epoch(trainee, WARMUP)
        sync(self.device)
        start = time.perf_counter()
        while steps > 0:  # whole epochs of at most one pass over the data
            chunk = min(steps, len(self.train_set) // self.s.data.batch_size)
            self._epoch(trainee, chunk)
            steps -= chunk
        sync(self.device)  # train_epoch ends with a sync; this one is for the record
        return time.perf_counter() - start

    def train_full_epoch(self, trainee: Solo) -> None:
        self._epoch(trainee, None)

    def test_acc(self, trainee: Solo) -> float:
        return trainee.evaluate(self.test_set)[0]


def lenet_exp_parts(cfg, settings: Settings, device: torch.device) -> tuple[Solo]:
    """lenet_exp's trainee as training builds it: model, optimizer, compiled when `device.compile=true`."""
    return (Solo(*build(cfg, settings, device), settings),)


def time_to_accuracy(pipeline, fresh, target: float, max_epochs: int, device) -> tuple[float | None, int]:
    """Wall seconds (training and evaluation) from scratch until test acc >= target, and the epochs taken."""
    parts = fresh()
    sync(device)
    start = time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        pipeline.train_full_epoch(*parts)
        if pipeline.test_acc(*parts) >= target:
            sync(device)
            return time.perf_counter() - start, epoch
    return None, max_epochs


ACCURACY = (lambda v: 0 <= v < 1, "a test accuracy in [0, 1) (0 skips the measurement)")


def say(text: str) -> None:
    """Progress on stderr, so the table on stdout stays clean."""
    print(text, file=sys.stderr, flush=True)


def _typed(parse, rule: tuple):
    """An argparse type: parse the text, then hold it to one of the config's rules (predicate, words)."""

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not rule[0](value):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {rule[1]}")
        return value

    return convert


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """A mistaken argument in one line, exit status 2, as the training command does."""
        self.exit(2, f"Error: {message} (see python -m lenet_exp.bench --help)\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="python -m lenet_exp.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="default: the config's device (auto)")
    parser.add_argument(
        "--steps",
        type=_typed(int, INT_GE_1),
        default=200,
        help="timed steps per measurement (default 200; 234 make one epoch)",
    )
    parser.add_argument("--repeats", type=_typed(int, INT_GE_1), help="alternations of the two pipelines (default 3)")
    parser.add_argument(
        "--workers", type=_typed(int, INT_GE_0), help="DataLoader workers of the textbook pipeline (default 4)"
    )
    parser.add_argument(
        "--target-acc",
        type=_typed(float, ACCURACY),
        help="also time each pipeline from scratch to this test accuracy, in whole epochs (default 0: skip)",
    )
    parser.add_argument("--max-epochs", type=_typed(int, INT_GE_1), help="epochs at most for --target-acc (default 10)")
    parser.add_argument(
        "--sweep",
        type=_typed(int, INT_GE_1),
        metavar="K",
        help="instead: K settings one after another, in parallel workers and fused; the aggregate examples/sec of each",
    )
    parser.add_argument(
        "--jobs",
        type=_typed(int, INT_GE_1),
        help=f"worker processes of --sweep's parallel arrangement (default {os.cpu_count() or 1}: the cores)",
    )
    parser.add_argument("overrides", nargs="*", help="config overrides for lenet_exp, e.g. device.amp=true")
    args = parser.parse_args(argv)
    pipeline_only = [
        f"--{k.replace('_', '-')}"
        for k in ("repeats", "workers", "target_acc", "max_epochs")
        if getattr(args, k) is not None
    ]
    if args.sweep and pipeline_only:
        parser.error(
            f"{pipeline_only[0]} is for the pipeline comparison; --sweep measures each arrangement once (drop "
            f"{pipeline_only[0]})"
        )
    if not args.sweep and args.jobs is not None:
        parser.error("--jobs is for --sweep K (the parallel arrangement's worker processes)")
    defaults = {"repeats": 3, "workers": 4, "target_acc": 0.0, "max_epochs": 10, "jobs": os.cpu_count() or 1}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def setup(args: argparse.Namespace):
    """The composed config, its checked settings, the device and the data; user mistakes raise ConfigError/DataError."""
    overrides = [*args.overrides, *([f"device.name={args.device}"] if args.device else [])]
    check_overrides(overrides)
    cfg = compose_config(overrides)
    settings = Settings.from_cfg(cfg)
    device = setup_device(settings)
    train, test = load_dataset(settings.data.name, settings.data.root, settings.data.download)
    return cfg, settings, device, train.head(settings.data.limit_train), test.head(settings.data.limit_test)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        if args.sweep:
            from lenet_exp.sweep_bench import run_sweep_bench

            cfg, settings, device, train, _ = setup(args)
            run_sweep_bench(args.sweep, args.steps, args.jobs, cfg, device, train, say)
        else:
            run(args, *setup(args))
    except (ConfigError, DataError) as e:
        print(f"Error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except (KeyboardInterrupt, Interrupted) as e:  # during setup too: loading the data takes a few seconds
        print("Interrupted: no figures printed.", file=sys.stderr)
        raise SystemExit(128 + getattr(e, "signum", signal.SIGINT)) from None


def run(args: argparse.Namespace, cfg, settings: Settings, device: torch.device, train: Split, test: Split) -> None:
    """Alternate the two pipelines, time both to the target accuracy, print the table."""
    # Same seed, so the same initial weights each time; the book's model keeps the default NCHW layout.
    book = replace(settings, device=replace(settings.device, channels_last=False))
    fresh = {"textbook": lambda: build(cfg, book, device), "lenet_exp": lambda: lenet_exp_parts(cfg, settings, device)}
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
        ttas = {}
        if args.target_acc > 0:
            for name, p in pipelines.items():
                say(f"{name}: training from scratch to test acc {args.target_acc} (at most {args.max_epochs} epochs)")
                ttas[name] = time_to_accuracy(p, fresh[name], args.target_acc, args.max_epochs, device)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    options = ", ".join(f"{k}={getattr(settings.device, k)}" for k in ("channels_last", "amp", "compile"))
    given = f", overrides: {' '.join(args.overrides)}" if args.overrides else ""
    runs = f"{args.repeats} alternation{'s' if args.repeats != 1 else ''}"
    print(
        f"LeNet, {spec.folder}, batch {settings.data.batch_size}, {args.steps} timed steps x {runs} on {device} "
        f"({name}), torch {torch.__version__}, {options}{given}"
    )
    tta_header = f"{f'time to {args.target_acc} test acc':>28}" if ttas else ""
    print(f"{'pipeline':<12}{'examples/sec (mean)':>22}{'min':>12}{'max':>12}{tta_header}")
    for name, values in speeds.items():
        tta = ttas.get(name)
        tta_text = (
            ""
            if not tta
            else f"{(f'{tta[0]:.1f} s ({tta[1]} epochs)' if tta[0] is not None else f'not in {tta[1]} epochs'):>28}"
        )
        print(f"{name:<12}{statistics.mean(values):>22,.0f}{min(values):>12,.0f}{max(values):>12,.0f}{tta_text}")
    print(
        f"ratio lenet_exp / textbook: {statistics.mean(speeds['lenet_exp']) / statistics.mean(speeds['textbook']):.2f}x"
    )


if __name__ == "__main__":
    main()
