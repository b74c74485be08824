"""Training budgets in time (``--time-budget SECONDS``): measure, then size the epochs.

The trainer times its first batches (after a short warm-up that absorbs oneDNN's
first-call costs), estimates the final validation by validating a few images, and sizes the
run so that the whole of it, validation included, ends within the budget. The learning
rate schedule is then sized to those epochs, so a short run is a complete one (warm-up,
cosine to the end), not a long one cut off. The measured batches happen inside the
warm-up, whose length does not depend on the total, so none of them is wasted.

After every epoch the plan is checked against the clock (the mean time of the epochs
after the first): when the machine got busier and the run falls behind, the remaining
epochs shrink; when the first batches were slow (one-time costs) and the run is ahead,
the epochs grow, in the first half of the run only. Either way the schedule is re-sized
to end at the new last epoch.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Optional

WARMUP_BATCHES = 2  # not timed: first calls create oneDNN primitives
MEASURE_BATCHES = 6
MARGIN = 0.04  # of the budget, kept free for what the estimate misses (saving, noise)
VALIDATION_PROBE_IMAGES = 8  # validated when the speed is measured, to estimate the final validation


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def epochs_that_fit(budget_s: float, elapsed_s: float, batch_s: float, batches_per_epoch: int,
                    batches_done: int, validation_s: float, max_epochs: int, margin: float = MARGIN) -> int:
    """How many epochs (>= 1, <= ``max_epochs``) end within ``budget_s``, counting the
    ``elapsed_s`` spent so far, the rest of the current (first) epoch, whose first
    ``batches_done`` batches are done, and a final validation of ``validation_s``."""
    left = budget_s * (1 - margin) - elapsed_s - validation_s
    left -= (batches_per_epoch - batches_done) * batch_s  # finishing the first epoch
    per_epoch = max(1e-9, batches_per_epoch * batch_s)
    return int(max(1, min(max_epochs, 1 + math.floor(left / per_epoch))))


@dataclass
class EpochPlan:
    """What ``--time-budget`` chose, for the log and the training history."""

    budget_s: float
    batch_s: float
    batches_per_epoch: int
    validation_s: float
    epochs: int
    max_epochs: int
    replanned: int = 0  # times the epochs were re-sized to the measured epoch time

    def summary(self) -> str:
        cap = f" (capped by --epochs {self.max_epochs})" if self.epochs == self.max_epochs else ""
        return (f"measured {self.batch_s:.2f} s/batch ({self.batches_per_epoch} batches/epoch); "
                f"{_epochs(self.epochs)} fit {self.budget_s:.0f} s{cap}, final validation ~{self.validation_s:.0f} s")

    def to_json(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


class SpeedProbe:
    """Times the batches of the first epoch: ``tick()`` after each; ``batch_s`` once
    ``WARMUP_BATCHES`` untimed and up to ``measure`` timed batches are done."""

    def __init__(self, measure: int = MEASURE_BATCHES, warmup: int = WARMUP_BATCHES, clock=time.perf_counter):
        self.measure, self.warmup, self.clock = max(1, measure), warmup, clock
        self.ticks = 0
        self._t0: Optional[float] = clock() if warmup == 0 else None
        self.batch_s: Optional[float] = None

    def tick(self) -> bool:
        """Count one batch; True when the measurement has just completed."""
        self.ticks += 1
        if self.ticks == self.warmup:
            self._t0 = self.clock()
        elif self.ticks == self.warmup + self.measure and self.batch_s is None:
            self.batch_s = (self.clock() - self._t0) / self.measure
            return True
        return False

    def finish_early(self) -> bool:
        """At the end of a first epoch too short to complete the measurement: use what was
        timed (the warm-up batches too, if nothing else). True if it measured anything."""
        if self.batch_s is not None or self.ticks == 0:
            return False
        timed = self.ticks - self.warmup
        if timed > 0:
            self.batch_s = (self.clock() - self._t0) / timed
        return self.batch_s is not None


def replan(plan: EpochPlan, epochs_done: int, elapsed_s: float, epoch_s: float) -> Optional[int]:
    """Checked when an epoch's batches are done, with ``epoch_s`` the measured seconds per
    epoch: a new epoch count, or None to keep the plan. Fewer when the planned epochs no
    longer fit the budget (possibly ``epochs_done``: stop now); more when they leave room
    and at most half of the run (or its first epoch) is done: the schedule's cosine has
    barely started to fall."""
    epoch_s = max(1e-9, epoch_s)
    left = plan.budget_s - elapsed_s - plan.validation_s
    if (plan.epochs - epochs_done) * epoch_s > left:
        return max(epochs_done, min(plan.epochs - 1, epochs_done + math.floor(max(0.0, left) / epoch_s)))
    fit = min(plan.max_epochs, epochs_done + math.floor((left - plan.budget_s * MARGIN) / epoch_s))
    # the first epoch is the learning rate's warm-up: the cosine has not started to fall
    if fit > plan.epochs and (epochs_done <= 1 or epochs_done * 2 <= plan.epochs):
        return fit
    return None
