"""Coordinate descent over the knobs, bounded in time.

From the best candidate so far, one knob at a time (in ``KnobSpace.knobs`` order, the most
promising first) its neighbouring values are measured; a knob that improves is pushed on in
the same direction before the next knob; a pass that improves nothing ends the search. A
candidate is started only if it fits: the time spent, plus the most any candidate has cost
so far for it and for every measurement the final confirmation keeps in reserve, stays
within the budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

from generator.tune.knobs import Knobs, knob_key
from generator.tune.measure import Candidate
from generator.tune.select import better
from generator.tune.space import KnobSpace

Evaluate = Callable[[Knobs], Optional[Candidate]]  # None: not measured (inconsistent configs)


@dataclass
class Budget:
    """Seconds allowed, seconds spent, and what one candidate costs (the most seen so far)."""

    seconds: float
    reserve_runs: int = 0  # candidate measurements kept for the confirmation
    clock: Callable[[], float] = time.monotonic
    costs: List[float] = field(default_factory=list)
    start: float = 0.0

    def __post_init__(self) -> None:
        self.start = self.start or self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def estimate(self) -> float:
        return max(self.costs) if self.costs else 0.0

    def fits(self, runs: int = 1) -> bool:
        """Whether ``runs`` more candidates and the reserve end within the budget."""
        return self.elapsed() + (runs + self.reserve_runs) * self.estimate() <= self.seconds


def _sweep(space: KnobSpace, knob: str, best: Candidate, evaluate: Evaluate, budget: Budget,
           seen: set) -> Tuple[Candidate, bool]:
    """Measure ``knob``'s neighbours of ``best`` (and on, while it improves); (the new best,
    whether the budget ran out)."""
    while True:
        fresh = [k for k in space.neighbours(best.knobs, knob) if knob_key(k) not in seen]
        before = best
        for knobs in fresh:
            if not budget.fits():
                return best, True
            seen.add(knob_key(knobs))
            candidate = evaluate(knobs)
            if candidate is not None and better(candidate.score, best.score):
                best = candidate
        if best is before:
            return best, False


def coordinate_descent(space: KnobSpace, default: Candidate, evaluate: Evaluate, budget: Budget) -> Candidate:
    """The best candidate found from ``default`` within ``budget`` (``default`` if none beats it)."""
    best, seen = default, {knob_key(default.knobs)}
    while True:
        start = best
        for knob in space.knobs:
            best, out_of_time = _sweep(space, knob, best, evaluate, budget, seen)
            if out_of_time:
                return best
        if best is start:
            return best
