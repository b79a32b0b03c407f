"""A search over ranges that prunes: settings drawn by Optuna's sampler, stopped early by successive halving.

The ranges are spelled as Hydra's Optuna sweeper spells them (`interval(0.001, 0.1)`, `tag(log, interval(...))`,
`choice(relu, tanh)`, a list `a,b`, `range(...)`); `seed`'s list gives each setting its seeds. `n_trials` settings are
drawn in waves of `batch`: each wave trains to the first rung, and its figures there (the mean over seeds) are told to
the sampler before the next wave is drawn (TPE draws where the figures were good; its first wave is random). Then
successive halving over every drawn setting from the first rung on (halving.search): the best 1/eta go on from their
own checkpoints, the rest are pruned. The drawn settings are kept in halving.json, so a rerun continues the same
search, drawing only what it had not drawn yet.
"""

from __future__ import annotations

import logging
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from lenet_exp.halving import Point, Rung, RungIncomplete, Search, bring_to, group_settings, rung_epochs, setting_score
from lenet_exp.overrides import grid, key_of, param_overrides, parse
from lenet_exp.sweep_record import HalvingRecord, dirname_for, job_number, read_halving
from lenet_exp.words import plural

log = logging.getLogger(__name__)
SAMPLERS = ("tpe", "random")  # Optuna's TPESampler (its first wave at random), RandomSampler
DIGITS = 4  # significant digits a drawn number keeps: readable folders and commands, well inside any range's grain


@dataclass
class Range:
    """One key the search draws: a number in [low, high] (on a log scale, or integers), or one of `choices`."""

    key: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    integer: bool = False
    choices: list[str] | None = None

    def distribution(self):
        """The Optuna distribution it draws from."""
        from optuna import distributions as d

        if self.choices is not None:
            return d.CategoricalDistribution(self.choices)
        if self.integer:
            return d.IntLogUniformDistribution(self.low, self.high) if self.log else d.IntUniformDistribution(
                self.low, self.high)  # fmt: skip
        return d.LogUniformDistribution(self.low, self.high) if self.log else d.UniformDistribution(self.low, self.high)

    def text(self, value) -> str:
        """A drawn value as an override writes it: a number to DIGITS significant digits (where that stays inside the
        range), a choice as given."""
        if self.choices is not None or self.integer:
            return str(value)
        short = float(f"{value:.{DIGITS}g}")
        return f"{short:.{DIGITS}g}" if self.low <= short <= self.high else repr(value)

    def value(self, text: str):
        """An override's text as the value the distribution holds (what a recorded setting tells the sampler)."""
        if self.choices is not None:
            return text
        return int(text) if self.integer else float(text)


def range_of(override: str) -> Range | None:
    """The Range an override gives (`key=interval(...)`, `key=tag(log, interval(...))`, `key=a,b`, `choice(...)`,
    `range(...)`), None for a single value; ValueError, naming the override, for a range no search can draw from."""
    key, parsed = key_of(override), parse(override)
    if not parsed.is_sweep_override():
        return None
    if parsed.is_discrete_sweep():
        choices = list(parsed.sweep_string_iterator())
        if len(set(choices)) < len(choices) or not choices:
            raise ValueError(f"{override}: give each choice once, and at least one")
        return Range(key, choices=choices)
    interval = parsed.value()
    low, high, log = interval.start, interval.end, "log" in (interval.tags or ())
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or not low < high:
        raise ValueError(f"{override}: an interval runs from a lower number to a higher one")
    if log and low <= 0:
        raise ValueError(f"{override}: a log scale needs numbers above 0")
    return Range(key, low, high, log, isinstance(low, int) and isinstance(high, int))


