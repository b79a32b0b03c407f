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
import os
import signal
import sys

from lenet_exp.config import compose_config
from lenet_exp.data import DataError, load_dataset
from lenet_exp.errors import ConfigError
from lenet_exp.preflight import check_overrides
from lenet_exp.schema import INT_GE_0, INT_GE_1, Settings
from lenet_exp.signals import Interrupted, signals_held, stop

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
        from lenet_exp.sweep_bench import job_cost

        job_cost(args.job_cost, args.overrides)
        return
    with signals_held() as came:  # torch loads here, once the arguments are read (it swallows a Ctrl-C meanwhile)
        from lenet_exp.build import setup_device
        from lenet_exp.pipelines import run
        from lenet_exp.sweep_bench import run_sweep_bench
    if came:
        stop(came[0], "no figures printed")
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
        stop(getattr(e, "signum", signal.SIGINT), "no figures printed")


if __name__ == "__main__":
    main()
