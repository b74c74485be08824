"""The capacity model: replicas for a request rate under a p99 bound, from what
``tritonforge bench --url URL --out D`` measured on the target hardware (``D/load.json``).

    per-replica capacity  C = max{ throughput(c) : p99(c) <= L, no errors } x headroom
    replicas              N = max(1, ceil(R / C))
    suggested maximum     M = 2 N   (room for bursts above R while new pods start)
    autoscaling target    Q = queue time per request measured at the level that gave C

Queue time per request is the project's definition (bench --url reads it from Triton's
metrics): the composing models' queue time over the ensemble's successful requests. A
replica past the level that still met L queues longer than Q, so an average above Q over
the pods means more replicas are due. See docs/scale-out.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List

from generator.errors import UsageError
from generator.loadtest import best_within, within

DEFAULT_HEADROOM = 0.8
REQUIRED = ("concurrency", "throughput_img_s", "p99_ms")


@dataclass(frozen=True)
class CapacityPlan:
    """Replicas and the autoscaling target for a rate, with the level they came from."""

    rate: float  # images (requests) per second to sustain
    p99_ms: float  # the latency bound
    headroom: float
    concurrency: int  # the chosen level: requests in flight per replica
    throughput_img_s: float  # measured at that level, per replica
    level_p99_ms: float
    capacity_img_s: float  # throughput x headroom
    replicas: int
    max_replicas: int
    queue_target_us: float

    def to_dict(self) -> dict:
        return asdict(self)


def read_load(path: Path) -> List[dict]:
    """The rows of a ``load.json`` (or of the ``load.json`` inside a folder)."""
    path = Path(path)
    file = path / "load.json" if path.is_dir() else path
    if not file.is_file():
        raise UsageError(f"--load {file} not found (write it with tritonforge bench --url URL --out DIR)")
    try:
        rows = json.loads(file.read_text(encoding="utf-8"))["levels"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--load {file}: not a load.json of tritonforge bench --url ({exc!r})") from None
    for number, row in enumerate(rows, 1):
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise UsageError(f"--load {file}: level {number} lacks {', '.join(missing)}")
    if not rows:
        raise UsageError(f"--load {file}: no concurrency levels")
    return rows


def _best_level(rows: List[dict], p99_ms: float, where: str) -> dict:
    level = best_within(rows, p99_ms)
    if level is not None:
        return level
    measured = [r for r in rows if r["p99_ms"] is not None]
    if not measured:
        raise UsageError(f"--load {where}: no level has a p99 figure (no request succeeded)")
    best = min(measured, key=lambda r: r["p99_ms"])
    raise UsageError(f"--p99-ms {p99_ms:g}: no level of {where} meets it; the best p99 is {best['p99_ms']:.1f} ms "
                     f"at concurrency {best['concurrency']} (raise --p99-ms, or make each replica faster)")


def plan_capacity(rows: List[dict], rate: float, p99_ms: float, headroom: float = DEFAULT_HEADROOM,
                  where: str = "load.json") -> CapacityPlan:
    """Replicas for ``rate`` images/s with p99 <= ``p99_ms`` (see the module docstring)."""
    if rate <= 0 or p99_ms <= 0:
        raise UsageError(f"--rate and --p99-ms must be > 0, got {rate:g} and {p99_ms:g}")
    if not 0 < headroom <= 1:
        raise UsageError(f"--headroom must be within (0, 1], got {headroom:g}")
    level = _best_level(rows, p99_ms, where)
    queue = level.get("queue_us_per_request")
    if queue is None:
        raise UsageError(f"--load {where}: the level at concurrency {level['concurrency']} has no queue figure "
                         "(queue_us_per_request); rerun tritonforge bench --url with Triton's metrics endpoint "
                         "reachable from where bench runs")
    capacity = level["throughput_img_s"] * headroom
    if capacity <= 0:
        raise UsageError(f"--load {where}: zero throughput at concurrency {level['concurrency']}")
    replicas = max(1, math.ceil(rate / capacity - 1e-9))
    return CapacityPlan(rate=rate, p99_ms=p99_ms, headroom=headroom, concurrency=int(level["concurrency"]),
                        throughput_img_s=level["throughput_img_s"], level_p99_ms=level["p99_ms"],
                        capacity_img_s=capacity, replicas=replicas, max_replicas=2 * replicas,
                        queue_target_us=max(1.0, float(round(queue))))  # whole us: a plain quantity


def _cell(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_plan(rows: List[dict], plan: CapacityPlan) -> str:
    """The measured levels (the chosen one marked) and the plan, as text."""
    header = f"{'':2}{'concurrency':>11} {'img/s':>8} {'p99 ms':>8} {'queue us/req':>13}  p99 <= {plan.p99_ms:g} ms"
    lines = [header]
    for r in rows:
        mark = "=>" if r["concurrency"] == plan.concurrency else ""
        lines.append(f"{mark:2}{r['concurrency']:>11} {_cell(r['throughput_img_s'], '.1f'):>8} "
                     f"{_cell(r['p99_ms'], '.1f'):>8} {_cell(r.get('queue_us_per_request'), '.0f'):>13}  "
                     f"{'yes' if within(r, plan.p99_ms) else 'no'}")
    lines += [
        f"per replica: {plan.throughput_img_s:.1f} img/s x headroom {plan.headroom:g} = {plan.capacity_img_s:.1f} img/s "
        f"at concurrency {plan.concurrency} (p99 {plan.level_p99_ms:.1f} ms)",
        f"replicas: ceil({plan.rate:g} / {plan.capacity_img_s:.1f}) = {plan.replicas}; "
        f"max replicas {plan.max_replicas}; queue-time target {plan.queue_target_us:g} us per request",
    ]
    return "\n".join(lines)
