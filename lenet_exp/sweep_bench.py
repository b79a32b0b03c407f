"""Sweep arrangements compared: K settings trained one after another, side by side in worker processes as
`hydra/launcher=parallel` arranges them (each worker with cores / workers CPU threads), and fused into one
model as `hydra/launcher=fused` trains them. Prints the aggregate examples/sec of each.

    python -m lenet_exp.bench --sweep 6 --steps 100
    python -m lenet_exp.bench --sweep 24 --steps 50 --jobs 2 device=cuda

The K settings differ in learning rate (geometric, 0.05 to 0.9) and seed, as a sweep's jobs do; each trains
`--steps` timed steps after a warm-up, on the same data the training command uses.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import time

import torch
from omegaconf import DictConfig, OmegaConf

from lenet_exp.bench import WARMUP, sync, train_steps
from lenet_exp.build import build
from lenet_exp.config import Settings
from lenet_exp.data import Split
from lenet_exp.run_folder import Plan
from lenet_exp.signals import StopSignals
from lenet_exp.train import Progress, Run, Solo
from lenet_exp.words import plural


def settings_of_sweep(cfg: DictConfig, k: int) -> list[DictConfig]:
    """K configs of one shape: learning rates spread geometrically over [0.05, 0.9], seeds 0..K-1."""
    lrs = [0.05 * (0.9 / 0.05) ** (i / max(k - 1, 1)) for i in range(k)]
    configs = []
    for i, lr in enumerate(lrs):
        c = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        c.optimizer.lr, c.seed = float(lr), i
        configs.append(c)
    return configs


def _steps(trainee, data: Split, seeds: list[int], steps: int, s: Settings, device: torch.device) -> float:
    """Train `steps` steps after WARMUP ones (whole passes over the data as needed); returns the timed seconds."""
    per_epoch = len(data) // s.data.batch_size
    done, start, epoch = 0, 0.0, 0
    with StopSignals() as stop:
        while done < steps + WARMUP:
            chunk = min(steps + WARMUP - done, per_epoch) if done >= WARMUP else WARMUP
            train_steps(trainee, data, seeds, chunk, s, stop, epoch)
            epoch, done = epoch + 1, done + chunk
            if done == WARMUP:
                sync(device)
                start = time.perf_counter()
    sync(device)
    return time.perf_counter() - start


def sequential(configs: list[DictConfig], data: Split, steps: int, device: torch.device) -> float:
    """Each setting alone, one after another (the basic launcher): aggregate examples/sec."""
    seconds = 0.0
    for c in configs:
        s = Settings.from_cfg(c)
        seconds += _steps(Solo(*build(c, s, device), s), data, [c.seed], steps, s, device)
    return len(configs) * steps * configs[0].data.batch_size / seconds


def fused(configs: list[DictConfig], data: Split, steps: int, device: torch.device) -> float:
    """All settings as one fused model (the fused launcher): aggregate examples/sec."""
    from lenet_exp.fused import FusedTrainee

    runs = []
    for c in configs:
        s = Settings.from_cfg(c)
        model, optimizer = build(c, s, device)
        runs.append(Run(c, s, device, model, optimizer, Progress(), None, None, Plan()))
    seconds = _steps(FusedTrainee(runs), data, [c.seed for c in configs], steps, runs[0].s, device)
    return len(configs) * steps * configs[0].data.batch_size / seconds


def _worker(
    yamls: list[str],
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    device: str,
    threads: int,
    barrier,
    results,
) -> None:
    """One worker process of the parallel arrangement: its share of the settings, one after another, timed together."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the bench's own process's to handle: it stops the workers
    try:
        torch.set_num_threads(threads)
        configs = [OmegaConf.create(y) for y in yamls]
        dev = torch.device(device)
        data = Split(images, labels).to(dev)
        trainees = []
        for c in configs:
            s = Settings.from_cfg(c)
            trainees.append((Solo(*build(c, s, dev), s), c, s))
        barrier.wait()  # every worker ready: the clocks run together
        seconds = sum(
            _steps(trainee, data, [c.seed], steps, s, dev) for trainee, c, s in trainees
        )  # timed steps only, as the others
        results.put((len(configs) * steps * configs[0].data.batch_size, seconds))
    except BaseException:  # stopped or broken: say so, so the bench ends instead of waiting
        results.put(None)


def parallel(configs: list[DictConfig], data: Split, steps: int, device: torch.device, jobs: int) -> float:
    """The settings split over `jobs` worker processes, each with cores / jobs CPU threads (hydra/launcher=parallel):
    aggregate examples/sec over the slowest worker's time."""
    jobs = min(jobs, len(configs))
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(jobs), ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    shares = [[OmegaConf.to_yaml(c) for c in configs[i::jobs]] for i in range(jobs)]
    cpu = data.to(torch.device("cpu"))
    procs = [
        ctx.Process(target=_worker, args=(share, cpu.images, cpu.labels, steps, str(device), threads, barrier, results))
        for share in shares
    ]
    figures: list = []
    with StopSignals():  # Ctrl-C or SIGTERM raise Interrupted while the bench waits; the workers are stopped below
        try:
            for p in procs:
                p.start()
            while len(figures) < len(procs):
                try:
                    figures.append(results.get(timeout=0.5))
                except queue.Empty:
                    if any(p.exitcode not in (None, 0) for p in procs):  # a worker died without a word
                        raise RuntimeError("a worker of the parallel arrangement died") from None
                    continue
                if figures[-1] is None:
                    raise RuntimeError("a worker of the parallel arrangement stopped before its figures")
        finally:
            for p in procs:  # ended by a signal or an error too: no worker outlives the bench
                if p.is_alive() and len(figures) < len(procs):
                    p.terminate()
                p.join(timeout=60)
    return sum(n for n, _ in figures) / max(seconds for _, seconds in figures)


def run_sweep_bench(k: int, steps: int, jobs: int, cfg: DictConfig, device: torch.device, train: Split, say) -> None:
    """The three arrangements of K settings, each measured once, and a table of their aggregate examples/sec."""
    from lenet_exp.fused import fusion_key

    configs = settings_of_sweep(cfg, k)
    data = train.to(device)
    figures = {}
    arrangements = [
        ("sequential", lambda: sequential(configs, data, steps, device)),
        (
            f"parallel ({plural(min(jobs, k), 'worker')} x "
            f"{plural(max(1, (os.cpu_count() or 1) // min(jobs, k)), 'thread')})",
            lambda: parallel(configs, data, steps, device, jobs),
        ),
    ]
    if fusion_key(configs[0]) is not None:
        arrangements.append(("fused (one model)", lambda: fused(configs, data, steps, device)))
    else:  # the fused launcher would train these settings alone: there is no fused figure to give
        say("fused: not measured; the fused launcher trains settings like these alone (README: Fused sweeps)")
    for name, measure in arrangements:
        say(f"{name}: {k} settings x {steps} steps ...")
        figures[name] = measure()
        say(f"{name}: {figures[name]:,.0f} examples/sec")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {os.cpu_count()} cores"
    print(
        f"{k} settings x {steps} timed steps, batch {cfg.data.batch_size}, on {device} ({where}), torch "
        f"{torch.__version__}"
    )
    print(f"{'arrangement':<36}{'examples/sec (aggregate)':>26}{'vs sequential':>16}")
    base = figures["sequential"]
    for name, value in figures.items():
        print(f"{name:<36}{value:>26,.0f}{value / base:>15.2f}x")
