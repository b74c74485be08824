"""Custom metrics of the Python-backend stages, through Triton's metrics API (no Triton import here).

The stages publish counters on Triton's metrics endpoint (``/metrics``, beside Triton's own
``nv_inference_*``), each labelled ``model`` (the stage's model name) and ``stage``
(``preprocess``, ``postprocess``):

- ``tritonforge_requests_total`` (preprocess): requests the stage handled (Triton counts
  the other stages' requests);
- ``tritonforge_images_total``: images (batch items) the stage handled;
- ``tritonforge_execute_us_total``: microseconds spent in its ``execute``;
- ``tritonforge_detections_total`` (postprocess): detections returned;
- ``tritonforge_decode_failures_total`` (preprocess, label ``reason``: ``truncated``,
  ``not_an_image``, ``too_large``, ``other``): images refused.

Only counters: Triton's Python backend has had COUNTER and GAUGE since 23.01, HISTOGRAM
only in later releases. Averages are ratios of two counters' rates (images per request =
Δimages / Δrequests, time per image = Δexecute_us / Δimages).

Metrics never get in a request's way: where ``pb_utils`` has no ``MetricFamily`` (an older
server) or Triton refuses one, the counters are inert, and an update that fails is dropped.
"""

from __future__ import annotations

import time
from typing import Dict, Iterable, Mapping, Optional, Tuple

FAMILIES: Dict[str, str] = {
    "tritonforge_requests_total": "Requests a tritonforge Python stage handled",
    "tritonforge_images_total": "Images (batch items) a tritonforge Python stage handled",
    "tritonforge_execute_us_total": "Microseconds a tritonforge Python stage spent in execute",
    "tritonforge_detections_total": "Detections the tritonforge postprocess returned",
    "tritonforge_decode_failures_total": "Images the tritonforge preprocess refused, by reason (truncated: corrupt "
                                         "or cut short; not_an_image; too_large: over max_pixels; other)",
}
REASONS = ("truncated", "not_an_image", "too_large", "other")
DECODE_FAILURES = "tritonforge_decode_failures_total"

_Key = Tuple[str, Tuple[Tuple[str, str], ...]]


class StageMetrics:
    """The counters one stage updates: ``add(name, amount, **labels)``.

    ``names``: the families of :data:`FAMILIES` it uses; every one is published at 0 from
    the start (the decode failures once per reason), so a scrape sees them before any request.
    """

    def __init__(self, pb_utils, model: str, stage: str, names: Iterable[str]):
        self._labels = {"model": model, "stage": stage}
        self._families: Dict[str, object] = {}
        self._metrics: Dict[_Key, object] = {}
        try:
            self._create(pb_utils, list(names))
        except Exception as exc:  # an older Triton, or a refused family: no metrics, no failure
            self._families, self._metrics = {}, {}
            _warn(pb_utils, f"{model}: custom metrics off ({type(exc).__name__}: {exc})")

    @property
    def enabled(self) -> bool:
        return bool(self._families)

    def _create(self, pb_utils, names) -> None:
        family = getattr(pb_utils, "MetricFamily", None)
        if family is None:
            return  # Triton before 23.01: nothing to publish to
        for name in names:
            self._families[name] = family(name=name, description=FAMILIES[name], kind=family.COUNTER)
        for name in names:
            for extra in ([{"reason": r} for r in REASONS] if name == DECODE_FAILURES else [{}]):
                self._metric(name, extra)

    def _metric(self, name: str, extra: Mapping[str, str]):
        key = (name, tuple(sorted(extra.items())))
        metric = self._metrics.get(key)
        if metric is None:
            metric = self._metrics[key] = self._families[name].Metric(labels={**self._labels, **extra})
        return metric

    def add(self, name: str, amount: float, **extra: str) -> None:
        """Increment counter ``name`` (with ``extra`` labels) by ``amount`` > 0; never raises."""
        if amount <= 0 or name not in self._families:
            return
        try:
            self._metric(name, extra).increment(float(amount))
        except Exception:  # a metric must never fail a request
            pass

    def close(self) -> None:
        """Drop the metric objects (``finalize``); Triton keeps a family while any instance holds it."""
        self._metrics.clear()
        self._families.clear()


def elapsed_us(start_ns: int) -> float:
    """Microseconds since ``start_ns`` (a ``time.perf_counter_ns()`` reading)."""
    return (time.perf_counter_ns() - start_ns) / 1000.0


def _warn(pb_utils, message: str) -> None:
    logger: Optional[object] = getattr(pb_utils, "Logger", None)
    try:
        logger.log_warn(message)  # type: ignore[union-attr]
    except Exception:
        pass
