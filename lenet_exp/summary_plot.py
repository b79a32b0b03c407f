"""summary.png: final test accuracy against each swept number, and every job's test-accuracy curve.

Drawn to be read at a glance: a log axis where the swept values span more than a decade, tick labels
that never overlap, legends beside the data rather than on it, curves that can be told apart where they
coincide (and say so), a sensible axis for one-epoch sweeps, and jobs that did not learn marked as such.
matplotlib is imported here only, so commands that draw nothing never load it.
"""

from __future__ import annotations

import io
from collections import namedtuple
from itertools import groupby

from lenet_exp.summary_table import job_order, parsed, short

MARKERS = "os^DvP<>Xph*"
LINES = ["-", "--", "-.", ":"]
BEST, NOT_LEARNING, FAILED = "gold", "0.55", "tab:red"
CHANCE = {"color": NOT_LEARNING, "linestyle": ":", "linewidth": 1}  # the chance line, in every panel
BESIDE = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "frameon": False}  # a legend beside the data
# What a value panel draws: a job, or a setting's mean over seeds (its statuses: `2 completed, 1 pruned`)
Point = namedtuple("Point", "overrides acc err lazy statuses complete")


def _setting(overrides: dict, keys: list[str]) -> str:
    return ", ".join(f"{k}={short(overrides.get(k, ''))}" for k in keys)


def _style(i: int, line: bool = True) -> dict:
    """The i-th curve's marker and line, so that neighbours differ in both; `line` false: markers only."""
    return {"marker": MARKERS[i % len(MARKERS)], "linestyle": LINES[i % len(LINES)] if line else "none"}


