"""Shared test helpers: the real command as a subprocess, IDX file writers, TensorBoard readers."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
from pathlib import Path

import forks
import numpy as np

REPO = Path(__file__).resolve().parent.parent
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# A small, quick run on the CPU: a slice of real Fashion-MNIST, nothing downloaded.
# A guard against a hang, not a speed test: generous, so a machine slowed by other work still passes.
HANG = float(os.environ.get("LENET_TEST_HANG_S", "1800"))
SMALL = ["device=cpu", "data.download=false", "data.limit_train=1024", "data.limit_test=512", "trainer.epochs=2"]


STARTED: list[subprocess.Popen] = []  # every process a test started, killed with its own at the test's end


def default_signals() -> None:
    """In a child, before it runs: the stop signals handled as a shell at a terminal leaves them (a test started from a
    script that ignores SIGINT, or blocks signals, passes that on), so a Ctrl-C test means the same everywhere."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def popen(cmd: list, **kwargs) -> subprocess.Popen:
    """A process for a test: default signal handling, a session of its own (its workers with it), and killed with them
    when the test ends, however it ends (kill_started)."""
    proc = subprocess.Popen(cmd, preexec_fn=default_signals, start_new_session=True, **kwargs)
    STARTED.append(proc)
    return proc


def kill_started() -> None:
    """Kill every process a test started that still runs, and each one's session (a sweep's workers, a server)."""
    while STARTED:
        proc = STARTED.pop()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole session: a killed leader leaves no workers behind
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()


def finish(proc, timeout: float = HANG) -> tuple[str, str]:
    """A started process's output once it ends; past `timeout`, it and its session are killed first."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise


def command(args, cwd: Path, env: dict, module: str = "lenet_exp", code: str | None = None, merge: bool = False):
    """`python -m <module> args` (or `python -c <code> args`) as a process of its own, with pipes for its output
    (`merge`: stderr into stdout): forked from the fork server (forks.py), which has imported what the command
    imports; a real interpreter where the command must be one (another PYTHONPATH, LENET_TEST_FORKS=0)."""
    other = env.get("PYTHONPATH") != os.environ.get("PYTHONPATH")  # another package: a fresh interpreter imports it
    pooled = (
        "launcher=parallel",
        "launcher=joblib",
        "launcher=submitit",
        "hparams_search=lenet_best",
    )  # (its launcher)
    pools = any(p in " ".join(args) for p in pooled)  # worker pools of their own: from a real interpreter
    if other or pools or module == "lenet_exp.bench" or os.environ.get("LENET_TEST_FORKS") == "0":
        cmd = [sys.executable, *(["-c", code] if code is not None else ["-m", module]), *args]
        err = subprocess.STDOUT if merge else subprocess.PIPE
        return popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    proc = forks.server().start(args, cwd, env, module, code, merge)
    STARTED.append(proc)
    return proc


def run_cli(*args: str, cwd: Path, module: str = "lenet_exp", timeout: float = HANG, env: dict | None = None):
    """Run `python -m <module> args...` as a user would, returning the finished process (killed past `timeout`)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "", **(env or {})}
    proc = command(args, cwd, full_env, module)
    out, err = finish(proc, timeout)
    return subprocess.CompletedProcess([sys.executable, "-m", module, *args], proc.returncode, out, err)


