"""summary.png: what mattered, in a picture that reads at two hundred jobs as at four.

A panel per swept key (seed aside), largest share of the variance first, categorical keys included: every job's figure
on the choosing split at the fidelity summary.md's "What mattered" uses, each value's mean and spread, the x axis in
the key's own scale (log where a number spans more than a decade); the leading settings have one colour each in every
panel, the rest are grey, and the best is starred alike in every panel. Below, a curves panel names the leading
settings and draws the rest as a grey band. The layout grows with the keys, never the legend with the jobs; no text is
under 9 points. matplotlib is imported here only, so commands that draw nothing never load it.
"""

from __future__ import annotations

import io
import math
import textwrap
import warnings
from dataclasses import dataclass

from lenet_exp.importance import ONE, figures, key_points, levels, numeric
from lenet_exp.overrides import setting_of
from lenet_exp.summary_table import job_order, short, verdict
from lenet_exp.words import plural

LEADING = 5  # settings named and coloured; the rest are grey
WRAP = 48  # characters a line of a setting's name in the legend
COLUMNS = 3  # key panels a row
REST, FAILED, STAR, HOLLOW_STAR = "0.6", "tab:red", "gold", "#c89600"
CHANCE = {"color": "0.45", "linestyle": ":", "linewidth": 1.2}  # the chance line, where figures come near it
BASE = {"color": "0.75", "linestyle": "--", "linewidth": 1.2, "zorder": 1}  # one knob at a time: the base's value
LINES = ["-", "--", "-.", ":"]  # a setting's seeds, in turn
FEW = 3  # the other jobs' curves as thin grey lines up to this many, a band beyond
FONTS = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 12,
}
# How summary.md judges the lead (summary_table.verdict), as the star on the leaders: label, filled
STARS = {
    "clear": ("best setting", True),
    "tie": ("best: a tie", False),
    "close": ("best and next: neither clearly better", False),  # within the spread over seeds
    "close, one seed": ("best and next: other seeds could reverse them", False),  # within SEED_NOISE
}


@dataclass
class View:
    """What every panel shares: the jobs' figures at one fidelity, the leading settings' colours, the starred."""

    points: list  # (row, figure) at the fidelity
    found: object  # the Importance they come from (importance.key_points: the points that tell of a key)
    keys: list[str]  # the swept keys, seed aside
    colours: dict  # setting -> colour, for the leading settings
    names: dict  # setting -> its name in the legend
    starred: set  # the settings summary.md names best
    star: tuple  # (label, filled)
    chance: float | None
    label: str  # the figure, in words: `val acc after 3 epochs`


def setting_name(overrides: dict, keys: list[str]) -> str:
    return ", ".join(f"{k}={short(overrides.get(k, ''))}" for k in keys) or ONE


def view(summary) -> View:
    """The jobs' figures at the fidelity, and the settings that lead (as summary.md orders them: by mean, or by job)."""
    keys = [k for k in summary.keys if k != "seed"]
    found = summary.importance or figures(summary.rows, summary.keys, summary.search)
    order = summary.settings if summary.settings is not None else summary.rows
    lead = [setting_of(x["overrides"] if "acc" in x else x["values"], keys) for x in order]
    lead = list(dict.fromkeys(lead))[:LEADING]
    kind, leaders = verdict(summary)
    kind = kind if summary.settings is not None or kind != "close" else "close, one seed"
    starred = {setting_of(x.get("values", x["overrides"]), keys) for x in leaders}
    split = {"val_acc": "val acc", "test_acc": "test acc"}.get(summary.on, "val or test acc (each job's own split)")
    at = f"after {found.epochs} epoch{'s' * (found.epochs != 1)}" if found.epochs else "final"
    by = {setting_of(r["overrides"], keys): r["overrides"] for r in summary.rows}
    chance = max((r["chance"] for r in summary.rows if r.get("chance") is not None), default=None)
    lowest = min((a for r in summary.rows for a in r["history"] if a is not None), default=None)
    near = chance is not None and lowest is not None and lowest <= chance + 0.1  # drawn only where figures come near
    return View(
        found.points,
        found,
        keys,
        {s: f"C{i}" for i, s in enumerate(lead)},
        {s: f"{i + 1}. {name}" for i, (s, name) in enumerate(zip(lead, leader_names(lead, by, keys, found)))},
        starred,
        STARS.get(kind, ("", True)),
        chance if near else None,
        f"{split} {at}" if found.epochs else f"final {split}",
    )


