"""One candidate measured with ``bench``'s load generator, and its score.

Levels run in increasing concurrency; once two levels in a row exceed the p99 bound, or one
exceeds twice the bound, the higher ones are skipped (in a closed loop, more requests in
flight only wait longer; one level over the bound may be a stall of a shared host). A candidate's
score is the best throughput among its levels whose p99 is within the bound and that had
no errors; none such: infeasible (score None). A level with errors makes the whole
candidate infeasible: a configuration that fails requests is never chosen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from generator.tune.knobs import Knobs

LEVEL_KEYS = ("concurrency", "requests", "errors", "throughput_img_s", "p50_ms", "p99_ms")


@dataclass
class Candidate:
    """A configuration and what its measurement gave."""

    id: int
    knobs: Knobs
    changed: Dict[str, list]
    phase: str  # "default", "search" or "confirm"
    levels: List[dict] = field(default_factory=list)
    score: Optional[float] = None  # img/s at the bound
    p99_ms: Optional[float] = None  # of the level that gave the score
    apply_s: float = 0.0
    seconds: float = 0.0  # apply + measure
    error: Optional[str] = None

    @property
    def feasible(self) -> bool:
        return self.score is not None

    def to_json(self) -> dict:
        out = asdict(self)
        out["feasible"] = self.feasible
        return out


def _row(row: dict) -> dict:
    out = {k: row.get(k) for k in LEVEL_KEYS}
    for key in ("throughput_img_s", "p50_ms", "p99_ms"):
        if out[key] is not None:
            out[key] = round(float(out[key]), 2)
    if row.get("first_error"):
        out["first_error"] = row["first_error"]
    return out


WARMUP_SIZES = 16  # OpenVINO compiles each batch size on first use, up to 16 (runners/openvino_runner.py)


def warm_up(url: str, model: str, images: Sequence[bytes], max_batch: int) -> None:
    """One request of each batch size 1..max batch (at most ``WARMUP_SIZES``), not measured: a
    fresh server's runtimes then run every size the dynamic batcher will form (OpenVINO
    compiles each on first use; a long-running server pays that once, not in its p99)."""
    from client import DetectionClient

    with DetectionClient(url, protocol="grpc", model=model, timeout=120.0, retries=0) as client:
        for n in range(1, min(max_batch, WARMUP_SIZES) + 1):
            client.detect_batch([images[i % len(images)] for i in range(n)])


def measure_levels(url: str, model: str, images: Sequence[bytes], levels: Sequence[int], duration: float,
                   bound_ms: float, tick: Optional[Callable[[float], None]] = None) -> List[dict]:
    """``run_level`` at each concurrency in increasing order, until the levels are past the bound."""
    from generator.loadtest import run_level

    rows: List[dict] = []
    for concurrency in sorted(levels):
        rows.append(_row(run_level(url, "grpc", model, images, concurrency, duration, tick=tick)))
        if past_bound(rows, bound_ms):
            break
    return rows


def past_bound(rows: Sequence[dict], bound_ms: float) -> bool:
    """Whether higher levels are not worth measuring: errors, a p99 over twice the bound, or
    the last two levels both over the bound."""
    def over(row: dict, factor: float = 1.0) -> bool:
        return row["p99_ms"] is None or row["p99_ms"] > factor * bound_ms

    last = rows[-1]
    return bool(last["errors"]) or over(last, 2.0) or (len(rows) > 1 and over(last) and over(rows[-2]))


def score(rows: Sequence[dict], bound_ms: float) -> Tuple[Optional[float], Optional[float]]:
    """(best img/s among levels with p99 <= bound, that level's p99); (None, None) when none
    meets it or any level had errors."""
    from generator.loadtest import best_within

    best = None if any(r["errors"] for r in rows) else best_within(rows, bound_ms)
    return (None, None) if best is None else (best["throughput_img_s"], best["p99_ms"])