def space(params: dict, arguments: list[str]) -> tuple[list[Range], list[str]]:
    """The keys the search draws, and the overrides every setting takes as they are (one value each, and `seed`'s
    list: each setting's seeds); a key given on the command line replaces the preset's. ValueError naming the
    override that is no range, no list and no value."""
    given = {key_of(o): o for o in param_overrides(params) + list(arguments)}  # the last one wins
    ranges, fixed = [], []
    for key, override in given.items():
        if key == "trainer.epochs":
            continue  # the rungs set it
        if key == "seed":
            try:
                grid([override])
            except ValueError:
                raise ValueError(f"{override}: seeds are listed, as seed=0,1,2; no range draws them") from None
        found = None if key == "seed" else range_of(override)
        if found is None:
            fixed.append(override)
        else:
            ranges.append(found)
    if not ranges:
        raise ValueError("no key to draw: give ranges, such as optimizer.lr='tag(log, interval(0.001, 0.1))'")
    return ranges, fixed


def draw(ranges: list[Range], told: list[tuple[dict, float | None]], count: int, sampler: str, seed: int) -> list:
    """`count` settings (key -> override text) drawn given the settings `told` so far and their figures (None: no
    figure, a failed or diverged setting); the same draw for the same history."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # Optuna's database layer announces its plugins on import
    import optuna
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # the trials told and the liar are `experimental` in Optuna 2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        picked = optuna.samplers.RandomSampler(seed=seed) if sampler == "random" else None
        # a wave is drawn before any of it is told: the liar counts its settings drawn so far as poor ones, so that
        # the wave spreads out rather than piling up where the sampler likes best; the keys are modelled jointly
        # (multivariate), which with a few told settings draws near the best of them where one key at a time did not
        picked = picked or optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=max(count, 1), constant_liar=True, multivariate=True, group=True
        )
        study = optuna.create_study(direction="maximize", sampler=picked)
        spaces = {r.key: r.distribution() for r in ranges}
        for setting, figure in told:
            params = {r.key: r.value(setting[r.key]) for r in ranges}
            state = TrialState.COMPLETE if figure is not None else TrialState.FAIL
            study.add_trial(create_trial(params=params, distributions=spaces, value=figure, state=state))
        trials = [study.ask(spaces) for _ in range(count)]
    return [{r.key: r.text(trial.params[r.key]) for r in ranges} for trial in trials]


class RangedSearch(Search):
    """A ranged search as its sweeper runs it: the settings drawn wave by wave and trained to the first rung, then the
    rungs of successive halving over all of them (Search.run, with its record, signals and one-line stops)."""

    def __init__(self, config: DictConfig, params: dict, arguments: list[str], eta: int, min_epochs: int,
                 max_epochs: int | None, n_trials: int, batch: int, sampler: str, seed: int) -> None:  # fmt: skip
        self.config, self.eta, self.sweep_dir = config, eta, Path(str(config.hydra.sweep.dir))
        self.rungs = rung_epochs(min_epochs, eta, max_epochs or int(config.trainer.epochs))
        try:
            self.ranges, fixed = space(params, arguments)
        except ValueError as e:
            print(f"Error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        seeds = [o for o in fixed if key_of(o) == "seed"]
        self.seeds = [point for point in grid(seeds)] if seeds else [[]]
        self.fixed = [o for o in fixed if key_of(o) != "seed"]
        self.swept = [r.key for r in self.ranges] + (["seed"] if len(self.seeds) > 1 else [])
        self.n_trials, self.batch, self.sampler, self.sampler_seed = n_trials, batch, sampler, seed
        self.points, self.settings = [], []
        self.check_trials()
        self.outside = {}

    def check_trials(self) -> None:
        """A rerun of this search (its space, in halving.json) with another n_trials would re-decide its rungs over
        other settings than it trained: refused in one line, naming the count that continues it."""
        earlier = read_halving(self.sweep_dir) or {}
        if earlier.get("space") == self.space_text() and earlier.get("settings") not in (None, self.n_trials):
            print(f"Error: hydra.sweeper.n_trials={self.n_trials}: this search was started with "
                  f"hydra.sweeper.n_trials={earlier['settings']} (halving.json); continue it with that, or use "
                  "another hydra.sweep.dir", file=sys.stderr)  # fmt: skip
            raise SystemExit(2)

    @property
    def jobs(self) -> int:
        return self.n_trials * len(self.seeds)

    @property
    def setting_count(self) -> int:
        return self.n_trials

    def headline(self) -> str:
        waves = math.ceil(self.n_trials / self.batch)
        return (
            f"Successive halving over ranges: {plural(self.n_trials, 'setting')} ({plural(self.jobs, 'job')}) drawn by "
            f"{self.sampler} in {plural(waves, 'wave')} of {self.batch}"
        )

    def space_text(self) -> dict:
        """The search space as its record keeps it: a rerun over another space draws afresh."""
        return {"ranges": [vars(r) for r in self.ranges], "fixed": self.fixed, "seeds": self.seeds,
                "sampler": self.sampler, "sampler_seed": self.sampler_seed}  # fmt: skip

    def prepare(self, record: HalvingRecord, train) -> list[list[Point]]:
        """Draw the settings wave by wave (or read those an earlier run drew), each wave trained to the first rung and
        told to the sampler before the next is drawn; every setting drawn, for the rungs."""
        drawn = record.drawn(self.space_text())
        outside = next((n for n, setting in enumerate(drawn) if not self.within(setting)), None)
        if outside is not None:
            raise RungIncomplete(f"{self.sweep_dir / 'halving.json'}: drawn setting {outside + 1} is not one of this "
                                 "search's space; move the file away to draw afresh", 2)  # fmt: skip
        first = Rung(0, len(self.rungs), self.rungs[0], 0)
        for wave, start in enumerate(range(0, self.n_trials, self.batch)):
            count = min(self.batch, self.n_trials - start)
            earlier = len(drawn) >= start + count
            if not earlier:
                told = [(setting, setting_score([job.metrics() for job in jobs], first.epochs))
                        for setting, jobs in zip(drawn, self.settings)]  # fmt: skip
                drawn += draw(self.ranges, told, start + count - len(drawn), self.sampler, self.sampler_seed + wave)
                record.save()
            self.add(drawn[start : start + count])
            how = "as an earlier run of this search drew them" if earlier else f"told {plural(start, 'setting')}"
            log.info("Wave %d: %s drawn (%s)", wave + 1, plural(count, "setting"), how)
            bring_to(self.settings[start : start + count], first, train)
        return self.settings

    def within(self, setting: dict) -> bool:
        """Whether a recorded setting is one this space draws: its keys, each value inside its range or a choice."""
        if not isinstance(setting, dict) or set(setting) != {r.key for r in self.ranges}:
            return False
        try:
            found = {r.key: r.value(str(setting[r.key])) for r in self.ranges}
        except ValueError:
            return False
        return all(found[r.key] in r.choices if r.choices is not None else r.low <= found[r.key] <= r.high
                   for r in self.ranges)  # fmt: skip

    def add(self, settings: list[dict]) -> None:
        """Each drawn setting's jobs (one per seed), numbered setting by setting, in folders named as a sweep's; a
        folder of that number under another name means the record and the folders disagree: refused, in one line."""
        taken = {job_number(p.name): p.name for p in self.sweep_dir.iterdir() if p.is_dir()}
        for setting in settings:
            jobs = []
            for seed in self.seeds:
                overrides = [*self.fixed, *(f"{k}={v}" for k, v in setting.items()), *seed]
                num = len(self.points)
                jobs.append(Point(num, overrides, self.sweep_dir / f"{num}_{dirname_for(overrides, self.swept)}"))
                if taken.get(num, jobs[-1].folder.name) != jobs[-1].folder.name:
                    raise RungIncomplete(f"{self.sweep_dir / 'halving.json'}: its drawn settings make job {num} "
                                         f"{jobs[-1].folder.name}, but that job's folder is {taken[num]}; move the "
                                         "file away to draw afresh, or use another hydra.sweep.dir", 2)  # fmt: skip
                self.points.append(jobs[-1])
            self.settings += group_settings(jobs)