def leader_names(lead: list[tuple], by: dict, keys: list[str], found) -> list[str]:
    """The leading settings' names in the legend, short enough to leave the panels room: by the keys on which they
    differ (one knob at a time: the knob changed, or `the base`), wrapped."""
    if found.base is not None:
        base = dict(zip(found.swept, found.base))
        changed = [[k for k in found.swept if by.get(s, {}).get(k) != base[k]] for s in lead]
        names = [", ".join(f"{k}={short(by[s][k])}" for k in c) or "the base" for s, c in zip(lead, changed)]
    else:
        differ = [k for k in keys if len({by.get(s, {}).get(k) for s in lead}) > 1] or keys
        names = [setting_name(by.get(s, {}), differ) for s in lead]
    return [textwrap.fill(name, WRAP, subsequent_indent="   ") for name in names]


def figure(summary):
    """The summary figure of a summary.Summary: a panel per swept key in rows of COLUMNS, the curves below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seen = view(summary)
    effects = {e.key: e for e in summary.importance.effects} if summary.importance else {}
    order = list(effects)  # importance's order: largest share first (one knob at a time: largest change)
    varied = [k for k in seen.keys if len({r["overrides"].get(k) for r, _ in seen.points}) > 1]
    keys = sorted(varied, key=lambda k: order.index(k) if k in order else len(order)) or [None]
    cols = min(COLUMNS, len(keys))
    rows = math.ceil(len(keys) / cols)
    with plt.rc_context(FONTS):
        fig = plt.figure(figsize=(4.8 * cols + 3.6, 3.9 * rows + 3.6), layout="constrained")
        grid = fig.add_gridspec(rows + 1, cols)
        for i, key in enumerate(keys):
            ax = fig.add_subplot(grid[i // cols, i % cols])
            key_panel(ax, key, seen, summary.rows, effects.get(key))
        curves = fig.add_subplot(grid[rows, :])
        curve_panel(curves, summary.rows, seen)
        fig.suptitle(headline(summary, seen))
        fig.canvas.draw()  # lay out, then thin or turn any tick labels that still touch
        for ax in fig.axes:
            thin_tick_labels(ax)
    return fig


def headline(summary, seen: View) -> str:
    """The picture's title: the figure it plots, at what fidelity, over how many jobs; the strongest interaction."""
    found = summary.importance
    head = f"{seen.label} of {len(seen.points)} job{'s' * (len(seen.points) != 1)}"
    if found and found.how:
        head += f" ({found.how})"
    if found and found.interaction and found.interaction[2] >= 0.05:
        a, b, share = found.interaction
        head += f"; strongest interaction {a} × {b}: {100 * share:.0f}%"
    return head


def to_png(summary) -> bytes:
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():  # a layout that cannot give every panel room still draws them: no word on stderr
        warnings.simplefilter("ignore", UserWarning)
        fig = figure(summary)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()


def positions(key: str | None, points: list, design: str | None = None) -> tuple[list, list, dict]:
    """Where each point goes along x, its key's levels, and each level's place: a number at its value (spread a
    little either side where several jobs share it), anything else at 0, 1, 2, ... in its levels' order; a group of
    a ranged number leaves each job at its own value."""
    shown, of = levels(points, key, design)
    numbers = bool(shown) and all(v.low is not None for v in shown)
    place = {v.value: (v.low if numbers else i) for i, v in enumerate(shown)}
    log = numbers and min(v.low for v in shown) > 0 and max(v.high for v in shown) / min(v.low for v in shown) > 10
    scale = math.log10 if log else float
    centres = sorted({scale(v.low) for v in shown if v.low == v.high} if numbers else set(place.values()))
    width = 0.3 * min((b - a for a, b in zip(centres, centres[1:])), default=1.0)
    count, taken, xs = {label: of.count(label) for label in set(of)}, {}, []
    ranged = {v.value for v in shown if v.low != v.high}
    for label, (row, _) in zip(of, points):
        if label in ranged:
            xs.append(numeric(row["overrides"].get(key)))
            continue
        j = taken[label] = taken.get(label, -1) + 1
        x = scale(place[label]) + (width * (2 * (j + 0.5) / count[label] - 1) if count[label] > 1 else 0.0)
        xs.append(10**x if log else x)
    return xs, shown, {"place": place, "log": log, "numbers": numbers, "of": of, "width": width}


