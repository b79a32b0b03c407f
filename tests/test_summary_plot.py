"""summary.png read from the figure itself: a panel per swept key in its own scale, the leaders alike in every panel,
the rest grey, one legend whatever the number of jobs, and no text under 9 points."""

import json
import math
import random
from itertools import product

import pytest
from helpers import make_job
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgb
from matplotlib.text import Text

from lenet_exp.summary import collect
from lenet_exp.summary_plot import LEADING, REST, figure, label_boxes, overlaps
from lenet_exp.summary_table import to_csv, to_markdown, verdict

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


def ranged_sweep(root, jobs: int, seed: int = 1):
    """A search over ranges, as a sampler draws them: lr and weight decay log-uniform, two categorical keys; a few
    jobs at the largest rates diverge."""
    rnd = random.Random(seed)
    keys = ["optimizer.lr", "optimizer.weight_decay", "activation", "model.conv_channels"]
    (root / "sweep.json").write_text(json.dumps({"swept": keys, "overrides": []}))
    for n in range(jobs):
        lr, wd = 10 ** rnd.uniform(-4, 0), 10 ** rnd.uniform(-6, -2)
        act, channels = rnd.choice(["relu", "tanh", "sigmoid"]), rnd.choice(["[6,16]", "[16,32]", "[32,64]"])
        top = 0.9 - 0.08 * abs(math.log10(lr) + 2.5) - 0.1 * (act == "sigmoid")
        history = [top - 0.04 * (3 - e) + rnd.gauss(0, 0.01) for e in range(3)]
        status = "diverged" if lr > 0.5 and n % 2 else "completed"
        values = [lr, wd, act, channels]
        make_job(root, f"{n}_x", [f"{k}={v}" for k, v in zip(keys, values)], job_metrics(history, status))
    return collect(root)


def key_axes(fig):
    return [ax for ax in fig.axes if " per epoch" not in ax.get_title()]


def curve_axes(fig):
    return next(ax for ax in fig.axes if " per epoch" in ax.get_title())


def legend_texts(fig) -> list[str]:
    return [t.get_text() for t in curve_axes(fig).get_legend().get_texts()]


def points(ax) -> list:
    """The scatter marks drawn in data coordinates: jobs, stars."""
    return [c for c in ax.collections if isinstance(c, PathCollection) and c.get_offset_transform() is ax.transData]


def stars(ax) -> list:
    """The star marks on a panel: (x, y, filled)."""
    found = []
    for c in points(ax):
        if list(c.get_sizes()) == [340]:
            (x, y), filled = c.get_offsets()[0], len(c.get_facecolors()) > 0
            found.append((float(x), float(y), filled))
    return found


@pytest.mark.parametrize("epochs", [1, 10])
def test_a_panel_per_key_in_its_own_scale_ticks_that_never_touch_a_legend_beside(tmp_path, epochs):
    fig = figure(grid_sweep(tmp_path, epochs))
    titles = [ax.get_title() for ax in key_axes(fig)]
    assert [t.split("\n")[0] for t in titles] == ["optimizer.lr", "activation"]  # largest share first
    assert all(t.endswith("% of the variance") for t in titles)
    lr_axis, act_axis = key_axes(fig)
    assert lr_axis.get_xscale() == "log"  # 0.01 to 0.9: more than a decade
    assert [t.get_text() for t in lr_axis.get_xticklabels() if t.get_text()] == LRS
    assert [t.get_text() for t in act_axis.get_xticklabels()] == ["relu", "sigmoid"]  # a categorical key too
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        assert not overlaps(label_boxes(ax)), ax.get_title()
    for ax in key_axes(fig):  # every job's point within the axis, however many share a value
        xs = [x for c in points(ax) for x, _ in c.get_offsets()]
        assert ax.get_xlim()[0] < min(xs) and max(xs) < ax.get_xlim()[1]
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert len(legends) == 1  # one legend for the picture, beside the curves
    assert legends[0].get_window_extent(renderer).x0 >= curve_axes(fig).get_window_extent(renderer).x1
    curves = curve_axes(fig)
    assert curves.get_xlim() == (0.5, epochs + 0.5)
    assert [t for t in curves.get_xticks() if 0.5 <= t <= epochs + 0.5] == list(range(1, epochs + 1))


def test_each_value_shows_its_mean_and_spread_as_summary_md_gives_them(tmp_path):
    summary = grid_sweep(tmp_path, 2)
    lr_axis = key_axes(figure(summary))[0]
    effect = next(e for e in summary.importance.effects if e.key == "optimizer.lr")
    means = sorted((float(c.lines[0].get_xdata()[0]), float(c.lines[0].get_ydata()[0])) for c in lr_axis.containers)
    assert means == pytest.approx([(float(v.value), v.mean) for v in effect.levels])
    assert f"| optimizer.lr | {100 * effect.share:.0f}% |" in to_markdown(summary)


