"""summary.csv, summary_by_setting.csv and summary.md: the sweep's jobs and settings as tables, best first.

summary.md does not overclaim: it names a tie as a tie, says so when no job learned, reports a halving
search's work against the full grid, and with seeds swept ranks settings by their mean before listing jobs.
"""

from __future__ import annotations

import csv
import io
import shlex
from collections import Counter

import yaml

from lenet_exp.importance import importance_lines
from lenet_exp.metrics import CHANCE_MARGIN, FIGURES, VAL_FIGURES
from lenet_exp.words import plural

SETTING_TAIL = ["statuses", "epochs", "note"]
OPTIMISTIC = (
    "Chosen on the test set (no validation split), so the chosen figure is optimistic: hold out one with "
    "data.val_size=5000 to choose on it and report the test accuracy apart."
)
# With one seed per setting, a lead below this may be the seeds' doing: a short run's test accuracy moves by a point or
# more between seeds (README: 0.0035-0.0063 spread over seeds at 10 full epochs, several points on small slices).
SEED_NOISE = 0.02
AS_TYPED = {"True": "true", "False": "false"}  # True/False as a sweep writes them, as a user types them


def parsed(text):
    """An override's text as the value it stands for (`0.1` a float, `true` a bool); text that is no YAML as it is."""
    try:
        return yaml.safe_load(text) if isinstance(text, str) else text
    except yaml.YAMLError:
        return text


def short(text) -> str:
    """An override as a summary shows it: a float to four digits, anything else as written."""
    v = parsed(text)
    return f"{v:.4g}" if isinstance(v, float) else str(text)


def counts_text(statuses) -> str:
    """`2 completed, 1 failed`: how many of each status, in alphabetical order."""
    return ", ".join(f"{n} {s}" for s, n in sorted(Counter(map(str, statuses)).items()))


def job_order(row: dict) -> tuple:
    return (0, row["job"], "") if isinstance(row["job"], int) else (1, 0, str(row["job"]))


def csv_text(header: list, rows) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *rows])
    return out.getvalue()


def split_name(summary) -> str:
    """`val` or `test`: the split whose accuracy chose (validation, where the jobs held one out)."""
    return summary.on.removesuffix("_acc")


def metric_columns(summary) -> list[str]:
    return ["status", *(VAL_FIGURES if summary.on != "test_acc" else []), *FIGURES]


def setting_columns(summary) -> list[str]:
    chosen = ["test_acc_mean", "test_acc_std", "best_test_acc_mean"]  # the chosen figure, then the test one beside
    if summary.on != "test_acc":
        chosen = ["val_acc_mean", "val_acc_std", "best_val_acc_mean", "test_acc_mean", "test_acc_std"]
    return ["n", *chosen, *SETTING_TAIL]


def to_csv(summary) -> str:
    tail = [*metric_columns(summary), *(["rung"] if summary.search else []), "note", "run_dir", "error"]
    rows = ([r["job"], *(r["overrides"].get(k, "") for k in summary.keys), *(r[c] for c in tail)] for r in summary.rows)
    return csv_text(["job", *summary.keys, *tail], rows)


def _setting_cells(g: dict, keys: list[str], columns: list[str]) -> list:
    return [*(g["values"].get(k, "") for k in keys), *(g[c] for c in columns)]


def settings_csv(summary) -> str:
    """One row per setting (its swept keys without seed), ranked by mean accuracy over its seeds on the choosing
    split."""
    keys, columns = [k for k in summary.keys if k != "seed"], setting_columns(summary)
    rows = ([*_setting_cells(g, keys, columns), " ".join(map(str, g["jobs"]))] for g in summary.settings)
    return csv_text([*keys, *columns, "jobs"], rows)


def _fmt(column: str, value) -> str:
    """A table cell: speeds as whole numbers, figures to four places, long swept floats to four digits."""
    if value is None or value == "":
        return "-"
    if column == "examples_per_sec":
        return f"{value:,.0f}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return short(value).replace("|", "\\|")  # a | would split the cell


