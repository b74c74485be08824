"""Triton's metrics endpoint: scrape it, and say what happened between two scrapes.

Triton publishes cumulative counters per model (label ``model``): requests, executions,
and the time requests spent queued and computing. Between two scrapes their differences
give, per stage of an ensemble, the requests, the average batch the dynamic batcher
formed, and the queue and compute time per request (:func:`stage_breakdown`).

**Queue time per request** is the project-wide figure the autoscaler follows: the sum over
every model except the ensemble of Δ ``nv_inference_queue_duration_us``, divided by Δ
``nv_inference_request_success`` of the ensemble. The ensemble's own queue time is ~0: its
requests queue in the composing models.

The Python stages' own counters (``tritonforge_*``, ``generator/runtime/stage_metrics.py``)
are summed up by :func:`custom_summary`.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from generator.errors import ServerError

SUCCESS = "nv_inference_request_success"
INFERENCES = "nv_inference_count"
EXECUTIONS = "nv_inference_exec_count"
QUEUE = "nv_inference_queue_duration_us"
COMPUTE = ("nv_inference_compute_input_duration_us", "nv_inference_compute_infer_duration_us",
           "nv_inference_compute_output_duration_us")
CUSTOM_PREFIX = "tritonforge_"


class Sample(NamedTuple):
    name: str
    labels: Dict[str, str]
    value: float


Key = Tuple[str, Tuple[Tuple[str, str], ...]]


class MetricsUnavailable(ServerError):
    """The metrics endpoint did not answer, or answered something that is not Prometheus text."""


def parse(text: str) -> List[Sample]:
    """Every sample of a Prometheus text exposition (Triton's ``/metrics``). The parser names
    every counter's samples ``..._total`` (``nv_inference_count`` becomes ``nv_inference_count_total``):
    :func:`by_label` finds a counter under either name."""
    from prometheus_client.parser import text_string_to_metric_families

    return [Sample(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text) for s in family.samples]


def scrape(url: str, timeout: float = 10.0, attempts: int = 2) -> List[Sample]:
    """GET ``url`` (``http://host:8002/metrics``) and parse it; MetricsUnavailable when it cannot
    (after ``attempts`` tries: a busy server's metrics endpoint may miss one)."""
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - a URL the user gave
                text = response.read().decode("utf-8")
            break
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if attempt + 1 >= attempts or isinstance(getattr(exc, "reason", None), ConnectionRefusedError):
                raise MetricsUnavailable(f"metrics endpoint {url}: {getattr(exc, 'reason', exc)}") from None
    try:
        return parse(text)
    except ValueError as exc:
        raise MetricsUnavailable(f"metrics endpoint {url}: not Prometheus text ({exc})") from None


def counters(samples: Sequence[Sample]) -> Dict[Key, float]:
    """``(name, sorted labels) -> value``."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}


def delta(before: Sequence[Sample], after: Sequence[Sample]) -> List[Sample]:
    """``after - before`` per series; a series that went down was reset (a model reloaded):
    its whole ``after`` value is new, as Prometheus' ``increase`` counts it."""
    old = counters(before)
    out = []
    for s in after:
        previous = old.get((s.name, tuple(sorted(s.labels.items()))), 0.0)
        out.append(Sample(s.name, s.labels, s.value - previous if s.value >= previous else s.value))
    return out


def by_label(samples: Sequence[Sample], name: str, label: str = "model",
             where: Optional[Mapping[str, str]] = None) -> Dict[str, float]:
    """Sum of ``name``'s samples per value of ``label`` (over the other labels, e.g. ``version``),
    keeping those whose labels include ``where``."""
    sums: Dict[str, float] = {}
    names = {name, name + "_total"}
    for s in samples:
        if s.name in names and label in s.labels and all(s.labels.get(k) == v for k, v in (where or {}).items()):
            sums[s.labels[label]] = sums.get(s.labels[label], 0.0) + s.value
    return sums


def queue_us_per_request(changes: Sequence[Sample], ensemble: str) -> Optional[float]:
    """Σ Δqueue_us of every model but ``ensemble`` ÷ Δ successes of ``ensemble`` (None: no request done)."""
    done = by_label(changes, SUCCESS).get(ensemble, 0.0)
    if done <= 0:
        return None
    return sum(v for model, v in by_label(changes, QUEUE).items() if model != ensemble) / done


def _stage_order(model: str) -> Tuple[int, str]:
    # generated names end in _preprocess / _postprocess; the detector sits between
    return (0 if model.endswith("preprocess") else 2 if model.endswith("postprocess") else 1, model)


def stage_rows(changes: Sequence[Sample], ensemble: str) -> List[dict]:
    """Per model but ``ensemble`` that served requests: requests, executions, average batch,
    and queue and compute (input + infer + output) microseconds per request; pipeline order."""
    success, inferences, executions = (by_label(changes, n) for n in (SUCCESS, INFERENCES, EXECUTIONS))
    queue = by_label(changes, QUEUE)
    compute = [by_label(changes, n) for n in COMPUTE]
    rows = []
    for model in sorted((m for m, n in success.items() if m != ensemble and n > 0), key=_stage_order):
        n, runs = success[model], executions.get(model, 0.0)
        rows.append({"model": model, "requests": int(n), "executions": int(runs),
                     "batch": inferences.get(model, 0.0) / runs if runs > 0 else 0.0,
                     "queue_us": queue.get(model, 0.0) / n,
                     "compute_us": sum(part.get(model, 0.0) for part in compute) / n})
    return rows


def stage_breakdown(before: Sequence[Sample], after: Sequence[Sample], ensemble: str) -> dict:
    """``{"queue_us_per_request", "stages", "custom_metrics"}`` between two scrapes."""
    changes = delta(before, after)
    return {"queue_us_per_request": queue_us_per_request(changes, ensemble), "stages": stage_rows(changes, ensemble),
            "custom_metrics": custom_summary(changes)}


def _ratio(num: float, den: float) -> Optional[float]:
    return num / den if den > 0 else None


def custom_summary(changes: Sequence[Sample]) -> Optional[dict]:
    """The Python stages' ``tritonforge_*`` counters over an interval (None when the server has
    none: an older Triton, or stages generated before them): refused images by reason, images
    per request, detections per image, microseconds per image in each stage."""
    if not any(s.name.startswith(CUSTOM_PREFIX) for s in changes):
        return None

    def stage(name: str, which: str) -> float:
        return by_label(changes, name, "stage").get(which, 0.0)

    images_pre = stage("tritonforge_images_total", "preprocess")
    images_post = stage("tritonforge_images_total", "postprocess")
    return {
        "decode_failures": {reason: int(n) for reason, n in sorted(
            by_label(changes, "tritonforge_decode_failures_total", "reason").items())},
        "images_per_request": _ratio(images_pre, stage("tritonforge_requests_total", "preprocess")),
        "detections_per_image": _ratio(stage("tritonforge_detections_total", "postprocess"), images_post),
        "preprocess_us_per_image": _ratio(stage("tritonforge_execute_us_total", "preprocess"), images_pre),
        "postprocess_us_per_image": _ratio(stage("tritonforge_execute_us_total", "postprocess"), images_post),
    }


METRICS_PORT = 8002  # Triton's default


def default_metrics_url(url: str) -> str:
    """Triton's metrics endpoint on the host of ``url`` (``host:port``, ``grpc://host:port``, ...):
    ``http://host:8002/metrics``."""
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    host = rest.rsplit(":", 1)[0] if ":" in rest.rsplit("]", 1)[-1] else rest
    return f"http://{host}:{METRICS_PORT}/metrics"


def resolve_metrics_url(option: Optional[str], url: str) -> Optional[str]:
    """``--metrics-url``: unset (None or "") -> :func:`default_metrics_url`; ``none`` -> None (skip)."""
    if option is None or option == "":
        return default_metrics_url(url)
    return None if option.lower() == "none" else option


class Probe:
    """Scrapes ``url`` when asked; the first failure is reported once through ``echo``, and
    then every scrape answers None, so a load test carries on without metrics."""

    def __init__(self, url: Optional[str], echo=print):
        self.url, self.echo, self.error = url, echo, None

    @property
    def active(self) -> bool:
        return self.url is not None and self.error is None

    def scrape(self) -> Optional[List[Sample]]:
        if not self.active:
            return None
        try:
            return scrape(self.url)  # type: ignore[arg-type]
        except MetricsUnavailable as exc:
            self.error = str(exc)
            self.echo(f"{exc}; carrying on without stage metrics (--metrics-url none skips them)")
            return None
