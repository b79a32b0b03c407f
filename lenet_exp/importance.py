"""What mattered in a sweep: how much each swept key moved the figure that chose, by a plain analysis of variance.

Every job that trained gives its figure on the choosing split at one fidelity: the epochs every one of them reached (a
halving search's first rung), or each job's final figure where trainer.epochs is itself swept; failed and diverged
jobs, and jobs that did not get that far, are counted apart. For each swept key (seed aside): its values' means and
spreads over the other keys and seeds, and its main effect, the share of the figures' variance its values explain
(between-value sum of squares over the total). A number drawn from a range (more than MAX_LEVELS values, or a value a
setting) is grouped by rank, into quarters at most. For each pair of keys, the share their cells explain beyond their
two main effects: the strongest is named. With seeds swept, what is left within a setting is the seeds' own noise. A
sweep too small to tell says so in one line rather than measure.
"""

from __future__ import annotations

import itertools
import re
import statistics
from dataclasses import dataclass, field

from lenet_exp.metrics import figure_at

COUNTED = ("completed", "pruned", "unfinished", "interrupted")  # statuses whose figures count, once at the fidelity
MAX_LEVELS = 8  # a number with more distinct values than this (a range a sampler drew from) is grouped by rank
BINS = 4  # into this many groups
OVERLAP = 0.5  # two keys' shares this much one and the same (of the smaller) are said to be inseparable
ONE = "the one setting"  # the level of a sweep with no key but seed


@dataclass
class Level:
    """One value of a key (or one group of a ranged number): the figure's mean, spread and count over its jobs."""

    value: str  # as swept (`0.1`, `relu`), or a group's range (`0.001-0.01`)
    mean: float
    spread: float | None  # standard deviation; None for one job
    n: int
    low: float | None = None  # a number's value, or a group's lowest and highest: where the picture draws it
    high: float | None = None
    base: bool = False  # the base's value, in a one-knob-at-a-time design


@dataclass
class Effect:
    """One swept key: the share of the figures' variance its values explain, and each value's Level."""

    key: str
    share: float
    levels: list[Level]
    change: tuple[str, float] | None = None  # one knob at a time: the value furthest from the base, and by how much


@dataclass
class Importance:
    """A sweep's `what mattered`: the figures it rests on, the effects (largest first), the strongest interaction."""

    on: str  # the figure: val_acc or test_acc
    epochs: int | None  # the fidelity: the epochs every counted job reached; None: each job's final figure
    how: str = ""  # the fidelity in words
    points: list[tuple[dict, float]] = field(default_factory=list)  # (job's row, its figure at the fidelity)
    left_out: dict[str, int] = field(default_factory=dict)  # status -> jobs without a figure at the fidelity
    effects: list[Effect] = field(default_factory=list)
    interaction: tuple[str, str, float] | None = None  # (key, key, share beyond their own effects)
    noise: float | None = None  # with seeds swept: the share left within settings
    caveat: str = ""  # why the figures cannot tell, or what they cannot tell apart, in one line
    swept: list[str] = field(default_factory=list)  # the keys measured
    base: tuple | None = None  # a one-knob-at-a-time design's base setting (its values of `swept`)
    design: str | None = None  # sweep.json's: around, grid or drawn; None where no record says (a folder of runs)


def numeric(value) -> float | None:
    """A swept value as a number, where it is one (`0.003`, `256`); None for `relu`, `[6,16]`, `true`."""
    if value in ("true", "false", None) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def natural(text: str) -> list:
    """A sort key that reads the numbers in a text as numbers: `[6,16]` before `[16,32]`."""
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", text)]


def fidelity(rows: list[dict], keys: list[str], search: dict | None) -> tuple[str, int | None]:
    """The epochs every job is compared at, and how the summary says so: a halving search's first rung; each job's
    final figure where trainer.epochs is swept; else the fewest epochs a completed job trained."""
    if search:
        return "the first rung, which every job reached", search["rungs"][0]
    if "trainer.epochs" in keys and len({r["overrides"].get("trainer.epochs") for r in rows}) > 1:
        return "each job's final figure, as trainer.epochs is swept", None
    done = [r["epochs_completed"] or 0 for r in rows if r["status"] in ("completed", "pruned") and r["history"]]
    done = done or [r["epochs_completed"] or 0 for r in rows if r["status"] in COUNTED and r["history"]]
    return "the epochs every job reached", min(done) if done else 0


