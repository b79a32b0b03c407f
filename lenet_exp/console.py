"""The console while a run trains: a progress bar that moves every step and never runs into the log lines.

While the bar is shown, console log lines go through tqdm (its logging redirect), which clears the bar,
writes the line and draws the bar again, so a log line always starts a line of its own.
"""

from __future__ import annotations

import logging
import os
from contextlib import nullcontext

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm


def wants_bar(progress: str | bool, in_worker: bool) -> bool:
    """`trainer.progress`: true, false, or auto (a bar on a terminal only); never in a parallel sweep's workers."""
    return not in_worker and (progress is True or (progress == "auto" and os.isatty(2)))


class EpochBar:
    """One bar per epoch, in examples: the epoch's own speed, and its running loss and accuracy once known."""

    def __init__(self, enabled: bool, examples_per_epoch: int) -> None:
        self.bar = tqdm(total=examples_per_epoch, desc="epoch", unit=" ex", disable=not enabled, leave=False, dynamic_ncols=True)
        self._redirect = logging_redirect_tqdm([logging.getLogger()]) if enabled else nullcontext()
        self._redirect.__enter__()

    def start(self, epoch: int, epochs: int, done: int) -> None:
        """A new epoch (or the rest of one, `done` examples in): no figures until its first log point."""
        self.bar.reset()
        self.bar.set_description(f"epoch {epoch}/{epochs}", refresh=False)
        self.bar.set_postfix_str("", refresh=False)
        self.bar.update(done)

    def advance(self, examples: int) -> None:
        self.bar.update(examples)

    def figures(self, loss: float, acc: float) -> None:
        self.bar.set_postfix_str(f"loss={loss:.3f} acc={acc:.3f}")

    def close(self) -> None:
        """Clear the bar, then let log lines go straight to the console again."""
        self.bar.close()
        self._redirect.__exit__(None, None, None)
