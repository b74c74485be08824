"""Choosing: which score is better, and the final default-versus-winner decision.

The search moves to a candidate only when it scores strictly higher (a tie keeps what it
has, so the default wins ties). The search's winner then faces the default again in
interleaved rounds (default, winner; winner, default; ...), each side scored by its best
round; it replaces the default only when it beats it by ``margin`` (noise on a shared
2-core host is several percent from one run to the next).
"""

from __future__ import annotations

from typing import Optional, Sequence


def better(a: Optional[float], b: Optional[float]) -> bool:
    """Whether score ``a`` is strictly better than ``b`` (None: infeasible, worse than any)."""
    return a is not None and (b is None or a > b)


def best_of(scores: Sequence[Optional[float]]) -> Optional[float]:
    """The best feasible score of several rounds; None when no round was feasible."""
    feasible = [s for s in scores if s is not None]
    return max(feasible) if feasible else None


def round_order(rounds: int) -> list:
    """("default" | "winner") per measurement: ABBA order, so a drift hurts both alike."""
    order = []
    for r in range(rounds):
        order += ["default", "winner"] if r % 2 == 0 else ["winner", "default"]
    return order


def decide(default_scores: Sequence[Optional[float]], winner_scores: Sequence[Optional[float]],
           margin: float) -> dict:
    """``{"chosen": "default"|"winner", "default_score", "winner_score", "ratio", "why"}``."""
    d, w = best_of(default_scores), best_of(winner_scores)
    ratio = (w / d) if (w is not None and d) else None
    out = {"default_score": d, "winner_score": w, "ratio": ratio}
    if w is None:
        return {**out, "chosen": "default", "why": "the winner met the p99 bound in no confirmation round"}
    if d is None:
        return {**out, "chosen": "winner", "why": "the default met the p99 bound in no confirmation round"}
    if ratio >= 1.0 + margin:
        return {**out, "chosen": "winner", "why": f"the winner beat the default by {ratio - 1:.1%} "
                                                  f"(margin {margin:.0%})"}
    return {**out, "chosen": "default", "why": f"the winner's {w:.1f} img/s is not {margin:.0%} above the "
                                               f"default's {d:.1f} img/s (ratio {ratio:.3f})"}