def key_panel(ax, key: str | None, seen: View, rows: list[dict], effect) -> None:
    """One key: every job's figure (leading settings in their colours, the rest grey; hollow: pruned; a cross: not
    learning), each value's mean and spread in black, the best starred, failed and diverged jobs along the bottom."""
    mine = key_points(seen.found, key)
    xs, shown, where = positions(key, mine, seen.found.design)
    groups: dict[tuple, list] = {}
    for (row, y), x in zip(mine, xs):
        colour = seen.colours.get(setting_of(row["overrides"], seen.keys), REST)
        look = (colour, "x" if row["not_learning"] else "o", row["status"] == "pruned")
        groups.setdefault(look, []).append((x, y))
    size = 36 if len(mine) <= 40 else 18
    for (colour, marker, hollow), at in sorted(groups.items(), key=lambda g: g[0][0] != REST):
        face = {"facecolors": "none" if hollow else colour, "edgecolors": colour} if marker == "o" else {"c": colour}
        ax.scatter(*zip(*at), s=size, marker=marker, alpha=0.75, linewidths=1.2, zorder=2 + (colour != REST), **face)
    for v in shown:
        x = where["place"][v.value]
        if v.low != v.high:  # a group of a ranged number: its mean in the middle of its span
            x = (v.low * v.high) ** 0.5 if where["log"] else (v.low + v.high) / 2
        ax.errorbar(x, v.mean, yerr=v.spread, fmt="_", markersize=24, mew=2.5, color="black", elinewidth=1.5,
                    capsize=4, zorder=4)  # fmt: skip
    stars(ax, key, seen, where, mine)
    found = seen.found
    if found.base is not None and key in found.swept:  # one knob at a time: the base's value, which the rest vary from
        value = found.base[found.swept.index(key)]
        ax.axvline(numeric(value) if where["numbers"] else where["place"].get(str(value)), **BASE)
    broken(ax, key, rows, where)
    axis(ax, shown, where)
    low, high = ax.get_ylim()
    if seen.chance is not None and low <= seen.chance <= high:  # only where this panel's figures come near it
        ax.axhline(seen.chance, **CHANCE)
    ax.set(ylabel=seen.label, title=panel_title(key, effect))
    ax.grid(alpha=0.3)


def panel_title(key: str | None, effect) -> str:
    """The key, its share of the variance, and in a one-knob-at-a-time design its largest change from the base."""
    if effect is None:
        return key or ONE
    share = f"{100 * effect.share:.0f}% of the variance"
    if effect.change:
        return f"{key}: {share}\n{short(effect.change[0])}: {effect.change[1]:+.4f} from the base"
    return f"{key}\n{share}"


def stars(ax, key: str | None, seen: View, where: dict, points: list) -> None:
    """The settings summary.md names best, starred at their value and their mean figure, alike in every panel."""
    label, filled = seen.star
    for setting in seen.starred:
        mine = [(row, y, of) for (row, y), of in zip(points, where["of"]) if setting_of(row["overrides"],
                seen.keys) == setting]  # fmt: skip
        if not mine:
            continue
        row, _, of = mine[0]
        x = where["place"].get(of)
        if where["numbers"] and key:
            x = numeric(row["overrides"].get(key))
        y = sum(y for _, y, _ in mine) / len(mine)
        ax.scatter(x, y, marker="*", s=340, facecolors=STAR if filled else "none", linewidths=1.6 if filled else 2.2,
                   edgecolors="black" if filled else HOLLOW_STAR, zorder=5)  # fmt: skip


