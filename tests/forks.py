"""The real command, started without an interpreter to start: a server process per test process imports torch,
Hydra and lenet_exp once, then forks a child for each command a test runs. The child is a process of its own
(its pid, its session, its signals, its exit status, its stdout and stderr as pipes), running the command's module as
`python -m` runs it; only the imports are shared. Saves a test process about 3 s of CPU a command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# The server: imports, then a loop that forks a child per request and writes each child's exit status to a file.
SERVER = r"""# python -m lenet_exp, forked (this first line is what a process listing shows of a command forked here)
import json, os, select, signal, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot
import torch, torch._dynamo, torch.utils.tensorboard
import hydra.core.plugins
import lenet_exp.flags, lenet_exp.preflight, lenet_exp.task, lenet_exp.training, lenet_exp.launch, lenet_exp.api
hydra.core.plugins.Plugins.instance()  # Hydra's scan of its plugins, once
status_dir = sys.argv[1]
children = set()


def run(request):
    out = os.open(request["stdout"], os.O_WRONLY)  # first: the test waits for its pipes to open
    err = os.open(request["stderr"], os.O_WRONLY) if request["stderr"] else out
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.setsid()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as Python starts: Ctrl-C a KeyboardInterrupt
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    code = 0
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        if request["code"] is not None:
            sys.argv = ["-c", *request["args"]]
            exec(compile(request["code"], "<string>", "exec"), {"__name__": "__main__"})
        else:
            import runpy
            sys.argv = [request["module"], *request["args"]]
            for name in (request["module"] + ".__main__", request["module"]):  # run afresh, as `python -m` runs it
                if name != "lenet_exp":
                    sys.modules.pop(name, None)
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else (print(e.code, file=sys.stderr), 1)[1])
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    try:
        import atexit, logging
        atexit._run_exitfuncs()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def reap():
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        path = os.path.join(status_dir, str(pid))
        with open(path + ".tmp", "w") as f:
            f.write(str(code))
        os.replace(path + ".tmp", path)


signal.signal(signal.SIGINT, signal.SIG_IGN)  # the test's own Ctrl-C is the test's
while True:
    ready = select.select([sys.stdin], [], [], 0.02)[0]
    reap()
    if not ready:
        continue
    line = sys.stdin.readline()
    if not line:
        for pid in list(children):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        break
    request = json.loads(line)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            run(request)
        finally:
            os._exit(70)  # never back into the server's loop
    children.add(pid)
    print(json.dumps({"pid": pid}), flush=True)
"""


class Server:
    """One fork server for this test process, started at its first command."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="lenet_exp_forks_"))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(self.dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=env, start_new_session=True,
        )  # fmt: skip
        self.lock = threading.Lock()
        self.count = 0

    def start(self, args: list[str], cwd, env: dict, module: str, code: str | None, merge: bool) -> Forked:
        with self.lock:
            self.count += 1
            out, err = self.dir / f"{self.count}.out", self.dir / f"{self.count}.err"
            os.mkfifo(out)
            if not merge:
                os.mkfifo(err)
            request = {"args": list(args), "cwd": str(cwd), "env": env, "module": module, "code": code}
            request |= {"stdout": str(out), "stderr": None if merge else str(err)}
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            pid = json.loads(self.proc.stdout.readline())["pid"]
        return Forked(pid, self.dir / str(pid), out, None if merge else err, [module, *args])


_server: Server | None = None


def server() -> Server:
    global _server
    if _server is None or _server.proc.poll() is not None:
        _server = Server()
    return _server


class Forked:
    """A command's process started by the fork server, with what the tests use of subprocess.Popen's."""

    def __init__(self, pid: int, status: Path, out: Path, err: Path | None, args: list[str]) -> None:
        self.pid, self._status, self.args, self.returncode = pid, status, args, None
        self.stdout = open(out, encoding="utf-8", errors="replace")  # noqa: SIM115  (the child opens its end too)
        self.stderr = open(err, encoding="utf-8", errors="replace") if err else None  # noqa: SIM115

    def poll(self) -> int | None:
        if self.returncode is None and self._status.exists():
            self.returncode = int(self._status.read_text())
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.01)
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str | None]:
        streams = [s for s in (self.stdout, self.stderr) if s is not None]
        texts = [""] * len(streams)

        def read(i: int) -> None:
            texts[i] = streams[i].read()

        readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(len(streams))]
        for reader in readers:
            reader.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(None if deadline is None else max(1.0, deadline - time.monotonic()))
        return texts[0], (texts[1] if len(texts) > 1 else None)

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
