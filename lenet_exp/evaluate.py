"""A trained run looked at: its checkpoint's accuracy on the test (and validation) split, per class, and the classes it
takes for one another; confusion.png and evaluation.json in the run folder.

    python -m lenet_exp.evaluate outputs/2026-12-05/20-30-58            # its final weights
    python -m lenet_exp.evaluate outputs/2026-12-05/20-30-58 --which best

The split is the run's own (its data set, validation split and limit_test), on the CPU; the accuracy is the one its
metrics.json recorded for those weights, printed beside it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from lenet_exp.api import load, typed
from lenet_exp.data import DATASETS, DataError, Split, to_input
from lenet_exp.errors import ConfigError
from lenet_exp.files import DamagedRecord, write_json
from lenet_exp.metrics import read_metrics
from lenet_exp.run_folder import BEST, FINAL, RECORD
from lenet_exp.schema import Settings
from lenet_exp.signals import stop
from lenet_exp.sweep_record import continue_command
from lenet_exp.words import plural

CONFUSED = 5  # the most confused pairs listed


def checked_run(folder: Path, which: str) -> dict:
    """The run's metrics.json, once the folder is a run's with the weights asked for; ConfigError in one line else."""
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder")
    if not (folder / RECORD / "config.yaml").is_file():
        raise ConfigError(
            f"{folder}: not a run folder (no {RECORD}/config.yaml); give a run's folder (outputs/<date>/<time>, or a "
            "sweep's job folder, multirun/<date>/<time>/<job>)"
        )
    try:
        metrics = read_metrics(folder) or {}
    except DamagedRecord as e:
        raise ConfigError(f"{folder}: {e}; its figures cannot be told") from None
    weights = folder / (FINAL if which == "final" else BEST)
    if not weights.is_file():
        status = metrics.get("status", "not started")
        why = "it has not finished an epoch" if which == "best" else f"it has not completed (status {status})"
        if status == "completed":  # its weights were moved or deleted: training it again is the only way back
            why = "its weights are gone, though it completed"
        ended = status in ("completed", "diverged")  # nothing to continue: a rerun trains it anew
        hint = "train it again" if ended else f"continue it with: {continue_command(folder, sweep=False)}"
        hint += "; or look at its best epoch: --which best" if which == "final" and (folder / BEST).is_file() else ""
        raise ConfigError(f"{folder}: no {weights.relative_to(folder)}: {why}; {hint}")
    return metrics


def predict(model, data: Split, batch_size: int, amp: bool = False, channels_last: bool = False):
    """The model's predicted class of every example of a split, in batches (CPU tensors), in the run's precision
    and layout (`device.amp`: bf16 where the run evaluated in it), so the figures are the ones it recorded."""
    import torch

    from lenet_exp.model import mixed_precision

    predicted = []
    with torch.inference_mode():
        for i in range(0, len(data), batch_size):
            x = to_input(data.images[i : i + batch_size], channels_last)
            with mixed_precision(amp, x):
                predicted.append(model(x).argmax(1))
    return torch.cat(predicted)


def recorded(metrics: dict, which: str, split: str) -> float | None:
    """What metrics.json recorded for these weights on a split: the final figure, or the best epoch's."""
    if which == "final":
        return metrics.get(f"{split}_acc")
    epoch, history = metrics.get("best_epoch"), (metrics.get("history") or {}).get(f"{split}_acc") or []
    return history[epoch - 1] if epoch and len(history) >= epoch else None


def confusion(labels, predicted, classes: int):
    """counts[true, predicted] over a split (a classes x classes tensor)."""
    import torch

    return torch.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)


