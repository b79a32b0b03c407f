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
import contextlib
import itertools
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
from lenet_exp.config import compose_config
from lenet_exp.data import DATASETS, DataError, DatasetSpec, Split, load_dataset
from lenet_exp.errors import ConfigError
from lenet_exp.loop import Solo
from lenet_exp.preflight import check_overrides
from lenet_exp.schedule import scheduler_for
from lenet_exp.schema import INT_GE_0, INT_GE_1, Settings
from lenet_exp.signals import Interrupted
from lenet_exp.sweep_bench import job_cost, run_sweep_bench
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


ACCURACY = (lambda v: 0 <= v < 1, "a test accuracy in [0, 1) (0 skips the measurement)")


def _arg_type(parse, rule: tuple):
    """An argparse type: parse the text, then hold it to one of the config's rules (predicate, words)."""

    def convert(text: str):
        with contextlib.suppress(ValueError):
            if rule[0](value := parse(text)):
                return value
        raise argparse.ArgumentTypeError(f"{text!r}: expected {rule[1]}")

    return convert


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """A mistaken argument in one line, exit status 2, as the training command does."""
        self.exit(2, f"Error: {message} (see python -m lenet_exp.bench --help)\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="python -m lenet_exp.bench", description=__doc__.split("\n")[0])
    count, count0, accuracy = _arg_type(int, INT_GE_1), _arg_type(int, INT_GE_0), _arg_type(float, ACCURACY)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="default: the config's device (auto)")
    parser.add_argument(
        "--steps", type=count, default=200, help="timed steps per measurement (default 200; 234 make one epoch)"
    )
    parser.add_argument("--repeats", type=count, help="alternations of the two pipelines (default 3)")
    parser.add_argument("--workers", type=count0, help="DataLoader workers of the textbook pipeline (default 4)")
    parser.add_argument(
        "--target-acc",
        type=accuracy,
        help="also time each pipeline from scratch to this test accuracy, in whole epochs (default 0: skip)",
    )
    parser.add_argument("--max-epochs", type=count, help="epochs at most for --target-acc (default 10)")
    parser.add_argument(
        "--sweep",
        type=count,
        metavar="K",
        help="instead: K settings one after another, in parallel workers and fused; the aggregate examples/sec of each",
    )
    parser.add_argument(
        "--job-cost",
        type=count,
        metavar="K",
        help="instead: a sweep of K >= 2 tiny jobs through the training command; a job's fixed cost beyond training",
    )
    cores = os.cpu_count() or 1
    parser.add_argument(
        "--jobs", type=count, help=f"worker processes of --sweep's parallel arrangement (default {cores}: the cores)"
    )
    parser.add_argument("overrides", nargs="*", help="config overrides for lenet_exp, e.g. device.amp=true")
    args = parser.parse_args(argv)
    given = [k for k in ("repeats", "workers", "target_acc", "max_epochs") if vars(args)[k] is not None]
    if args.sweep and given:
        flag = "--" + given[0].replace("_", "-")
        parser.error(f"{flag} is for the pipeline comparison; --sweep measures each arrangement once (drop {flag})")
    if args.job_cost and (args.sweep or given or args.device):
        flag = "--sweep" if args.sweep else "--device" if args.device else "--" + given[0].replace("_", "-")
        parser.error(f"{flag} does not go with --job-cost, which runs the training command (give overrides instead)")
    if args.job_cost == 1:
        parser.error("--job-cost: expected K >= 2 (it compares a sweep of K jobs with a sweep of one)")
    if not args.sweep and args.jobs is not None:
        parser.error("--jobs is for --sweep K (the parallel arrangement's worker processes)")
    defaults = {"repeats": 3, "workers": 4, "target_acc": 0.0, "max_epochs": 10, "jobs": cores}
    vars(args).update({k: v for k, v in defaults.items() if vars(args)[k] is None})
    return args


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops it, whatever its parent left ignored
    args = parse_args(argv)
    if args.job_cost:
        job_cost(args.job_cost, args.overrides)
        return
    try:  # the config, its checked settings, the device and the data; user mistakes raise ConfigError/DataError
        overrides = [*args.overrides, *([f"device.name={args.device}"] if args.device else [])]
        check_overrides(overrides)
        cfg = compose_config(overrides)
        settings = Settings.from_cfg(cfg)
        device = setup_device(settings)
        train, test = load_dataset(settings.data.name, settings.data.root, settings.data.download)
        train, test = train.head(settings.data.limit_train), test.head(settings.data.limit_test)
        if args.sweep:
            run_sweep_bench(args.sweep, args.steps, args.jobs, cfg, device, train)
        else:
            run(args, cfg, settings, device, train, test)
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


if __name__ == "__main__":
    main()
