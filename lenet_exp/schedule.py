"""Learning-rate schedules: a factor of each run's base learning rate, a pure function of the step.

`cosine` anneals to zero over the run, after an optional linear warm-up; `onecycle` rises from base/div_factor to
the base rate over the first pct_start of the steps, then anneals to base/(div_factor * final_div_factor), as torch's
OneCycleLR does (without cycling momentum). Because the factor depends on the step alone, a resumed run continues
the same curve, a halving job continued to a later rung stays on one schedule, and a fused group shares one factor
while each model keeps its own base rate.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from functools import partial


def _cosine(t: float) -> float:
    """1 at t=0 down to 0 at t=1, along half a cosine."""
    return 0.5 * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


def lr_factor(
    name: str,
    step: int,
    total: int,
    warmup: float = 0.0,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> float:
    """The factor for 0-based `step` of a schedule `total` steps long (past the end: its last value)."""
    if name == "none":
        return 1.0
    if name == "cosine":
        up = round(warmup * total)
        if step < up:
            return (step + 1) / up
        return _cosine((step - up) / max(1, total - up))
    # onecycle (the schema allows no other name): torch's OneCycleLR, cosine phases ending at steps
    # pct_start*total-1 and total-1
    low, peak_at = 1 / div_factor, pct_start * total - 1
    if step <= peak_at:
        return 1 - (1 - low) * (_cosine(step / peak_at) if peak_at > 0 else 1)
    return low / final_div_factor + (1 - low / final_div_factor) * _cosine((step - peak_at) / (total - 1 - peak_at))


def factor_of(scheduler, steps_per_epoch: int, epochs: int) -> partial | None:
    """The factor as a function of the 0-based step for the run's scheduler settings (schema.NoSchedule and its
    kinds), or None for a constant rate."""
    if scheduler.name == "none":
        return None
    keys = {k: v for k, v in asdict(scheduler).items() if k not in ("name", "epochs")}
    return partial(lr_factor, scheduler.name, total=steps_per_epoch * (scheduler.epochs or epochs), **keys)


def scheduler_for(optimizer, s, examples: int):
    """The run's LambdaLR over `examples` training examples an epoch (stepped per batch), or None on a constant
    rate: what training and the bench build alike."""
    from torch.optim.lr_scheduler import LambdaLR

    factor = factor_of(s.scheduler, math.ceil(examples / s.data.batch_size), s.trainer.epochs)
    return LambdaLR(optimizer, factor) if factor else None