def _number_at(overrides: dict, key: str) -> bool:
    """Whether the value of `key` is a number (not a bool)."""
    v = parsed(overrides.get(key))
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def figure(summary):
    """The summary figure of a summarize.Summary: a panel per swept number, or bars when none is, and the curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, seeds = summary.rows, summary.settings is not None
    keys = [k for k in summary.keys if k != "seed"] if seeds else summary.keys
    points = _points(summary)
    scored = [pt for pt in points if pt.acc is not None]
    numeric = [k for k in keys if scored and all(_number_at(pt.overrides, k) for pt in scored)]
    categorical = [k for k in keys if k not in numeric]
    chance = max((r["chance"] for r in rows if r.get("chance") is not None), default=None)
    panels = max(len(numeric), 1) + 1
    fig, axes = plt.subplots(1, panels, figsize=(6.4 * panels, 4.6), layout="constrained")  # a row of 2 or more
    for ax, key in zip(axes, numeric):
        _value_panel(ax, points, key, numeric, categorical, chance, seeds)
    if not numeric:
        _bar_panel(axes[0], rows, summary.keys, chance)
    _curve_panel(axes[-1], rows, summary.keys, chance)
    fig.canvas.draw()  # lay out, then thin any tick labels that still touch
    for ax in axes:
        thin_tick_labels(ax)
    return fig


def to_png(summary) -> bytes:
    import matplotlib.pyplot as plt

    fig = figure(summary)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()


def _points(summary) -> list[Point]:
    """What the value panels draw, best first: a point per job, or per setting (mean and spread) with seeds swept."""
    if summary.settings is None:
        return [
            Point(r["overrides"], r["test_acc"], None, r["not_learning"], r["status"], r["status"] == "completed")
            for r in summary.rows
        ]
    return [
        Point(g["values"], g["test_acc_mean"], g["test_acc_std"], g["not_learning"], g["statuses"], g["complete"])
        for g in summary.settings
    ]


def _value_panel(
    ax, points: list[Point], key: str, numeric: list[str], categorical: list[str], chance: float | None, seeds: bool
) -> None:
    """Final test accuracy against one swept number: a line per setting of the categorical keys, on a grid; seeds as a
    mean with its spread; jobs a halving search stopped early apart, as their figures are from fewer epochs."""
    x = lambda pt: parsed(pt.overrides[key])
    alone = "mean test acc over seeds" if seeds else "final test acc"  # the line's name, no categorical key swept
    label = lambda pt: _setting(pt.overrides, categorical) or alone
    scored = [pt for pt in points if pt.acc is not None]
    finished = [pt for pt in scored if "pruned" not in pt.statuses]
    grid = all(len({pt.overrides.get(k) for pt in finished}) == 1 for k in numeric if k != key)
    for i, (name, group) in enumerate(groupby(sorted(finished, key=label), key=label)):
        group = sorted(group, key=x)
        xs, ys = [x(pt) for pt in group], [pt.acc for pt in group]
        if seeds:
            ax.errorbar(xs, ys, yerr=[pt.err or 0.0 for pt in group], capsize=3, label=name, **_style(i, grid))
        else:
            ax.plot(xs, ys, label=name, **_style(i, grid))

    def mark(pts: list[Point], label: str, ys: list | None = None, **style) -> None:
        if pts:
            ax.scatter([x(pt) for pt in pts], ys or [pt.acc for pt in pts], label=label, **style)

    pruned, lazy = [pt for pt in scored if "pruned" in pt.statuses], [pt for pt in scored if pt.lazy]
    hollow = {"marker": "o", "s": 40, "facecolors": "none", "edgecolors": NOT_LEARNING, "zorder": 3}
    mark(pruned, "pruned (stopped early; acc at its last rung)", **hollow)
    mark(lazy, "not learning (at chance)", marker="x", s=70, color=NOT_LEARNING, zorder=4)
    broken = [pt for pt in points if pt.acc is None and _number_at(pt.overrides, key)]
    # no figure to place them by: along the bottom edge, where their values are
    edge = {"transform": ax.get_xaxis_transform(), "clip_on": False, "marker": "v", "s": 60, "color": FAILED}
    mark(broken, "failed or diverged (no final acc)", [0.03] * len(broken), zorder=4, **edge)
    best = [pt for pt in finished if pt.complete and not pt.lazy][:1]
    mark(best, "best", marker="*", s=320, color=BEST, edgecolor="black", zorder=5)
    if chance is not None:
        ax.axhline(chance, label="chance", **CHANCE)
    _value_axis(ax, sorted({x(pt) for pt in points if _number_at(pt.overrides, key)}))
    ylabel = "mean final test acc (bars: spread over seeds)" if seeds else "final test acc"
    ax.set(xlabel=key, ylabel=ylabel, title=f"test acc vs {key}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, **BESIDE)


def _value_axis(ax, values: list) -> None:
    """Log scale when the values span more than a decade; ticks at the swept values, labelled plainly."""
    from matplotlib import ticker

    if not values:
        return
    low, high = min(values), max(values)  # every value on the axis: jobs drawn along the edge widen no limits
    if low > 0 and high / low > 10:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    if len(values) <= 8:  # a grid: a tick at each swept value
        ax.xaxis.set_major_locator(ticker.FixedLocator(values))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    pad = (high - low) * 0.06 or (abs(low) * 0.5 or 1.0)
    ax.set_xlim(*((low / 1.4, high * 1.4) if ax.get_xscale() == "log" else (low - pad, high + pad)))


def _bar_panel(ax, rows: list[dict], keys: list[str], chance: float | None) -> None:
    """No swept number: one bar per job, best on top; not-learning jobs grey, jobs without a figure listed at zero."""
    shown = rows[::-1]
    names = [f"{r['job']}: {_setting(r['overrides'], keys)}" if keys else str(r["job"]) for r in shown]
    colors = [NOT_LEARNING if r.get("not_learning") else FAILED if r["test_acc"] is None else "tab:blue" for r in shown]
    ax.barh(names, [r["test_acc"] or 0.0 for r in shown], color=colors)
    if chance is not None:
        ax.axvline(chance, **CHANCE)
    ax.set(xlabel="final test acc (grey: not learning, red: no figure)", title="test acc per job (best on top)")
    ax.tick_params(axis="y", labelsize=7)


def _curve_panel(ax, rows: list[dict], keys: list[str], chance: float | None) -> None:
    """Every job's test accuracy per epoch; a curve that coincides with an earlier one says so in the legend."""
    from matplotlib import ticker

    jobs = sorted((r for r in rows if r["history"]), key=job_order)
    seen: dict[tuple, object] = {}
    for i, r in enumerate(jobs):
        curve = tuple(r["history"])
        same = seen.setdefault(curve, r["job"])
        note = f" (same curve as job {same})" if same != r["job"] else ""
        tag = " [pruned]" * (r["status"] == "pruned") + " [not learning]" * bool(r.get("not_learning"))
        label = f"{r['job']}: {_setting(r['overrides'], keys)}{tag}{note}"
        ax.plot(range(1, len(curve) + 1), curve, markersize=5, linewidth=1.3, alpha=0.85, label=label, **_style(i))
    longest = max((len(r["history"]) for r in jobs), default=1)
    ax.set_xlim(0.5, longest + 0.5)  # one epoch too: a tick at 1, not at 0.945 and 1.05
    ticks = ticker.FixedLocator(range(1, longest + 1)) if longest <= 12 else ticker.MaxNLocator(integer=True)
    ax.xaxis.set_major_locator(ticks)
    if chance is not None:
        ax.axhline(chance, **CHANCE)
    ax.set(xlabel="epoch", ylabel="test acc", title="test acc per epoch, every job")
    ax.grid(alpha=0.3)
    if jobs:
        ax.legend(fontsize=6, ncol=1 if len(jobs) <= 24 else 2, **BESIDE)


def label_boxes(ax) -> list:
    """The screen boxes of the visible, non-empty x tick labels (after the figure is drawn)."""
    renderer = ax.figure.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]


def overlaps(boxes: list) -> bool:
    """Whether any two neighbouring label boxes (left to right) touch."""
    boxes = sorted(boxes, key=lambda b: b.x0)
    return any(a.x1 > b.x0 for a, b in zip(boxes, boxes[1:]))


def thin_tick_labels(ax) -> None:
    """Keep every 2nd (3rd, ...) x tick label until none of them touch."""
    if not overlaps(label_boxes(ax)):
        return
    ticks, texts, limits = list(ax.get_xticks()), [t.get_text() for t in ax.get_xticklabels()], ax.get_xlim()
    for keep in (2, 3, 4, 6, 8, 12):
        ax.set_xticks(ticks, [text if i % keep == 0 else "" for i, text in enumerate(texts)])
        ax.set_xlim(limits)
        ax.figure.canvas.draw()
        if not overlaps(label_boxes(ax)):
            return