def run_in_new_folder(tmp_path_factory, name: str, *args: str):
    """A successful run of the real command in a fresh folder, its output in `run/`: (folder, process)."""
    cwd = tmp_path_factory.mktemp(name)
    proc = run_cli(*args, "hydra.run.dir=run", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd, proc


def refused(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m lenet_exp args`, for a command to be refused: run through the command's own main() in this process,
    which its checks refuse before Hydra starts (exit 2) with the same words, without an interpreter and torch to
    start; a command that passes those checks (its refusal comes from the run itself) runs as a process of its own."""
    import contextlib
    import io
    import logging

    class Passed(Exception):
        """The command passed the checks made before Hydra starts."""

    def passed():
        raise Passed

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE)}  # it sets them
    import lenet_exp.__main__ as command

    out, err, code = io.StringIO(), io.StringIO(), 0
    saved = (os.getcwd(), sys.argv, os.environ.copy(), logging.raiseExceptions, command.hydra_task)
    os.chdir(cwd)
    sys.argv, command.hydra_task = ["lenet_exp", *args], passed
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            command.main()
    except Passed:
        code = None
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (print(e.code, file=err) or 1)
    finally:
        os.chdir(saved[0])
        sys.argv, logging.raiseExceptions, command.hydra_task = saved[1], saved[3], saved[4]
        os.environ.clear()
        os.environ.update(saved[2])
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if code is None:
        return run_cli(*args, cwd=cwd)
    return subprocess.CompletedProcess(["lenet_exp", *args], code, out.getvalue(), err.getvalue())


def start_cli(*args: str, cwd: Path):
    """The command started, its stdout and stderr as one pipe."""
    return command(args, cwd, {**os.environ, "PYTHONUNBUFFERED": "1"}, merge=True)


def epochs_completed(run_dir: Path) -> int:
    """Epochs a run folder's metrics.json reports so far (0 when there is none yet)."""
    import json

    try:
        return json.loads((run_dir / "metrics.json").read_text())["epochs_completed"]
    except (OSError, ValueError):
        return 0


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """An IDX file for a uint8 array: magic (2051 for images, 2049 for labels), dims, then the data."""
    magic = magic if magic is not None else (2051 if array.ndim == 3 else 2049)
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, data: bytes, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def write_split_files(folder: Path, n_train: int, n_test: int, gz: bool, seed: int = 0) -> None:
    """The four files of an MNIST-style release, with random content."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", idx_bytes(rng.integers(0, 256, (n, 28, 28))), gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", idx_bytes(rng.integers(0, 10, (n,))), gz)


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar curve of a run folder as read by TensorBoard: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def tensorboard_plugins(run_dir: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    return {"hparams": acc.PluginTagToContent("hparams"), "tensors": acc.Tags()["tensors"]}


def session_status(run_dir: Path) -> str | None:
    """The status a run's HParams session ends with (`STATUS_SUCCESS`, ...), read from its one session file; None
    where it has none, or its session has not ended. Fails where it has several."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import api_pb2, metadata

    files = list(run_dir.glob("events.out.tfevents.*.hparams"))
    assert len(files) <= 1, files
    values = [v for f in files for e in EventFileLoader(str(f)).Load() for v in e.summary.value]
    ends = [v for v in values if v.tag == metadata.SESSION_END_INFO_TAG]
    if not ends:
        return None
    status = metadata.parse_session_end_info_plugin_data(ends[-1].metadata.plugin_data.content).status
    return api_pb2.Status.Name(status)


def snapshot(folder: Path) -> dict:
    """Every file under a folder with its bytes and modification time, to show a command left them as they were."""
    return {
        p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()
    }


def start_patched(patch: str, *args: str, cwd: Path) -> subprocess.Popen:
    """The real command with `patch` (Python source) run first, to inject a slow step or a bug where no input can."""
    code = (
        f"import sys\n{patch}\nfrom lenet_exp.__main__ import main\nsys.argv = ['lenet_exp', *sys.argv[1:]]\nmain()\n"
    )
    return command(args, cwd, {**os.environ, "PYTHONUNBUFFERED": "1"}, code=code)


def mount_tmpfs(path: Path, size: str, read_only: bool = False) -> bool:
    """A small tmpfs at `path` (a full or read-only disk for the tests); False where this machine does not allow it."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    return (
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode == 0
    )


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def make_job(sweep: Path, name: str, overrides: list[str] | str, metrics: dict | str | None) -> Path:
    """A sweep job folder as a run leaves it (overrides.yaml, metrics.json), written directly: for summary tests."""
    import json

    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(overrides if isinstance(overrides, str) else json.dumps(overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    return job


def read_csv(path: Path) -> list[dict]:
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))


def job_dirs(sweep: Path) -> list[Path]:
    """A sweep's job folders, its own files (such as summary_importance.csv) left out."""
    return sorted(p for p in sweep.glob("*_*") if p.is_dir())
