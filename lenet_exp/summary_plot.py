"""summary.png: final accuracy against each swept number, and every job's accuracy curve, on the split that chose
(validation where the jobs held one out, else test).

Drawn to be read at a glance: a log axis where the swept values span more than a decade, tick labels
that never overlap, legends beside the data rather than on it, curves that can be told apart where they
coincide (and say so), a sensible axis for one-epoch sweeps, and jobs that did not learn marked as such.
matplotlib is imported here only, so commands that draw nothing never load it.
"""

from __future__ import annotations

import io
from collections import namedtuple
from itertools import groupby

from lenet_exp.overrides import setting_of
from lenet_exp.summary_table import job_order, parsed, short, verdict

MARKERS = "os^DvP<>Xph*"
LINES = ["-", "--", "-.", ":"]
MAX_NAMED = 48  # jobs the curve panel's legend names, in two columns
BEST, NOT_LEARNING, FAILED = "goldenrod", "0.55", "tab:red"
CHANCE = {"color": NOT_LEARNING, "linestyle": ":", "linewidth": 1}  # the chance line, in every panel
BESIDE = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "frameon": False}  # a legend beside the data
# What a value panel draws: a job, or a setting's mean over seeds with each seed's figure (`each`) and its statuses
# (`2 completed, 1 pruned`); `key` is its setting, which has one colour and marker in every panel
Point = namedtuple("Point", "job key overrides acc err each lazy statuses complete")
# How summary.md judges the lead (summary_table.verdict), as a ring around the leaders: label, line style
RINGS = {
    "clear": ("best", "solid"),
    "tie": ("best: a tie", "dashed"),
    "close": ("best and next: neither clearly better", "dashed"),  # within the spread over seeds
    "close, one seed": ("best and next: other seeds could reverse them", "dashed"),  # within SEED_NOISE
}


def _setting(overrides: dict, keys: list[str]) -> str:
    return ", ".join(f"{k}={short(overrides.get(k, ''))}" for k in keys)


