"""Sweep arrangements compared: K settings trained one after another, side by side in worker processes as
`hydra/launcher=parallel` arranges them (each worker with cores / workers CPU threads), and fused into one
model as `hydra/launcher=fused` trains them. Prints the aggregate examples/sec of each.

    python -m lenet_exp.bench --sweep 6 --steps 100
    python -m lenet_exp.bench --sweep 24 --steps 50 --jobs 2 device=cuda
    python -m lenet_exp.bench --job-cost 27       # a job's fixed cost in a sweep: its wall time less its training

The K settings differ in learning rate (geometric, 0.05 to 0.9) and seed, as a sweep's jobs do; each trains
`--steps` timed steps after a warm-up, on the same data the training command uses.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from lenet_exp.build import build
from lenet_exp.data import Split
from lenet_exp.jobs import Progress, Run
from lenet_exp.loop import Solo
from lenet_exp.resume import Plan
from lenet_exp.schema import Settings
from lenet_exp.signals import StopSignals
from lenet_exp.timing import say, timed_steps
from lenet_exp.words import plural


def settings_of_sweep(cfg: DictConfig, k: int) -> list[DictConfig]:
    """K configs of one shape: learning rates spread geometrically over [0.05, 0.9], seeds 0..K-1."""
    configs = [OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)) for _ in range(k)]
    for i, c in enumerate(configs):
        c.optimizer.lr, c.seed = 0.05 * (0.9 / 0.05) ** (i / max(k - 1, 1)), i
    return configs


def one_by_one(configs: list[DictConfig], data: Split, steps: int, device: torch.device, ready=lambda: None) -> float:
    """Each setting alone, one after another (the basic launcher, or a parallel worker's share): the timed seconds."""
    settings = [Settings.from_cfg(c) for c in configs]
    trainees = [Solo(*build(c, s, device), s) for c, s in zip(configs, settings)]
    ready()  # all built; in a parallel worker, this waits for the others, so that the clocks run together
    return sum(timed_steps(t, data, [c.seed], steps, s) for t, c, s in zip(trainees, configs, settings))


def fused(configs: list[DictConfig], data: Split, steps: int, device: torch.device) -> float:
    """All settings as one fused model (the fused launcher): the timed seconds."""
    from lenet_exp.fused import FusedTrainee

    settings = [Settings.from_cfg(c) for c in configs]
    runs = []
    for c, s in zip(configs, settings):
        model, optimizer = build(c, s, device)
        runs.append(Run(c, s, device, model, optimizer, None, Progress(), data, None, data, Plan()))
    return timed_steps(FusedTrainee(runs), data, [c.seed for c in configs], steps, settings[0])


def _worker(configs: list[DictConfig], data: Split, steps: int, device: torch.device, threads: int, barrier, results):
    """One worker process of the parallel arrangement: its share of the settings, one after another, timed together."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the bench's own process's to handle: it stops the workers
    try:
        torch.set_num_threads(threads)
        results.put(one_by_one(configs, data.to(device), steps, device, barrier.wait))
    except BaseException:  # stopped or broken: say so, so the bench ends instead of waiting
        results.put(None)


def parallel(configs: list[DictConfig], data: Split, steps: int, device: torch.device, jobs: int, threads: int):
    """The settings split over `jobs` worker processes, each with `threads` CPU threads (hydra/launcher=parallel):
    the slowest worker's timed seconds."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(jobs), ctx.Queue()
    cpu = data.to(torch.device("cpu"))
    procs = [
        ctx.Process(target=_worker, args=(configs[i::jobs], cpu, steps, device, threads, barrier, results))
        for i in range(jobs)
    ]
    seconds: list = []
    with StopSignals():  # Ctrl-C or SIGTERM raise Interrupted while the bench waits; the workers are stopped below
        try:
            for p in procs:
                p.start()
            while len(seconds) < len(procs):
                try:
                    seconds.append(results.get(timeout=0.5))
                except queue.Empty:
                    if any(p.exitcode not in (None, 0) for p in procs):  # a worker died without a word
                        raise RuntimeError("a worker of the parallel arrangement died") from None
                if None in seconds:
                    raise RuntimeError("a worker of the parallel arrangement stopped before its figures")
        finally:
            for p in procs:  # ended by a signal or an error too: no worker outlives the bench
                if p.is_alive() and len(seconds) < len(procs):
                    p.terminate()
                p.join(timeout=60)
    return max(seconds)


def run_sweep_bench(k: int, steps: int, jobs: int, cfg: DictConfig, device: torch.device, train: Split) -> None:
    """The three arrangements of K settings, each measured once, and a table of their aggregate examples/sec."""
    from lenet_exp.fused import fusion_key

    configs, data = settings_of_sweep(cfg, k), train.to(device)
    jobs = min(jobs, k)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    workers = f"parallel ({plural(jobs, 'worker')} x {plural(threads, 'thread')})"
    arrangements = {
        "sequential": lambda: one_by_one(configs, data, steps, device),
        workers: lambda: parallel(configs, data, steps, device, jobs, threads),
    }
    if fusion_key(configs[0]) is not None:
        arrangements["fused (one model)"] = lambda: fused(configs, data, steps, device)
    else:  # the fused launcher would train these settings alone: there is no fused figure to give
        say("fused: not measured; the fused launcher trains settings like these alone (README: Fused sweeps)")
    figures = {}
    for name, measure in arrangements.items():
        say(f"{name}: {k} settings x {steps} steps ...")
        figures[name] = k * steps * cfg.data.batch_size / measure()
        say(f"{name}: {figures[name]:,.0f} examples/sec")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {os.cpu_count()} cores"
    print(
        f"{k} settings x {steps} timed steps, batch {cfg.data.batch_size}, on {device} ({where}), torch "
        f"{torch.__version__}"
    )
    print(f"{'arrangement':<36}{'examples/sec (aggregate)':>26}{'vs sequential':>16}")
    for name, value in figures.items():
        print(f"{name:<36}{value:>26,.0f}{value / figures['sequential']:>15.2f}x")


def job_cost(k: int, overrides: list[str]) -> None:
    """What a job costs a sweep beyond its training (composing its config, its folder and records, the summary): a
    sweep of one tiny job and one of K, through the real command; the K-1 extra jobs' wall time less their training
    time, per job."""
    tiny = ["data.limit_train=256", "data.limit_test=256", "trainer.epochs=1", *overrides]
    walls, trained = [], 0.0
    with tempfile.TemporaryDirectory() as root:
        for n in (1, k):
            sweep_dir = Path(root) / f"sweep_{n}"
            args = [f"seed={','.join(map(str, range(n)))}", *tiny, f"hydra.sweep.dir={sweep_dir}"]
            say(f"sweep of {plural(n, 'job')} ...")
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "lenet_exp", "--multirun", *args], check=True, capture_output=True)
            walls.append(time.perf_counter() - start)
            if n == k:
                trained = sum(json.loads(m.read_text())["train_seconds"] for m in sweep_dir.glob("*/metrics.json"))
    extra = (walls[1] - walls[0] - trained * (k - 1) / k) / (k - 1)
    print(f"sweep of 1 job: {walls[0]:.2f} s; of {k} jobs: {walls[1]:.2f} s, {trained:.2f} s of it training")
    print(f"fixed cost of a job in a sweep: {extra:.2f} s (wall time less training time, per job beyond the first)")
