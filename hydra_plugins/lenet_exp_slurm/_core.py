"""The Slurm launcher's work as plain functions: submit only the unfinished jobs as one job array, follow it, cancel it
on Ctrl-C or SIGTERM, and turn a job that ended without a result into one line and a `failed` record. (What the
cluster can run is checked before the sweep starts, by lenet_exp's pre-flight.)

A job pre-empted or at its time limit saves its checkpoint and requeues itself (lenet_exp.cluster); the launcher just
keeps waiting, as submitit counts a requeued job as not done.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
POLL_S = 1.0  # how often the launcher looks at its jobs' result files (submitit asks sacct less often)
PENDING_CHECK_S = 10.0  # how often it asks squeue why jobs still wait
CANCEL_WAIT_S = 90.0  # how long cancelled jobs get to save their checkpoints before they are killed
# squeue reasons that no wait will clear: the request exceeds what the partition allows, or names what is not there
NEVER_CLEARS = {
    "PartitionConfig",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "BadConstraints",
    "InvalidAccount",
    "InvalidQOS",
    "QOSMaxCpuPerJobLimit",
    "QOSMaxGRESPerJob",
    "QOSMaxMemoryPerJob",
}


def launch(launcher, job_overrides, initial_job_idx: int) -> list:
    """Every job's JobReturn: a finished job's from its own record, without submitting it; the others' from Slurm."""
    from lenet_exp import launch as shared

    sweep_dir = shared.start_batch(launcher)
    ours = getattr(launcher, "submitted", set())  # this command's own arrays (an earlier rung's) are no stranger's
    if alive := {a: n for a, n in shared.still_queued(sweep_dir).items() if a not in ours}:  # a killed run's jobs
        arrays = ", ".join(f"{a} ({n} task{'s' * (n != 1)})" for a, n in alive.items())
        print(
            f"Error: {sweep_dir} has jobs on Slurm still, queued or running (job array {arrays}): wait for them to end "
            f"(squeue -j {','.join(alive)}), or cancel them (scancel {' '.join(alive)}), then rerun",
            file=sys.stderr,
        )
        raise SystemExit(2)
    (sweep_dir / shared.CANCELLED).unlink(missing_ok=True)  # a cancelled sweep run again: its jobs may requeue again
    nums = range(initial_job_idx, initial_job_idx + len(job_overrides))
    configs = shared.job_configs(launcher, job_overrides, nums)
    returns = [shared.finished_return(cfg, sweep_dir) for cfg in configs]
    if done := [cfg for cfg, r in zip(configs, returns) if r is not None]:
        log.info(f"Not resubmitted, finished already: {shared.jobs_named(done)}")
    todo = [i for i, r in enumerate(returns) if r is None]
    if todo:
        configs, overrides = [configs[i] for i in todo], [list(job_overrides[i]) for i in todo]
        groups = groups_of(launcher, configs)
        with shared.signals_held() as came:  # a Ctrl-C or SIGTERM from here on cancels whatever was submitted
            jobs = submit(launcher, configs, overrides, groups)
            launcher.submitted = {*ours, jobs[0].job_id.split("_")[0]}
            shared.note_array(sweep_dir, jobs[0].job_id.split("_")[0])
            lost = follow(jobs, sweep_dir, came)
        for group, job in zip(groups, jobs):
            for k, ret in zip(group, results_of(job, [configs[k] for k in group], job.job_id in lost)):
                returns[todo[k]] = ret
    return returns


def groups_of(launcher, configs: list[DictConfig]) -> list[list[int]]:
    """The jobs of each Slurm job: one each, or with hydra.launcher.max_models > 1 the fused launcher's groups (jobs
    that train together as one fused model on one node: how fusion pays on a GPU cluster)."""
    from lenet_exp import launch as shared

    if launcher.max_models < 2 or not shared.is_lenet_task(launcher.task_function):
        return [[i] for i in range(len(configs))]
    return shared.fusion_groups(configs, launcher.max_models)


def run_group(launcher, overrides: list[list[str]], nums: list[int], singleton_state: dict) -> list:
    """On the node: the job's sweep points composed as in the sweep, trained alone or as one fused model."""
    import submitit
    from hydra.core.singleton import Singleton

    from hydra_plugins.lenet_exp_slurm import EARLY
    from lenet_exp import launch as shared

    # in place of submitit's handler, which ignores it; a SIGTERM that came as the job loaded stops it now
    shared.stop_before_training(Path(str(launcher.config.hydra.sweep.dir)), EARLY)
    Singleton.set_state(singleton_state)
    shared.start_batch(launcher)
    job_id = submitit.JobEnvironment().job_id
    return shared.train_configs(launcher, shared.job_configs(launcher, overrides, nums, [job_id] * len(nums)))