def _table(header: list[str], rows) -> list[str]:
    """A markdown table, each cell formatted for its column."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_fmt(col, c) for col, c in zip(header, cells)) + " |" for cells in rows]


def _rerun_args(row: dict, *more: str) -> str:
    """The overrides that train a job (or a setting) again to the same figures: on the CPU with the thread count it had
    (a parallel sweep's workers have fewer threads than a run alone, and the count changes the order of float sums)."""
    args = [f"{k}={AS_TYPED.get(v, v)}" for k, v in row["overrides"].items()] + list(more)
    if row.get("cpu_threads") and "device.threads" not in row["overrides"]:
        args.append(f"device.threads={row['cpu_threads']}")
    return " ".join(map(shlex.quote, args))  # `'model.conv_channels=[6,16]'`: no shell reads it as a pattern


def rerun_command(summary, row: dict) -> str:
    """The command that trains a job again: its overrides; of a single run compared with others, its own command's
    (the values it ran with differ from the defaults in more than the columns show), or, for a run trained from
    Python, the API call on its saved config."""
    if not summary.runs:
        return f"python -m lenet_exp {_rerun_args(row)}"
    if row.get("own"):
        return f"python -m lenet_exp {_rerun_args({**row, 'overrides': row['own']})}"
    config = shlex.quote(str(summary.sweep_dir / row["run_dir"] / ".hydra" / "config.yaml"))
    return f"python -c 'import sys, lenet_exp; lenet_exp.train(sys.argv[1], sys.argv[2])' {config} outputs/again"


def standing(items: list[dict], key: str, spread: float) -> tuple[str, list[dict]]:
    """How the best of `items` (learned jobs or settings, best first, by `key`) stands: ("tie", the tied),
    ("close", [best, next]) when its lead is within `spread`, ("clear", [best]), or ("none", []) when none learned."""
    if not items:
        return "none", []
    tied = [x for x in items if x[key] == items[0][key]]
    if len(tied) > 1:
        return "tie", tied
    if len(items) > 1 and items[0][key] - items[1][key] <= spread:
        return "close", items[:2]
    return "clear", items[:1]


def verdict(summary) -> tuple[str, list[dict]]:
    """The standing of the best setting (seeds swept: by mean, within the spread over seeds) or job (one seed each:
    within SEED_NOISE; a halving search's jobs of its last rung only), for summary.md and summary.png alike; none
    where the jobs chose on different splits."""
    if summary.on == "mixed":
        return "mixed", []
    if summary.settings is not None:
        learned = [g for g in summary.settings if g["complete"] and not g["not_learning"]]
        spread = max((g["acc_std"] for g in learned[:2] if g["acc_std"] is not None), default=SEED_NOISE)
        return standing(learned, "acc_mean", spread)
    last = len(summary.search["rungs"]) if summary.search else None
    learned = [r for r in summary.rows if r["status"] == "completed" and not r["not_learning"]]
    return standing([r for r in learned if last is None or r.get("rung") == last], "acc", SEED_NOISE)


def _rerun_head(fused: bool) -> str:
    if fused:  # fused and alone round differently, which can reorder close settings (README: fused launcher)
        return "It trained fused, so its figures alone may differ: confirm the winner alone with:"
    return "Rerun it with:"


def nothing_learned(rows: list[dict]) -> list[str]:
    """When every completed job sits at chance: say so, and that there is no best to rerun."""
    completed = [r for r in rows if r["status"] == "completed"]
    if not completed or any(not r["not_learning"] for r in completed):
        return []
    if collapsed := sorted((r for r in completed if r.get("learning") == "collapsed"), key=job_order):
        jobs = ", ".join(str(r["job"]) for r in collapsed)
        return [
            f"No job ends above chance: job{'s' * (len(collapsed) > 1)} {jobs} learned, then collapsed back to it "
            "(try a lower learning rate); the rest never rose above it. There is no best setting to rerun.",
            "",
        ]
    who = "the one completed job sits" if len(completed) == 1 else f"all {len(completed)} completed jobs sit"
    return [
        f"No job learned: {who} at chance (best test acc within {CHANCE_MARGIN} of guessing the most common class), "
        "so there is no best setting to rerun. Train longer or on more examples, or try other learning rates "
        "(sigmoid needs large ones, relu smaller) or activations.",
        "",
    ]


def best_lines(summary) -> list[str]:
    """The best job and how to rerun it; or, honestly, that the best is tied or that seeds could reverse its lead."""
    kind, leaders = verdict(summary)
    if not leaders:  # none learned, or the jobs chose on different splits
        return []
    best, where, split = leaders[0], " of the last rung" if summary.search else "", split_name(summary)
    test = f" (test acc {best['test_acc']:.4f})" if split == "val" and best["test_acc"] is not None else ""
    caveat = [] if split == "val" else [OPTIMISTIC, ""]
    if kind == "tie":
        jobs = ", ".join(str(r["job"]) for r in sorted(leaders, key=job_order))
        head = f"Best{where}: a tie at {split} acc {best['acc']:.4f} between jobs {jobs}; no single best."
        return [
            f"{head} Rerun job {best['job']} with:",
            "",
            f"    {rerun_command(summary, best)}",
            "",
            *caveat,
        ]
    head = f"Best{where}: job {best['job']}, {split} acc {best['acc']:.4f}{test}"
    lines = [f"{head}. {_rerun_head(summary.fused)}", "", f"    {rerun_command(summary, best)}", "", *caveat]
    if kind == "close":
        runner = leaders[1]
        given = " ".join(shlex.quote(o) for o in summary.command or [] if not o.startswith("seed="))
        check = f"python -m lenet_exp --multirun {given} seed=0,1,2" if given else "the sweep's command with seed=0,1,2"
        lines += [
            f"One seed each: its lead over job {runner['job']} ({best['acc'] - runner['acc']:.4f}) is under "
            f"{SEED_NOISE}, small enough that other seeds could reverse it. Check over seeds:",
            "",
            f"    {check}",
            "",
        ]
    return lines


def rungs_text(rungs: list[int]) -> str:
    """`rungs at 1, 3, 9 epochs`, or `one rung of 1 epoch` where the grid has room for no halving."""
    if len(rungs) == 1:
        return f"one rung of {plural(rungs[0], 'epoch')}"
    return f"rungs at {', '.join(map(str, rungs))} epochs"


def search_lines(summary) -> list[str]:
    """A halving search in figures, as its own record and log count them: its settings and jobs, its rungs, the work
    it did against the full grid (a job continued by hand past where the search pruned it: the search's epochs only),
    its wall time."""
    s = summary.search
    rungs = s["rungs"]
    trained = sum(
        min(r["epochs_completed"] or 0, rungs[r["rung"] - 1]) if r.get("beyond_search") else r["epochs_completed"] or 0
        for r in summary.rows
    )
    full = s["jobs"] * rungs[-1]
    minutes, seconds = divmod(round(s.get("wall_seconds") or 0), 60)
    state = "" if s.get("finished") else " (not finished)"
    grid = plural(s["jobs"], "job")
    grid = grid if s["settings"] == s["jobs"] else f"{plural(s['settings'], 'setting')} ({grid})"
    ranged = isinstance(s.get("space"), dict)  # a ranged search: its settings drawn, not a grid's
    how = f" over ranges, {s['space'].get('sampler')} drawing" if ranged else ""
    every = "to train every drawn setting to the last rung" if ranged else "for the full grid"
    return [
        f"Successive halving{how}{state}: {grid}, {rungs_text(rungs)}, keeping the best 1/{s['eta']} after each. "
        f"Work: {plural(trained, 'epoch')} trained of {full} {every} ({100 * trained / full:.0f}%); "
        f"wall time {minutes} min {seconds} s.",
        "",
    ]


def _setting_name(setting: dict, keys: list[str]) -> str:
    return ", ".join(f"{k}={setting['values'][k]}" for k in keys)


def setting_lines(summary, fused: bool = False) -> list[str]:
    """With seeds swept: the best setting by mean (and its lead over the next), then every setting's row."""
    keys = [k for k in summary.keys if k != "seed"]
    lines = ["## By setting (mean over seeds)", ""]
    kind, leaders = verdict(summary)
    if leaders:
        best = leaders[0]
        spread = f" ± {best['acc_std']:.4f}" if best["acc_std"] is not None else ""
        learned = [g for g in summary.settings if g["complete"] and not g["not_learning"]]
        lead = ""
        if len(learned) > 1:
            runner = learned[1]
            lead = f", {best['acc_mean'] - runner['acc_mean']:.4f} above the next setting"
            if kind in ("close", "tie"):  # within the seeds' own spread: more seeds, not this ranking, can tell
                lead += f" ({_setting_name(runner, keys)}), less than the spread over seeds: neither is clearly better"
            if best["epochs"] != runner["epochs"]:
                lead += f" (after {best['epochs']} epochs against {runner['epochs']}: not like with like)"
        name = f"Best setting: {_setting_name(best, keys)}" if keys else "The one setting (only seed swept)"
        seeds, split = ",".join(map(str, best["seeds"])), split_name(summary)
        test = ""
        if split == "val" and best["test_acc_mean"] is not None:
            test = f"; its mean test acc {best['test_acc_mean']:.4f}"
            test += f" ± {best['test_acc_std']:.4f}" if best["test_acc_std"] is not None else ""
        lines += [
            f"{name}: mean {split} acc {best['acc_mean']:.4f}{spread} over {plural(best['n'], 'seed')}{lead}{test}. "
            f"{_rerun_head(fused)}",
            "",
            f"    python -m lenet_exp --multirun {_rerun_args(best, f'seed={seeds}')}",
            "",
            *([] if split == "val" else [OPTIMISTIC, ""]),
        ]
    columns = setting_columns(summary)
    lines += _table([*keys, *columns], (_setting_cells(g, keys, columns) for g in summary.settings))
    return [*lines, ""]


def continue_lines(summary) -> list[str]:
    """Where jobs are not finished (interrupted, not started): which were never started, and the command that
    continues the sweep (its own command and folder: finished jobs are kept, the others go on)."""
    if summary.resumes:
        return ["Not finished; continue each with:", "", *(f"    {how}" for _, how in summary.resumes), ""]
    if summary.running and not summary.runs:
        jobs = ", ".join(map(str, summary.running))
        return [f"Training now: job{'s' * (len(summary.running) > 1)} {jobs}; the summary is redone as each ends.", ""]
    if not summary.continue_with:
        return []
    never = sorted((r for r in summary.rows if r["status"] == "not started"), key=job_order)
    jobs = ", ".join(f"job {r['job']}" for r in never)
    named = f"Not started: {jobs}. " if never else ""
    if summary.missing > 0:
        named += f"Not started: {summary.missing} of the {len(summary.rows) + summary.missing} jobs it asks for. "
    return [f"{named}The sweep is not finished; continue it with:", "", f"    {summary.continue_with}", ""]


def mixed_lines(summary) -> list[str]:
    """Where the jobs chose on different splits (data.val_size 0 for some): say so, and name no best."""
    if summary.on != "mixed":
        return []
    on = {split: sorted((r for r in summary.rows if r["on"] == f"{split}_acc" and r["history"]), key=job_order)
          for split in ("val", "test")}  # fmt: skip
    named = "; ".join(f"on {s} acc: jobs {', '.join(str(r['job']) for r in rows)}" for s, rows in on.items() if rows)
    return [
        f"These jobs chose on different splits ({named}; data.val_size 0 holds out none), so they are not ranked "
        "against each other and no best is named. Sweep jobs that hold out a split apart from jobs that do not.",
        "",
    ]


def to_markdown(summary) -> str:
    rows, keys = summary.rows, summary.keys
    extra = ["rung"] if summary.search else []
    counts = counts_text(r["status"] for r in rows)
    title = f"Runs compared: {summary.sweep_dir}" if summary.runs else f"Sweep summary: {summary.sweep_dir}"
    lines = [f"# {title}", "", f"{plural(len(rows), 'run' if summary.runs else 'job')}: {counts}", ""]
    lines += continue_lines(summary)
    if summary.search:
        lines += search_lines(summary)
    lines += nothing_learned(rows) + mixed_lines(summary)
    if summary.settings is not None:  # the setting's mean is the verdict: a best seed is no best job
        lines += setting_lines(summary, summary.fused)
    else:
        lines += best_lines(summary)
    mattered = importance_lines(summary.importance, short)
    lines += mattered
    if summary.settings is not None or mattered:  # a section above: the jobs' table gets its own heading
        lines += ["## Jobs", ""]
    rungs = len(summary.search["rungs"]) if summary.search else 0
    table = []
    for r in rows:
        status = f"{r['status']}, {r['note']}" if r["note"] else r["status"]
        figures = [
            status,
            *(r[c] for c in metric_columns(summary)[1:]),
            *([f"{r['rung']} of {rungs}"] if extra else []),
        ]
        table.append([r["job"], *(r["overrides"].get(k, "") for k in keys), *figures])
    lines += _table(["job", *keys, *metric_columns(summary), *extra], table)
    errors = [f"- job {r['job']}: {r['error']}" for r in rows if r["error"]]
    return "\n".join(lines + (["", "Errors:", *errors] if errors else [])) + "\n"
