"""The steps of a *plan*: the SDK's logic (discovery, retries, batching, shared
memory) is written once as generators that yield :class:`Call` and :class:`Sleep`
steps; the sync client performs them with blocking calls, the async client awaits
them. A failed call is thrown back into the plan as an SDK error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generator, Mapping, Optional, Tuple, TypeVar, Union

from client.errors import DetectionClientError

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """Call ``method`` of the tritonclient client with ``args``/``kwargs``; ``what`` names it in errors."""

    what: str
    method: str
    args: Tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    timeout: Optional[float] = None  # None: the client's default


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` (time.sleep or asyncio.sleep)."""

    seconds: float


Step = Union[Call, Sleep]
Plan = Generator[Step, Any, T]
Outcome = Tuple[Any, Optional[DetectionClientError]]


def advance(plan: Plan, outcome: Outcome) -> Tuple[bool, Any]:
    """Feed the outcome of the last step (its value or its error) to ``plan``:
    ``(False, next_step)`` while it runs, ``(True, result)`` once it returns."""
    value, error = outcome
    try:
        step = plan.throw(error) if error is not None else plan.send(value)
    except StopIteration as done:
        return True, done.value
    return False, step