def submit(launcher, configs: list[DictConfig], overrides: list[list[str]], groups: list[list[int]]) -> list:
    """One Slurm job array, a task for each group of jobs, each running the launcher's run_group on the jobs'
    overrides, Hydra's own among them (a halving search names each job's folder)."""
    import submitit
    from hydra.core.singleton import Singleton

    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from lenet_exp import launch as shared

    params = {k: v for k, v in launcher.params.items() if k != "max_models"}
    params["gpus_per_node"] = shared.gpus_of(params, str(launcher.config.device.name)) or None
    executor = submitit.AutoExecutor(
        cluster="slurm", folder=params.pop("submitit_folder"), slurm_max_num_timeout=params.pop("max_num_timeout")
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    nums = [int(cfg.hydra.job.num) for cfg in configs]
    state = Singleton.get_state()
    try:
        jobs = executor.map_array(
            launcher.run_group,
            [[overrides[i] for i in group] for group in groups],
            [[nums[i] for i in group] for group in groups],
            [state] * len(groups),
        )
    except Exception as e:  # sbatch's refusal: submitit's FailedJobError holds its message
        said = next((line for line in str(e).splitlines() if "sbatch: error" in line or "error:" in line), str(e))
        print(
            f"Error: Slurm refused the job array (sbatch: {said.split('error:', 1)[-1].strip()}); change the "
            "hydra.launcher key it names (partition, account, qos, constraint, ...)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    array = jobs[0].job_id.split("_")[0]
    named = [shared.jobs_named([configs[i] for i in group]) for group in groups]
    each = "; ".join(f"{n} fused" if len(g) > 1 else n for n, g in zip(named, groups))
    log.info(f"Submitted to Slurm as job array {array}: {each}")
    return jobs


def follow(jobs: list, sweep_dir: Path, came: list[int]) -> set[str]:
    """Wait until every job is done, or gone without a trace (a pending task cancelled by hand: Slurm neither holds it
    nor recorded it; returned). A Ctrl-C or SIGTERM (in `came`) cancels them after they save their checkpoints; jobs
    pending for a reason no wait clears are cancelled and reported in one line."""
    from lenet_exp import launch as shared

    asked, missing, lost = 0.0, set(), set()
    while True:
        if came:
            cancel(jobs, sweep_dir)
            shared.refresh_summary(sweep_dir)
            how = shared.continue_command(sweep_dir, sweep=True)
            shared.stop(came[0], f"the Slurm jobs saved their checkpoints and were cancelled; continue with: {how}")
        if all(job.job_id in lost or job.done() for job in jobs):
            return lost
        if time.monotonic() - asked > PENDING_CHECK_S:
            asked = time.monotonic()
            if reason := never_starts(jobs):
                cancel(jobs, sweep_dir, wait=False)
                print(f"Error: {reason}", file=sys.stderr)
                raise SystemExit(2)
            held = shared.queued_tasks(_arrays(jobs))
            gone = {j.job_id for j in jobs if j.job_id not in held and not j.done()}
            lost |= {j for j in gone & missing if not shared.recorded(j)}  # gone at two looks running: no race
            missing = gone
        time.sleep(POLL_S)


def _arrays(jobs: list) -> list[str]:
    return sorted({job.job_id.split("_")[0] for job in jobs})


def never_starts(jobs: list) -> str:
    """Why the jobs will never start, in one line, when squeue gives a reason no wait clears; '' otherwise."""
    from lenet_exp.launch import slurm

    listed = slurm("squeue", "-h", "-j", ",".join(_arrays(jobs)), "-o", "%T|%r").stdout.split()
    reasons = sorted({r for state, _, r in (line.partition("|") for line in listed) if state == "PENDING"})
    if stuck := [r for r in reasons if r in NEVER_CLEARS]:
        return (
            f"Slurm will not start these jobs (pending: {stuck[0]}): the request exceeds what the partition allows; "
            "change hydra.launcher.cpus_per_task, mem_gb, gpus_per_node, timeout_min or partition"
        )
    return ""


def cancel(jobs: list, sweep_dir: Path, wait: bool = True) -> None:
    """Cancel the jobs: queued ones at once; running ones get SIGTERM, save their checkpoints and stop without
    requeuing (the CANCELLED mark tells them); what is left after CANCEL_WAIT_S is killed."""
    from lenet_exp.launch import CANCELLED, slurm

    (sweep_dir / CANCELLED).touch()
    arrays = _arrays(jobs)
    print(f"Cancelling Slurm job array {', '.join(arrays)} ...", file=sys.stderr)
    slurm("scancel", "--state=PENDING", *arrays)
    if wait:
        slurm("scancel", "--signal=TERM", *arrays)
        deadline = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < deadline and slurm("squeue", "-h", "-j", ",".join(arrays), "-o", "%i").stdout.strip():
            time.sleep(0.5)
    slurm("scancel", *arrays)
    if wait:
        (sweep_dir / CANCELLED).unlink(missing_ok=True)


def results_of(job, configs: list[DictConfig], lost: bool = False) -> list:
    """The JobReturns of a Slurm job's sweep points; a job that ended without them (killed, out of memory, a node
    failure, cancelled before it started) leaves each of its points `failed` in its metrics.json with Slurm's word for
    it (or `interrupted`, where it saved its checkpoint first), in one line, ranked last."""
    from lenet_exp import launch as shared

    if lost:
        reason = f"Slurm job {job.job_id} was cancelled before it started (Slurm keeps no record of it)"
        return [shared.ended_without_result(cfg, reason) for cfg in configs]
    try:
        return job.results()[0]
    except Exception:  # submitit's UncompletedJobError or FailedJobError, with a traceback from the job's log
        reason = f"Slurm job {job.job_id} ended {job.state} without a result (its log: {job.paths.stderr})"
        return [shared.ended_without_result(cfg, reason) for cfg in configs]