def styles(rows: list[dict], keys: list[str]) -> dict[tuple, dict]:
    """One colour and marker per setting, the same in every panel: ten colours, then the next marker, so no two
    settings share both (up to 120 settings)."""
    order = dict.fromkeys(setting_of(r["overrides"], keys) for r in sorted(rows, key=job_order))
    return {key: {"color": f"C{i % 10}", "marker": MARKERS[i // 10 % len(MARKERS)]} for i, key in enumerate(order)}


def _number_at(overrides: dict, key: str) -> bool:
    """Whether the value of `key` is a number (not a bool)."""
    v = parsed(overrides.get(key))
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def figure(summary):
    """The summary figure of a summarize.Summary: a panel per swept number, or a row per job or setting when none
    is, and the curves; a setting keeps its colour and marker throughout, and the leaders are ringed as summary.md
    judges them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, seeds = summary.rows, summary.settings is not None
    keys = [k for k in summary.keys if k != "seed"] if seeds else summary.keys
    points, style = _points(summary), styles(rows, summary.keys)
    kind, leaders = verdict(summary)
    kind = kind if seeds or kind != "close" else "close, one seed"
    ring = (*RINGS.get(kind, ("", "")), {x["jobs"][0] if seeds else x["job"] for x in leaders})
    scored = [pt for pt in points if pt.acc is not None]
    numeric = [k for k in keys if scored and all(_number_at(pt.overrides, k) for pt in scored)]
    categorical = [k for k in keys if k not in numeric]
    chance = max((r["chance"] for r in rows if r.get("chance") is not None), default=None)
    panels = max(len(numeric), 1) + 1
    fig, axes = plt.subplots(1, panels, figsize=(6.4 * panels, 4.6), layout="constrained")  # a row of 2 or more
    for ax, key in zip(axes, numeric):
        _value_panel(ax, points, key, numeric, categorical, chance, seeds, style, ring)
    if not numeric:
        _dot_panel(axes[0], points, keys, chance, seeds, style, ring)
    _curve_panel(axes[-1], rows, summary.keys, chance, style)
    if summary.on != "test_acc":  # the panels draw the figure that chose: validation accuracy, where held out
        shown = "val acc" if summary.on == "val_acc" else "val or test acc (each job's own split)"
        for ax in axes:
            for text in (ax.title, ax.xaxis.label, ax.yaxis.label):
                text.set_text(text.get_text().replace("test acc", shown))
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
            Point(r["job"], setting_of(r["overrides"], summary.keys), r["overrides"], r["acc"], None, [],
                  r["not_learning"], r["status"], r["status"] == "completed")
            for r in summary.rows
        ]  # fmt: skip
    return [
        Point(g["jobs"][0], tuple(g["values"].items()), g["values"], g["acc_mean"], g["acc_std"], g["accs"],
              g["not_learning"], g["statuses"], g["complete"])
        for g in summary.settings
    ]  # fmt: skip


def _marks(ax, points: list[Point], at, vertical: bool, style: dict, ring: tuple) -> None:
    """Each point in its setting's colour and marker (hollow: pruned), its spread over seeds (along y if `vertical`)
    and each seed, the not-learning cross and the leaders' ring; `at(pt)` is where it goes, (x, y)."""
    label, ringstyle, leaders = ring
    for pt in points:
        (x, y), spread = at(pt), {"yerr" if vertical else "xerr": pt.err}
        st, hollow = style[pt.key], "pruned" in pt.statuses
        ax.errorbar(x, y, **spread, mfc="none" if hollow else st["color"], capsize=3, zorder=3, **st)
        if pt.each:  # each seed's figure, faint, along the same line
            each = ([x] * len(pt.each), pt.each) if vertical else (pt.each, [y] * len(pt.each))
            ax.scatter(*each, s=10, color=st["color"], alpha=0.45, zorder=2)
        if pt.lazy:
            ax.scatter(x, y, marker="x", s=70, color=NOT_LEARNING, zorder=4)
        if pt.job in leaders:  # a ring around, not a mark on top: the point stays visible
            ax.scatter(x, y, s=420, facecolors="none", edgecolors=BEST, linewidths=2.2, linestyle=ringstyle, zorder=2)
    key = {"s": 40, "facecolors": "none", "edgecolors": NOT_LEARNING}
    if any("pruned" in pt.statuses for pt in points):
        ax.scatter([], [], marker="o", label="pruned (hollow; acc at its last rung)", **key)
    if any(pt.lazy for pt in points):
        ax.scatter([], [], marker="x", s=70, color=NOT_LEARNING, label="not learning (at chance)")
    if leaders:
        ax.scatter([], [], s=160, facecolors="none", edgecolors=BEST, linewidths=2.2, linestyle=ringstyle, label=label)


def _value_panel(
    ax, points, key: str, numeric: list, categorical: list, chance: float | None, seeds: bool, style: dict, ring: tuple
) -> None:
    """Final test accuracy against one swept number: a grey line joins the points of each setting of the categorical
    keys on a grid; seeds as a mean with its spread and each seed; failed or diverged jobs along the bottom edge."""
    x = lambda pt: parsed(pt.overrides[key])
    alone = "mean test acc over seeds" if seeds else "final test acc"  # the line's name, no categorical key swept
    group = lambda pt: _setting(pt.overrides, categorical) or alone
    scored = [pt for pt in points if pt.acc is not None]
    finished = [pt for pt in scored if "pruned" not in pt.statuses]
    if all(len({pt.overrides.get(k) for pt in finished}) == 1 for k in numeric if k != key):  # a grid: join them
        for i, (name, pts) in enumerate(groupby(sorted(finished, key=group), key=group)):
            pts = sorted(pts, key=x)
            xs, ys = [x(pt) for pt in pts], [pt.acc for pt in pts]
            ax.plot(xs, ys, color="0.8", linewidth=1.2, linestyle=LINES[i % 4], label=name, zorder=1)  # no setting's
    _marks(ax, scored, lambda pt: (x(pt), pt.acc), True, style, ring)
    broken = [pt for pt in points if pt.acc is None and _number_at(pt.overrides, key)]
    if broken:  # no figure to place them by: along the bottom edge, where their values are
        edge = {"transform": ax.get_xaxis_transform(), "clip_on": False, "marker": "v", "s": 60, "color": FAILED}
        ax.scatter([x(pt) for pt in broken], [0.03] * len(broken), label="failed or diverged (no final acc)", **edge)
    if chance is not None:
        ax.axhline(chance, label="chance", **CHANCE)
    _value_axis(ax, sorted({x(pt) for pt in points if _number_at(pt.overrides, key)}))
    ylabel = "mean final test acc (bars: spread over seeds)" if seeds else "final test acc"
    ax.set(xlabel=key, ylabel=ylabel, title=f"test acc vs {key}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, **BESIDE)


def _dot_panel(ax, points: list, keys: list, chance: float | None, seeds: bool, style: dict, ring: tuple) -> None:
    """No swept number: a row per job, or per setting (its mean, spread and each seed), best on top, on an axis
    fitted to the figures so that small differences show; rows without a figure marked at the left edge."""
    shown = points[::-1]
    name = lambda pt: _setting(pt.overrides, keys) or "the one setting"
    names = [name(pt) if seeds else f"{pt.job}: {name(pt)}" for pt in shown]
    place = {pt.job: y for y, pt in enumerate(shown)}
    _marks(ax, [pt for pt in shown if pt.acc is not None], lambda pt: (pt.acc, place[pt.job]), False,
           style, ring)  # fmt: skip
    broken = [place[pt.job] for pt in shown if pt.acc is None]
    if broken:
        edge = {"transform": ax.get_yaxis_transform(), "clip_on": False, "marker": ">", "s": 60, "color": FAILED}
        ax.scatter([0.0] * len(broken), broken, label="failed or diverged (no final acc)", **edge)
    low, high = ax.get_xlim()
    if chance is not None and low <= chance <= high:  # only where it does not squeeze the figures together
        ax.axvline(chance, label="chance", **CHANCE)
    ax.set_yticks(range(len(shown)), names, fontsize=7)
    ax.set_ylim(-0.7, len(shown) - 0.3)
    what = "mean final test acc (bars: spread over seeds; dots: each seed)" if seeds else "final test acc"
    ax.set(xlabel=what, title=f"test acc per {'setting' if seeds else 'job'} (best on top)")
    ax.grid(alpha=0.3, axis="x")
    if ax.get_legend_handles_labels()[1]:
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


def _curve_panel(ax, rows: list[dict], keys: list[str], chance: float | None, style: dict) -> None:
    """Every job's test accuracy per epoch in its setting's colour and marker (seeds of a setting: other line styles);
    a curve that coincides with an earlier one says so in the legend."""
    from matplotlib import ticker

    jobs = sorted((r for r in rows if r["history"]), key=job_order)
    seen: dict[tuple, object] = {}
    seeds: dict[tuple, int] = {}  # how many jobs of each setting are drawn so far
    for r in jobs:
        curve, setting = tuple(r["history"]), setting_of(r["overrides"], keys)
        same = seen.setdefault(curve, r["job"])
        note = f" (same curve as job {same})" if same != r["job"] else ""
        fate = {"never": " [not learning]", "collapsed": " [collapsed to chance]"}.get(r.get("learning"), "")
        tag = " [pruned]" * (r["status"] == "pruned") + fate
        label = f"{r['job']}: {_setting(r['overrides'], keys)}{tag}{note}"
        seeds[setting] = seeds.get(setting, -1) + 1
        line = LINES[seeds[setting] % len(LINES)]
        ax.plot(range(1, len(curve) + 1), curve, markersize=5, linewidth=1.3, alpha=0.85, label=label, linestyle=line,
                **style[setting])  # fmt: skip
    longest = max((len(r["history"]) for r in jobs), default=1)
    ax.set_xlim(0.5, longest + 0.5)  # one epoch too: a tick at 1, not at 0.945 and 1.05
    ticks = ticker.FixedLocator(range(1, longest + 1)) if longest <= 12 else ticker.MaxNLocator(integer=True)
    ax.xaxis.set_major_locator(ticks)
    if chance is not None:
        ax.axhline(chance, **CHANCE)
    ax.set(xlabel="epoch", ylabel="test acc", title="test acc per epoch, every job")
    ax.grid(alpha=0.3)
    if len(jobs) > MAX_NAMED:  # a legend that long would squeeze the panels to nothing
        ax.set_title(f"test acc per epoch, every job ({len(jobs)}: too many to name; summary.csv lists them)")
    elif jobs:
        ax.legend(fontsize=6, ncol=1 if len(jobs) <= 24 else 2, **BESIDE)


def label_boxes(ax) -> list:
    """The screen boxes of the visible, non-empty x tick labels (after the figure is drawn)."""
    renderer = ax.figure.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]


def overlaps(boxes: list) -> bool:
    """Whether any two neighbouring label boxes (left to right) touch or run together."""
    boxes = sorted(boxes, key=lambda b: b.x0)
    return any(a.x1 + 3 > b.x0 for a, b in zip(boxes, boxes[1:]))  # 3 pixels apart at least


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