def broken(ax, key: str | None, rows: list[dict], where: dict) -> None:
    """Failed and diverged jobs, which have no figure: along the bottom edge, at their value (a value no job with a
    figure had gets a place of its own)."""
    place = where["place"]
    for r in (r for r in rows if r["status"] in ("failed", "diverged")):
        value = str(r["overrides"].get(key)) if key else ONE
        if where["numbers"] and numeric(value) is not None:
            x = numeric(value)
        elif not where["numbers"]:
            x = place.setdefault(value, len(place))
        else:
            continue
        edge = {"transform": ax.get_xaxis_transform(), "clip_on": False, "marker": "v", "s": 60, "color": FAILED}
        ax.scatter([x], [0.03], zorder=5, **edge)


def axis(ax, shown: list, where: dict) -> None:
    """A number's own scale (log where it spans more than a decade; a tick at each value of a grid); anything else a
    tick per value, labelled as swept."""
    from matplotlib import ticker

    place = where["place"]
    if not where["numbers"]:
        ax.set_xticks(range(len(place)), [short(v) for v in place])
        ax.set_xlim(-0.6, len(place) - 0.4)
        return
    low, high = min(v.low for v in shown), max(v.high for v in shown)
    if where["log"]:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    if all(v.low == v.high for v in shown):  # a grid: a tick at each swept value
        ax.xaxis.set_major_locator(ticker.FixedLocator(sorted(place.values())))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    scale = math.log10 if where["log"] else float
    pad = max(where["width"] * 1.4, (scale(high) - scale(low)) * 0.06) if high > low else where["width"] * 1.4 or 1.0
    low, high = scale(low) - pad, scale(high) + pad
    ax.set_xlim(*((10**low, 10**high) if where["log"] else (low, high)))


def curve_panel(ax, rows: list[dict], seen: View) -> None:
    """Each epoch's figure: the leading settings' jobs by name in their colours (a setting's seeds in other line
    styles), the other jobs as a grey band from their lowest to their highest, with their median."""
    from matplotlib import ticker

    jobs = sorted((r for r in rows if r["history"]), key=job_order)
    rank = list(seen.colours)
    rest, drawn = [], {}
    for r in sorted(jobs, key=lambda r: rank.index(s) if (s := setting_of(r["overrides"], seen.keys)) in rank else 0):
        setting = setting_of(r["overrides"], seen.keys)
        if setting not in seen.colours:
            rest.append(r["history"])
            continue
        n = drawn[setting] = drawn.get(setting, -1) + 1
        curve = r["history"]
        ax.plot(range(1, len(curve) + 1), curve, color=seen.colours[setting], linestyle=LINES[n % len(LINES)],
                marker="o", markersize=4, linewidth=1.6, label=seen.names[setting] if n == 0 else None)  # fmt: skip
    if rest:
        band(ax, rest)
    longest = max((len(r["history"]) for r in jobs), default=1)
    ax.set_xlim(0.5, longest + 0.5)  # one epoch too: a tick at 1, not at 0.945 and 1.05
    ticks = ticker.FixedLocator(range(1, longest + 1)) if longest <= 12 else ticker.MaxNLocator(integer=True)
    ax.xaxis.set_major_locator(ticks)
    if seen.chance is not None:
        ax.axhline(seen.chance, **CHANCE)
    split = seen.label.removeprefix("final ").split(" after ")[0]
    named = f"the {len(seen.colours)} leading settings by name" if len(seen.colours) > 1 else "the leading setting"
    others = f", the other {plural(len(rest), 'job')}" + (" as a band" if len(rest) > FEW else " in grey")
    title = f"{split} per epoch: {named}" + (others if rest else "")
    ax.set(xlabel="epoch", ylabel=split, title=title)
    ax.grid(alpha=0.3)
    legend(ax, rows, seen)


