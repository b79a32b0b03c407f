"""TensorBoard logging of one run: scalar curves, the shape table as text, and an HParams entry.

Event files go straight into the run folder, so `tensorboard --logdir multirun/<date>/<time>` shows
each sweep job as one run named after its folder.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

# Scalar tags, one place for all of them.
TRAIN_LOSS, TRAIN_ACC, TEST_ACC = "train/loss", "train/acc", "test/acc"
BEST_TEST_ACC, LR, SPEED = "test/best_acc", "train/lr", "train/examples_per_sec"
HPARAM_METRICS = (TRAIN_LOSS, TRAIN_ACC, TEST_ACC, BEST_TEST_ACC)


class RunLogger:
    """Writes one run's events; `resume_step` drops any point at or after it left by an earlier try."""

    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=resume_step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def text(self, tag: str, lines: list[str]) -> None:
        # Markdown: indent four spaces so TensorBoard shows the lines as a code block.
        self.writer.add_text(tag, "\n".join("    " + line for line in lines), 0)

    def hparams(self, settings: dict[str, float | int | str | bool]) -> None:
        """Register the run in the HParams dashboard; its metric values are the last points of the curves.

        Written into this run's own event file (SummaryWriter.add_hparams would make a new run folder).
        """
        metrics = {tag: 0.0 for tag in HPARAM_METRICS}  # values unused: the dashboard reads the curves
        for summary in hparams(settings, metrics):
            self.writer.file_writer.add_summary(summary)

    def flush(self) -> None:
        self.writer.flush()

    def close(self, quietly: bool = False) -> None:
        """Flush and close; `quietly` after an error, when a second one (a full disk) would only hide the first."""
        try:
            self.writer.close()
        except OSError:
            if not quietly:
                raise
