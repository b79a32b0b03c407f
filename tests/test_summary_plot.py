"""Summaries that do not overclaim and plots that read at a glance, measured from the figure itself."""

import random
from itertools import product

import pytest
from helpers import make_job

from lenet_exp.summary import collect
from lenet_exp.summary_plot import figure, label_boxes, overlaps
from lenet_exp.summary_table import to_csv, to_markdown

LRS = ["0.01", "0.03", "0.1", "0.3", "0.9"]


def job_metrics(history: list[float], status: str = "completed", chance: float = 0.1) -> dict:
    return {
        "status": status,
        "epochs_completed": len(history),
        "test_acc": history[-1] if history and status != "diverged" else None,
        "best_test_acc": max(history, default=None),
        "chance_test_acc": chance,
        "history": {"test_acc": history},
    }


def grid_sweep(root, epochs: int):
    """lr x activation; relu at 0.9 and sigmoid at small rates stay at chance, as they do on Fashion-MNIST."""
    rnd = random.Random(0)
    for n, (lr, act) in enumerate(product(LRS, ("sigmoid", "relu"))):
        stuck = (act == "relu" and lr == "0.9") or (act == "sigmoid" and lr in ("0.01", "0.03"))
        history = [0.1] * epochs if stuck else [0.5 + 0.04 * e + rnd.random() * 0.05 for e in range(epochs)]
        make_job(
            root,
            f"{n}_activation={act},optimizer.lr={lr}",
            [f"optimizer.lr={lr}", f"activation={act}"],
            job_metrics(history),
        )
    return collect(root)


def value_axes(fig):
    return [ax for ax in fig.axes if ax.get_title().startswith("test acc vs")]


def curve_axes(fig):
    return next(ax for ax in fig.axes if ax.get_title().startswith("test acc per epoch"))


@pytest.mark.parametrize("epochs", [1, 10])
def test_grid_plot_axes_ticks_and_legends(tmp_path, epochs):
    fig = figure(grid_sweep(tmp_path, epochs))
    lr_axis = value_axes(fig)[0]
    assert lr_axis.get_xscale() == "log"  # 0.01 to 0.9: more than a decade
    assert [t.get_text() for t in lr_axis.get_xticklabels() if t.get_text()] == LRS
    for ax in fig.axes:
        assert not overlaps(label_boxes(ax)), ax.get_title()
        legend = ax.get_legend()
        if legend:  # beside the data, never on it
            renderer = fig.canvas.get_renderer()
            assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
    curves = curve_axes(fig)
    low, high = curves.get_xlim()
    assert (low, high) == (0.5, epochs + 0.5)
    assert [t for t in curves.get_xticks() if low <= t <= high] == list(range(1, epochs + 1))


def test_coinciding_curves_say_so_and_chance_is_marked(tmp_path):
    summary = grid_sweep(tmp_path, 3)
    labels = curve_axes(figure(summary)).get_legend_handles_labels()[1]
    assert "2: optimizer.lr=0.03, activation=sigmoid [not learning] (same curve as job 0)" in labels
    assert "9: optimizer.lr=0.9, activation=relu [not learning] (same curve as job 0)" in labels
    value_labels = value_axes(figure(summary))[0].get_legend_handles_labels()[1]
    assert "not learning (at chance)" in value_labels and "chance" in value_labels


def test_many_irregular_values_get_readable_ticks(tmp_path):
    """An Optuna search draws lr anywhere in [1e-3, 1]: labels must not run together."""
    rnd = random.Random(3)
    for n in range(20):
        lr = 10 ** rnd.uniform(-3, 0)
        make_job(
            tmp_path,
            f"{n}_x",
            [f"optimizer.lr={lr}", f"activation={rnd.choice(['relu', 'tanh'])}"],
            job_metrics([0.3 + rnd.random() * 0.5]),
        )
    summary = collect(tmp_path)
    summary.keys = ["optimizer.lr", "activation"]
    ax = value_axes(figure(summary))[0]
    assert ax.get_xscale() == "log" and not overlaps(label_boxes(ax))
    assert all(len(t.get_text()) <= 6 for t in ax.get_xticklabels())


def test_not_learning_is_flagged_whatever_the_status(tmp_path):
    summary = grid_sweep(tmp_path, 2)
    stuck = {r["job"] for r in summary.rows if r["not_learning"]}
    assert stuck == {0, 2, 9}
    csv = to_csv(summary)
    assert csv.count("not learning (at chance)") == 3
    assert "| completed, not learning (at chance) |" in to_markdown(summary)


def test_summary_says_when_no_job_learned(tmp_path):
    for n, lr in enumerate(LRS[:4]):  # four trials all at chance: no "best" from a four-way tie
        make_job(tmp_path, f"{n}_optimizer.lr={lr}", [f"optimizer.lr={lr}"], job_metrics([0.1, 0.1]))
    md = to_markdown(collect(tmp_path))
    assert "No job learned: all 4 completed jobs sit at chance" in md and "Best:" not in md


def test_summary_says_when_the_best_is_tied(tmp_path):
    for n, acc in enumerate([0.7, 0.8, 0.8]):
        make_job(tmp_path, f"{n}_optimizer.lr={LRS[n]}", [f"optimizer.lr={LRS[n]}"], job_metrics([0.5, acc]))
    md = to_markdown(collect(tmp_path))
    assert "Best: a tie at test acc 0.8000 between jobs 1, 2; no single best. Rerun job 1 with:" in md


def test_failed_and_diverged_jobs_are_drawn_without_a_figure(tmp_path):
    make_job(tmp_path, "0_optimizer.lr=0.1", ["optimizer.lr=0.1"], job_metrics([0.5, 0.6]))
    make_job(tmp_path, "1_optimizer.lr=100", ["optimizer.lr=100"], job_metrics([0.1], status="diverged"))
    failed = {**job_metrics([]), "status": "failed", "error": "data error"}
    make_job(tmp_path, "2_optimizer.lr=0.3", ["optimizer.lr=0.3"], failed)
    labels = value_axes(figure(collect(tmp_path)))[0].get_legend_handles_labels()[1]
    assert "failed or diverged (no final acc)" in labels and "best" in labels