def figures(rows: list[dict], keys: list[str], search: dict | None) -> Importance:
    """The jobs' figures at one fidelity (see `fidelity`), and the jobs left out by status."""
    how, epochs = fidelity(rows, keys, search)
    found = Importance("val_acc" if any(r["on"] == "val_acc" for r in rows) else "test_acc", epochs, how)
    for r in rows:
        if epochs is None:
            y = r["acc"] if r["status"] == "completed" else None
        else:
            y = figure_at({"history": r.get("histories") or {}}, epochs, r["on"]) if epochs else None
        if r["status"] in COUNTED and y is not None:
            found.points.append((r, y))
        else:
            found.left_out[r["status"]] = found.left_out.get(r["status"], 0) + 1
    return found


def drawn(points: list[tuple[dict, float]], key: str, numbers: list[float], design: str | None) -> bool:
    """Whether a number was drawn from a range rather than listed (a grid's or a base's values never are): in a
    sampler's sweep, more than MAX_LEVELS values or at least four with no two settings sharing one (each value then
    stands for one setting, and tells nothing of the key alone); where no record says, more than MAX_LEVELS."""
    values = set(numbers)
    if design in ("grid", "around") or design is None and len(values) <= MAX_LEVELS:
        return False
    if len(values) > MAX_LEVELS:
        return True
    settings: dict[float, set] = {}
    for (r, _), x in zip(points, numbers):
        settings.setdefault(x, set()).add(tuple(sorted((k, v) for k, v in r["overrides"].items() if k != "seed")))
    return len(values) >= 4 and all(len(s) == 1 for s in settings.values())


def levels(
    points: list[tuple[dict, float]], key: str | None, design: str | None = None
) -> tuple[list[Level], list[str]]:
    """A key's levels in order (numbers by size, others as written; a ranged number in BINS groups by rank), and the
    level each point falls in; no key: one level, ONE."""
    values = [r["overrides"].get(key) if key else ONE for r, _ in points]
    numbers = [numeric(v) for v in values]
    if all(x is not None for x in numbers) and drawn(points, key, numbers, design):
        spans = rank_bins(sorted(set(numbers)))
        label = {x: text for text, (low, high) in spans.items() for x in numbers if low <= x <= high}
        of = [label[x] for x in numbers]
    else:
        of = [str(v) for v in values]
        spans = {str(v): (x, x) for v, x in zip(values, numbers)}
    numbers_first = all(x is not None for x in numbers)
    order = sorted(set(of), key=lambda v: spans[v][0] if numbers_first else natural(v))
    found = []
    for value in order:
        ys = [y for (_, y), level in zip(points, of) if level == value]
        spread = statistics.stdev(ys) if len(ys) > 1 else None
        found.append(Level(value, statistics.fmean(ys), spread, len(ys), *spans[value]))
    return found, of


