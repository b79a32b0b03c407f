"""The console while a run trains: a progress bar that moves every step and never runs into the log lines, and the
run's closing line.

While the bar is shown, console log lines go through tqdm (its logging redirect), which clears the bar,
writes the line and draws the bar again, so a log line always starts a line of its own.
"""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import nullcontext
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from lenet_exp.metrics import learning, learning_note
from lenet_exp.words import plural


def wants_bar(progress: str | bool, in_worker: bool) -> bool:
    """`trainer.progress`: true, false, or auto (a bar on a terminal only); never in a parallel sweep's workers."""
    return not in_worker and (progress is True or (progress == "auto" and os.isatty(2)))


class EpochBar:
    """One bar per epoch, in examples: the epoch's own speed, and its running loss and accuracy once known."""

    def __init__(self, enabled: bool, examples_per_epoch: int) -> None:
        width = shutil.get_terminal_size((100, 24)).columns  # a terminal that reports no size gets 100 columns
        # smoothing=0: the rate shown is the epoch's own average, as its log line reports;
        # delay: drawn once an epoch starts
        self.bar = tqdm(
            total=examples_per_epoch, unit=" ex", disable=not enabled, leave=False, ncols=width, smoothing=0, delay=1e-3
        )
        self._redirect = logging_redirect_tqdm([logging.getLogger()]) if enabled else nullcontext()
        self._redirect.__enter__()

    def start(self, epoch: int, epochs: int, done: int) -> None:
        """A new epoch (or the rest of one, `done` examples in): its number, no figures until its first log point."""
        self.bar.set_description(f"epoch {epoch}/{epochs}", refresh=False)
        self.bar.set_postfix_str("", refresh=False)
        self.bar.reset()
        self.bar.update(done)

    def advance(self, examples: int) -> None:
        self.bar.update(examples)

    def figures(self, loss: float, acc: float) -> None:
        self.bar.set_postfix_str(f"loss={loss:.3f} acc={acc:.3f}")

    def close(self) -> None:
        """Clear the bar, then let log lines go straight to the console again."""
        self.bar.close()
        self._redirect.__exit__(None, None, None)


def closing_line(m: dict, run_dir: Path, seconds: float) -> str:
    """The run's last console line: how it ended, its final accuracies, the best epoch on the choosing split (with
    its test accuracy beside a validation choice), and where its files are."""
    on, epoch = m.get("chosen_on", "test_acc"), m.get("best_epoch")
    split = on.removesuffix("_acc")
    best = "" if epoch is None else f"best {split} acc {m['history'][on][epoch - 1]:.4f} (epoch {epoch}"
    best += "" if epoch is None or on == "test_acc" else f", test acc {m['history']['test_acc'][epoch - 1]:.4f}"
    best += "" if epoch is None else ")"
    if m["status"] == "diverged":
        head = f"Diverged: {m['error']}; " + (best or "no accuracy")
    else:
        val = f"val acc {m['val_acc']:.4f}, " if m.get("val_acc") is not None else ""
        head = f"Done: {plural(m['epochs_completed'], 'epoch')}, {val}test acc {m['test_acc']:.4f}, {best}"
    state = learning(m)
    if state == "never":
        head += (
            f"; at chance ({m['chance_test_acc']:.3f}): not learning (yet: more epochs or examples, or other settings)"
        )
    elif state == "collapsed":
        head += f"; at chance ({m['chance_test_acc']:.3f}): {learning_note(m)}: a lower learning rate may hold it"
    return f"{head}; {seconds:.1f} s; files in {run_dir}"