def report(folder: Path, which: str, metrics: dict, splits: dict, names: tuple) -> tuple[list[str], dict]:
    """The printed lines and evaluation.json's figures: accuracy per split beside the recorded one, per class on the
    test split, and the most confused pairs."""
    lines, figures = [], {"which": which, "splits": {}}
    for split, (data, predicted) in splits.items():
        acc, then = (predicted == data.labels).double().mean().item(), recorded(metrics, which, split)
        said = f" (metrics.json: {then:.4f})" if then is not None else ""
        lines.append(f"{split} acc {acc:.4f} on {len(data)} examples{said}")
        figures["splits"][split] = {"acc": acc, "recorded": then, "examples": len(data)}
    data, predicted = splits["test"]
    counts = confusion(data.labels, predicted, len(names)).tolist()
    lines += ["", "| class | test acc | examples | most often taken for |", "|---|---|---|---|"]
    for k, row in enumerate(counts):
        wrong = max((n, j) for j, n in enumerate(row) if j != k)
        taken = f"{names[wrong[1]]} ({wrong[0]})" if wrong[0] else "-"
        lines.append(f"| {names[k]} | {row[k] / max(sum(row), 1):.3f} | {sum(row)} | {taken} |")
    pairs = sorted(((n, t, p) for t, row in enumerate(counts) for p, n in enumerate(row) if t != p), reverse=True)
    shown = [f"{names[t]} as {names[p]} {n}" for n, t, p in pairs[:CONFUSED] if n]
    lines += ["", f"Most confused (true as predicted, of {len(data)}): " + ("; ".join(shown) or "none")]
    figures |= {"classes": list(names), "confusion": counts}
    return lines, figures


def draw(counts: list[list[int]], names: tuple, title: str) -> bytes:
    """confusion.png: each true class's row as shares of its examples, the counts written in."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shares = [[n / max(sum(row), 1) for n in row] for row in counts]
    fig, ax = plt.subplots(figsize=(8.5, 7.5), layout="constrained")
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for t, row in enumerate(counts):
        for p, n in enumerate(row):
            ax.text(
                p, t, str(n), ha="center", va="center", fontsize=9, color="white" if shares[t][p] > 0.5 else "black"
            )
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=9)
    ax.set_yticks(range(len(names)), names, fontsize=9)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    fig.colorbar(image, ax=ax, label="share of the true class")
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()


def evaluate(folder: Path, which: str) -> list[str]:
    """Everything the command prints, and confusion.png and evaluation.json written into the run folder."""
    import torch

    from lenet_exp.files import atomic_write
    from lenet_exp.training import load_data_for

    metrics = checked_run(folder, which)
    s = Settings.from_cfg(typed(folder))
    _, val_set, test_set = load_data_for(s, torch.device("cpu"))
    model = load(folder, which)
    splits = {
        name: (data, predict(model, data, s.device.eval_batch_size, s.device.amp, s.device.channels_last))
        for name, data in (("val", val_set), ("test", test_set))
        if data is not None
    }
    names = DATASETS[s.data.name].names[: s.model.num_classes]
    lines, figures = report(folder, which, metrics, splits, names)
    epoch = metrics.get("epochs_completed") if which == "final" else metrics.get("best_epoch")
    title = f"{folder.name}: {which} weights ({plural(epoch or 0, 'epoch')}), {s.data.name} test split"
    atomic_write(folder / "confusion.png", draw(figures["confusion"], names, title))
    write_json(folder / "evaluation.json", figures)
    head = f"{folder}: its {which} weights (after {plural(epoch or 0, 'epoch')}), evaluated on the CPU"
    return [head, *lines, "", f"Confusion matrix: {folder / 'confusion.png'} (figures in evaluation.json)"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lenet_exp.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a run's folder (outputs/<date>/<time>, or a sweep's job folder)")
    parser.add_argument("--which", choices=["final", "best"], default="final", help="its weights (default: final)")
    parser.error = lambda message: (
        print(f"Error: {message} (see python -m lenet_exp.evaluate --help)", file=sys.stderr),
        sys.exit(2),
    )
    args = parser.parse_args(argv)
    try:
        print("\n".join(evaluate(args.run, args.which)))
    except (ConfigError, DataError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"Error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop(signal.SIGINT, "its files are written whole or not at all")
