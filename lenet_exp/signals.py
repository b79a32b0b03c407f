"""Ctrl-C and SIGTERM: while a run works, stop at once before training, between steps (after a checkpoint) during it,
never in the middle of writing files, and stop too when the sweep that launched the job dies; signals held off a block
that must not be cut short; and the one line every stop ends with."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager

from lenet_exp.cluster import stop_signals

ECHO_S = 1.0  # the same signal again this soon after the first is the same stop: not a second, hurried one


def interrupted_line(signum: int, note: str) -> str:
    """`Interrupted by SIGTERM: <what became of the work>`: the last line of every stop. No full stop: the line ends
    with the command that continues, and one copied with it would name another folder."""
    return f"Interrupted by {signal.Signals(signum).name}: {note}"


def stop(signum: int, note: str, in_worker: bool = False) -> None:
    """End the process for a signal: one line, exit 128+signal (a worker process ends at once, as its sweep has)."""
    print(interrupted_line(signum, note), file=sys.stderr)
    if in_worker:  # an idle worker would outlive the stopped sweep
        logging.shutdown()
        os._exit(128 + signum)
    raise SystemExit(128 + signum)


@contextmanager
def handlers(chosen: dict):
    """`{signal: handler}` for a block (in the main thread; elsewhere signals cannot be handled); the handlers before
    it come back after it. Yields those."""
    if threading.current_thread() is not threading.main_thread():
        yield {}
        return
    previous = {sig: signal.signal(sig, handler) for sig, handler in chosen.items()}
    try:
        yield previous
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def signals_held():
    """Hold SIGINT/SIGTERM for a block that must not be cut short: torch's import (it swallows a KeyboardInterrupt and
    carries on half-imported) or a summary being written. Yields the list of signals that came."""
    came: list[int] = []
    with handlers(dict.fromkeys((signal.SIGINT, signal.SIGTERM), lambda signum, frame: came.append(signum))):
        yield came


@contextmanager
def signals_deferred():
    """Hold SIGINT/SIGTERM for a short block (a file replaced), then hand the first that came to the handler outside it:
    the block is never cut short, and no signal is lost."""
    with signals_held() as came:
        yield
    if came:
        signal.raise_signal(came[0])


class Interrupted(BaseException):
    """Training stopped on SIGINT/SIGTERM; `saved`: after writing a checkpoint of where it stood.

    A BaseException, as KeyboardInterrupt is: no `except Exception` on its way may take it for an error.
    """

    def __init__(self, signum: int, saved: bool = True) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.saved = signum, saved
        self.note = ""  # what became of the run, for the console; empty: a checkpoint was saved


class StopSignals:
    """SIGINT/SIGTERM: before training, stop at once (nothing is written yet); while training, raise a flag the loop
    checks between steps, so a checkpoint can be saved; a second signal stops at once, but never mid-write. With
    `parent_pid` (a job in another process than its sweep's), the sweep's death raises the flag too: no orphans."""

    def __init__(self, parent_pid: int | None = None) -> None:
        self.signum: int | None = None
        self._first = 0.0  # when the first signal came
        self.training = False  # the loop checks the flag: defer the stop to it
        self._writing = 0
        self._previous: dict = {}
        self._parent, self._done = parent_pid, threading.Event()

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in stop_signals():
                self._previous[sig] = signal.signal(sig, self._handle)
        if self._parent:
            threading.Thread(target=self._watch_parent, daemon=True).start()
        return self

    def _handle(self, signum, frame) -> None:
        # never cut a write short; while training, the loop checks the flag
        if self._writing or (self.training and self.signum is None):
            self.signum, self._first = self.signum or signum, self._first or time.monotonic()
            return
        if signum == self.signum and time.monotonic() - self._first < ECHO_S:
            return  # the same stop twice (a terminal's Ctrl-C, and the sweep passing it on): one stop, with its save
        raise Interrupted(signum, saved=False)  # before training, or a second signal: stop now

    @contextmanager
    def writing(self):
        """Files are being written: a signal now only raises the flag, so no write is cut short."""
        self._writing += 1
        try:
            yield
        finally:
            self._writing -= 1

    def _watch_parent(self) -> None:
        while not self._done.wait(0.5):
            try:  # the sweep process, whether it is this job's parent (a local pool) or not (a cluster launcher)
                os.kill(self._parent, 0)
            except ProcessLookupError:
                self.signum = self.signum or signal.SIGTERM
                return
            except PermissionError:
                pass  # alive, another user's

    def __exit__(self, exc_type, *exc) -> None:
        self._done.set()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self.signum is not None and exc_type is None:  # a signal no step stopped for (the last epoch was ending)
            raise Interrupted(self.signum)