def test_the_leading_settings_keep_their_colour_and_the_best_its_star_in_every_panel(tmp_path):
    summary = grid_sweep(tmp_path, 2)
    fig = figure(summary)
    best = summary.rows[0]
    kind, leaders = verdict(summary)  # summary.md's judgement: one seed each, a lead under 0.02 is no clear best
    assert (kind, [r["job"] for r in leaders]) == ("close", [best["job"], summary.rows[1]["job"]])
    for ax, key in zip(key_axes(fig), ["optimizer.lr", "activation"]):
        marked = sorted(stars(ax), key=lambda s: -s[1])
        assert [y for _, y, _ in marked] == pytest.approx([r["acc"] for r in leaders])
        assert not any(filled for _, _, filled in marked)  # hollow: other seeds could reverse them
        where = float(best["overrides"][key]) if key == "optimizer.lr" else ["relu", "sigmoid"].index("relu")
        assert marked[0][0] == pytest.approx(where)
    named = [line for line in curve_axes(fig).get_lines() if line.get_label().startswith("1. ")]
    assert named and named[0].get_label() == f"1. optimizer.lr={best['overrides']['optimizer.lr']}, activation=relu"
    colour = named[0].get_color()
    for ax in key_axes(fig):  # the leader's point, in its colour, at its figure
        coloured = [c for c in points(ax) if tuple(c.get_edgecolors()[0][:3]) == pytest.approx(to_rgb(colour))]
        assert any(abs(p[1] - best["acc"]) < 1e-9 for c in coloured for p in c.get_offsets())


def test_two_hundred_jobs_read_as_four_keys_and_one_legend(tmp_path):
    """A ranged search: its layout grows with the keys, not with the jobs; the rest are one grey band."""
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir(), large.mkdir()
    fig_small, fig = figure(ranged_sweep(small, 20)), figure(ranged_sweep(large, 200))
    assert tuple(fig.get_size_inches()) == tuple(fig_small.get_size_inches())
    assert len(key_axes(fig)) == 4 and {ax.get_title().split("\n")[0] for ax in key_axes(fig)} == {
        "optimizer.lr", "optimizer.weight_decay", "activation", "model.conv_channels"}  # fmt: skip
    texts = legend_texts(fig)
    assert len([t for t in texts if t[0].isdigit()]) == LEADING and len(texts) <= LEADING + 8
    diverged = sum(1 for r in collect(large).rows if r["status"] == "diverged")
    assert f"the other {200 - LEADING} jobs" in texts and diverged
    lr_axis = next(ax for ax in key_axes(fig) if ax.get_title().startswith("optimizer.lr\n"))
    assert lr_axis.get_xscale() == "log" and not overlaps(label_boxes(lr_axis))
    bottom = [
        c
        for c in lr_axis.collections
        if isinstance(c, PathCollection) and c.get_offset_transform() is not lr_axis.transData
    ]
    assert sum(len(c.get_offsets()) for c in bottom) == diverged  # failed and diverged, along the bottom edge
    grey = [c for c in lr_axis.collections if c.get_offsets().size and tuple(c.get_edgecolors()[0][:3]) ==
            pytest.approx((float(REST),) * 3)]  # fmt: skip
    assert sum(len(c.get_offsets()) for c in grey) == 200 - diverged - LEADING


@pytest.mark.parametrize("sweep", ["grid", "ranged"])
def test_no_text_is_under_nine_points(tmp_path, sweep):
    fig = figure(grid_sweep(tmp_path, 3) if sweep == "grid" else ranged_sweep(tmp_path, 60))
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]
    assert sizes and min(sizes) >= 9


def test_not_learning_is_flagged_whatever_the_status(tmp_path):
    summary = grid_sweep(tmp_path, 2)
    stuck = {r["job"] for r in summary.rows if r["not_learning"]}
    assert stuck == {0, 2, 9}
    csv = to_csv(summary)
    assert csv.count("not learning (at chance)") == 3
    assert "| completed, not learning (at chance) |" in to_markdown(summary)
    fig = figure(summary)
    assert "not learning (at chance)" in legend_texts(fig) and "chance" in legend_texts(fig)
    crosses = [c for c in key_axes(fig)[0].collections if c.get_offsets().size and c.get_paths()
               and len(c.get_paths()[0].vertices) == 4 and c.get_offsets()[0][1] == pytest.approx(0.1)]  # fmt: skip
    assert sum(len(c.get_offsets()) for c in crosses) == 3


def test_summary_says_when_no_job_learned(tmp_path):
    for n, lr in enumerate(LRS[:4]):  # four trials all at chance: no "best" from a four-way tie
        make_job(tmp_path, f"{n}_optimizer.lr={lr}", [f"optimizer.lr={lr}"], job_metrics([0.1, 0.1]))
    md = to_markdown(collect(tmp_path))
    assert "No job learned: all 4 completed jobs sit at chance" in md and "Best:" not in md
    assert "Every job ended at the same figure: no key moved it." in md


def test_summary_says_when_the_best_is_tied(tmp_path):
    for n, acc in enumerate([0.7, 0.8, 0.8]):
        make_job(tmp_path, f"{n}_optimizer.lr={LRS[n]}", [f"optimizer.lr={LRS[n]}"], job_metrics([0.5, acc]))
    summary = collect(tmp_path)
    assert "Best: a tie at test acc 0.8000 between jobs 1, 2; no single best. Rerun job 1 with:" in to_markdown(summary)
    fig = figure(summary)
    assert "best: a tie" in legend_texts(fig)
    assert [filled for _, _, filled in stars(key_axes(fig)[0])] == [False, False]  # both, hollow


def test_failed_and_diverged_jobs_are_drawn_without_a_figure(tmp_path):
    make_job(tmp_path, "0_optimizer.lr=0.1", ["optimizer.lr=0.1"], job_metrics([0.5, 0.6]))
    make_job(tmp_path, "1_optimizer.lr=100", ["optimizer.lr=100"], job_metrics([0.1], status="diverged"))
    failed = {**job_metrics([]), "status": "failed", "error": "data error"}
    make_job(tmp_path, "2_optimizer.lr=0.3", ["optimizer.lr=0.3"], failed)
    texts = legend_texts(figure(collect(tmp_path)))
    assert "failed or diverged (no figure)" in texts and "best setting" in texts