def band(ax, curves: list[list]) -> None:
    """Curves drawn as one grey band, their lowest to their highest at each epoch, with their median."""
    import statistics

    if len(curves) <= FEW:  # a band of so few would hide them: each its own thin grey line
        for n, c in enumerate(curves):
            label = f"the other {plural(len(curves), 'job')}" if n == 0 else None
            ax.plot(range(1, len(c) + 1), c, color=REST, linewidth=1.0, marker=".", label=label)
        return
    at = [[c[e] for c in curves if len(c) > e and c[e] is not None] for e in range(max(map(len, curves)))]
    epochs = [e + 1 for e, ys in enumerate(at) if ys]
    lows, highs, mids = ([f(ys) for ys in at if ys] for f in (min, max, statistics.median))
    ax.fill_between(epochs, lows, highs, color=REST, alpha=0.3, linewidth=0, label=f"the other {len(curves)} jobs")
    ax.plot(epochs, mids, color=REST, linewidth=1.2, label="their median")


def legend(ax, rows: list[dict], seen: View) -> None:
    """One legend for the whole picture, beside the curves: the named settings, the band, and what each mark means
    where it is drawn."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    seeded = len({r["overrides"].get("seed") for r in rows}) > 1
    marks = [
        (True, Line2D([], [], color=REST, marker="o", linestyle=""), f"a job's {seen.label}"),
        (True, Line2D([], [], color="black", marker="_", markersize=16, mew=2.5), "a value's mean ± spread"),
        (any(r["status"] == "pruned" for r, _ in seen.points), Line2D([], [], color=REST, marker="o", mfc="none",
         linestyle=""), "pruned (hollow)"),
        (any(r["not_learning"] for r, _ in seen.points), Line2D([], [], color=REST, marker="x", linestyle=""),
         "not learning (at chance)"),
        (any(r["status"] in ("failed", "diverged") for r in rows), Line2D([], [], color=FAILED, marker="v",
         linestyle=""), "failed or diverged (no figure)"),
        (bool(seen.starred), Line2D([], [], marker="*", markersize=15, linestyle="", mfc=STAR if seen.star[1] else
         "none", mec="black" if seen.star[1] else HOLLOW_STAR), seen.star[0] + " (mean over seeds)" * seeded),
        (seen.chance is not None, Line2D([], [], **CHANCE), "chance"),
        (seen.found.base is not None, Line2D([], [], **BASE), "the base (each other value changes that knob alone)"),
        (seeds_drawn(ax), Line2D([], [], color="black", linestyle="--"), "a setting's other seeds: dashed, dash-dot"),
    ]  # fmt: skip
    for shown, handle, label in marks:
        if shown:
            handles.append(handle)
            labels.append(label)
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def seeds_drawn(ax) -> bool:
    """Whether a leading setting's curves came in more than one line style (its seeds)."""
    return any(line.get_marker() == "o" and line.get_linestyle() != "-" for line in ax.get_lines())


def label_boxes(ax) -> list:
    """The screen boxes of the visible, non-empty x tick labels (after the figure is drawn)."""
    renderer = ax.figure.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]


def overlaps(boxes: list) -> bool:
    """Whether any two neighbouring label boxes (left to right) touch or run together."""
    boxes = sorted(boxes, key=lambda b: b.x0)
    return any(a.x1 + 3 > b.x0 for a, b in zip(boxes, boxes[1:]))  # 3 pixels apart at least


def thin_tick_labels(ax) -> None:
    """Names that touch are turned on their side; numbers are thinned, every 2nd (3rd, ...) kept until none touch."""
    if not overlaps(label_boxes(ax)):
        return
    ticks, texts, limits = list(ax.get_xticks()), [t.get_text() for t in ax.get_xticklabels()], ax.get_xlim()
    if any(numeric(t.replace("−", "-")) is None for t in texts if t):
        ax.tick_params(axis="x", labelrotation=30)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")
        return
    for keep in (2, 3, 4, 6, 8, 12):
        ax.set_xticks(ticks, [text if i % keep == 0 else "" for i, text in enumerate(texts)])
        ax.set_xlim(limits)
        ax.figure.canvas.draw()
        if not overlaps(label_boxes(ax)):
            return