def rank_bins(distinct: list[float]) -> dict[str, tuple[float, float]]:
    """Drawn values (sorted, each once) in up to BINS groups by rank, each value in one group with all its jobs (a
    setting's seeds stay together), named `low-high` with as many digits as keep the names and their two ends apart."""
    bins = min(BINS, len(distinct) // 2)
    groups = [distinct[i * len(distinct) // bins : (i + 1) * len(distinct) // bins] for i in range(bins)]
    for digits in range(3, 18):
        ends = [(f"{g[0]:.{digits}g}", f"{g[-1]:.{digits}g}") for g in groups]
        spans = {f"{low}-{high}": (g[0], g[-1]) for (low, high), g in zip(ends, groups)}
        if len(spans) == len(groups) and all(low != high for (low, high), g in zip(ends, groups) if g[0] != g[-1]):
            return spans
    return {f"{g[0]!r}-{g[-1]!r}": (g[0], g[-1]) for g in groups}


def between(points: list[tuple[dict, float]], of: list, mean: float) -> float:
    """The between-group sum of squares of the figures, grouped by `of` (a label per point)."""
    groups: dict = {}
    for (_, y), label in zip(points, of):
        groups.setdefault(label, []).append(y)
    return sum(len(ys) * (statistics.fmean(ys) - mean) ** 2 for ys in groups.values())


def measure(rows: list[dict], keys: list[str], on: str, search: dict | None = None, design: str | None = None
            ) -> Importance | None:  # fmt: skip
    """The sweep's Importance; None for fewer than two jobs (nothing to compare)."""
    if len(rows) < 2:
        return None
    found = figures(rows, keys, search)
    points, found.design = found.points, design
    swept = [k for k in keys if k != "seed" and len({r["overrides"].get(k) for r, _ in points}) > 1]
    ys = [y for _, y in points]
    total = sum((y - statistics.fmean(ys)) ** 2 for y in ys) if ys else 0.0
    if on == "mixed":
        found.caveat = "not measured: the jobs chose on different splits, whose figures do not compare"
    elif len(points) < 3 or not swept:
        found.caveat = "too small to tell: " + ("one value a key" if points and not swept else "under three figures")
    elif total < 1e-12 * len(ys):  # the same figure throughout, but for rounding
        found.caveat = "every job ended at the same figure: no key moved it"
    if found.caveat:
        return found
    found.swept = swept
    found.base = base_of(points, swept) if design == "around" else None
    labels = {}
    for key in swept:
        mine = key_points(found, key)
        shown, labels[key] = levels(mine, key, design)
        for level in shown:
            level.base = found.base is not None and level.value == str(found.base[swept.index(key)])
        share = between(mine, labels[key], statistics.fmean(y for _, y in mine)) / total
        found.effects.append(Effect(key, share, shown, change_from_base(shown)))
    found.effects.sort(key=lambda e: -abs(e.change[1]) if e.change else -e.share)  # one knob at a time: by the change
    pairs = pair_shares(points, labels, found.effects, total) if found.base is None else {}
    if found.base is None:
        found.interaction = strongest_interaction(pairs, labels, found.effects)
    settings = [tuple(r["overrides"].get(k) for k in swept) for r, _ in points]
    if len(set(settings)) < len(settings):  # several jobs a setting: seeds, or the same setting trained again
        found.noise = 1 - between(points, settings, statistics.fmean(ys)) / total
    else:
        found.caveat = "one seed a setting: each share holds the seeds' own noise too (seed=0,1,2 tells them apart)"
    if found.base is not None:
        found.caveat = (
            "one knob at a time around the base (marked): each knob is read against the base's own jobs, and how "
            "knobs interact is not measured" + (f"; {found.caveat}" if found.caveat else "")
        )
    else:
        said = overlap_lines(pairs, found.effects) + [found.caveat]
        found.caveat = "; ".join(line for line in said if line)
    return found


def change_from_base(shown: list[Level]) -> tuple[str, float] | None:
    """The value whose mean lies furthest from the base's, and how far (signed); None where no level is the base. What
    a one-knob-at-a-time design measures best: a share of the whole sweep's variance is swamped by its largest knob."""
    base = next((v for v in shown if v.base), None)
    others = [v for v in shown if not v.base]
    if base is None or not others:
        return None
    furthest = max(others, key=lambda v: abs(v.mean - base.mean))
    return furthest.value, furthest.mean - base.mean


def crossed(labels: dict[str, list[str]], a: str, b: str) -> bool:
    """Whether every value of `a` met every value of `b` in some job, as in a grid."""
    return len(set(zip(labels[a], labels[b]))) == len(set(labels[a])) * len(set(labels[b]))


def pair_shares(points: list, labels: dict, effects: list[Effect], total: float) -> dict[tuple[str, str], float]:
    """Each pair of keys' share of the variance, its cells (every pair of values) as the groups."""
    mean = statistics.fmean(y for _, y in points)
    return {(a, b): between(points, list(zip(labels[a], labels[b])), mean) / total
            for a, b in itertools.combinations([e.key for e in effects], 2)}  # fmt: skip


def overlap_lines(pairs: dict, effects: list[Effect]) -> list[str]:
    """What the shares cannot tell where the keys were not crossed as in a grid (a sampler's draws): the pairs whose
    shares are mostly one and the same (OVERLAP of the smaller one), and that the shares then add up past 100%."""
    shares = {e.key: e.share for e in effects}
    tied = [f"{a} and {b}" for (a, b), both in pairs.items() if min(shares[a], shares[b]) >= 0.02
            and shares[a] + shares[b] - both >= OVERLAP * min(shares[a], shares[b])]  # fmt: skip
    lines = [f"in these jobs, keys went together, so their shares are mostly one and cannot be told apart: "
             f"{'; '.join(tied)}"] if tied else []  # fmt: skip
    if sum(shares.values()) > 1.05:
        lines.append(f"the keys were not crossed as in a grid, so the shares overlap (they add up to "
                     f"{100 * sum(shares.values()):.0f}%): each is what its key alone explains")  # fmt: skip
    return lines


def strongest_interaction(pairs: dict, labels: dict, effects: list[Effect]) -> tuple | None:
    """The pair of keys crossed as in a grid whose cells explain the most beyond their two main effects, with that
    share (without every pair of values, what a pair adds is no interaction)."""
    shares = {e.key: e.share for e in effects}
    found = [(a, b, max(0.0, both - shares[a] - shares[b])) for (a, b), both in pairs.items() if crossed(labels, a, b)]
    return max(found, key=lambda f: f[2], default=None)


def base_of(points: list, swept: list[str]) -> tuple | None:
    """The base of a one-knob-at-a-time design (hydra/sweeper=around): the setting every other one differs from in
    one key only; None where the jobs are no such design (a grid, a search)."""
    settings = {tuple(r["overrides"].get(k) for k in swept) for r, _ in points}
    if len(swept) < 2 or len(settings) < 3:
        return None
    return next((s for s in settings if all(sum(a != b for a, b in zip(s, o)) <= 1 for o in settings)), None)


def key_points(found: Importance, key: str | None) -> list:
    """The points that tell of `key`: all of them, or in a one-knob-at-a-time design the base's jobs and those that
    changed `key` alone."""
    if found.base is None or key not in found.swept:
        return found.points
    at = found.swept.index(key)
    return [(r, y) for r, y in found.points if all(r["overrides"].get(k) == b for i, (k, b) in
            enumerate(zip(found.swept, found.base)) if i != at)]  # fmt: skip


def importance_lines(found: Importance | None, short) -> list[str]:
    """summary.md's section: the keys, largest share first, each value's mean and spread, the strongest interaction;
    `short` writes a value as the summary writes one."""
    if found is None:
        return []
    split = found.on.removesuffix("_acc")
    apart = ", ".join(f"{n} {status}" for status, n in sorted(found.left_out.items()))
    at = f" after {found.epochs} epoch{'s' * (found.epochs != 1)}, " if found.epochs else ", "
    head = f"## What mattered ({split} acc{at}{found.how}; {len(found.points)} jobs" + (
        f"; left out: {apart}" if apart else ""
    )
    lines = [head + ")", ""]
    if not found.effects:
        return [*lines, found.caveat[0].upper() + found.caveat[1:] + ".", ""]
    knobs = found.base is not None  # one knob at a time: the change from the base first
    lines += ["| key |" + " largest change from the base |" * knobs + " share of the variance | each value: mean ± "
              "spread (jobs) |", "|---|---|---|" + "---|" * knobs]  # fmt: skip
    for e in found.effects:
        cells = "; ".join(
            f"{short(v.value)}{' (base)' * v.base}: {v.mean:.4f}"
            + (f" ± {v.spread:.4f}" if v.spread is not None else "")
            + f" ({v.n})"
            for v in e.levels
        )
        change = (f" {short(e.change[0])}: {e.change[1]:+.4f} |" if e.change else " |") if knobs else ""
        lines.append(f"| {e.key} |{change} {100 * e.share:.0f}% | {cells.replace('|', '/')} |")
    if found.noise is not None:
        lines.append(f"| seeds (within a setting) |{' |' * knobs} {100 * found.noise:.0f}% | |")
    lines.append("")
    if found.interaction and found.interaction[2] >= 0.005:
        a, b, share = found.interaction
        lines += [f"Strongest interaction: {a} × {b}, {100 * share:.0f}% of the variance beyond their own effects.", ""]
    elif found.interaction:
        lines += ["No two keys interact beyond their own effects (under 1% of the variance).", ""]
    if found.caveat:
        lines += [found.caveat[0].upper() + found.caveat[1:] + ".", ""]
    return lines


IMPORTANCE_HEADER = ["key", "value", "jobs", "mean", "spread", "share"]


def importance_rows(found: Importance | None) -> list[list]:
    """summary_importance.csv's rows: a row a key and value (its key's share repeated), an interaction row, a noise
    row."""
    if found is None:
        return []
    rows = [[e.key, v.value, v.n, v.mean, v.spread, e.share] for e in found.effects for v in e.levels]
    if found.interaction:
        a, b, share = found.interaction
        rows.append([f"{a} x {b}", "", "", "", "", share])
    if found.noise is not None:
        rows.append(["seeds (within a setting)", "", "", "", "", found.noise])
    return rows
