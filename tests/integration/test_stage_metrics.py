"""The Python stages' custom metrics on the real server's /metrics: after good and bad
requests, each counter moved by exactly what was sent, refused images by reason."""

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

import image_bytes as ib
from generator import metrics
from generator.runtime import stage_metrics

from .reference import ENSEMBLE

PRE, POST = "shapes_preprocess", "shapes_postprocess"
GOOD = [[ib.jpeg(60, 80, seed=1)], [ib.png(ib.noise(50, 40, seed=2)), ib.jpeg(90, 30, seed=3)],
        [ib.jpeg(64, 64, seed=4)]]
BAD = {  # request items -> the reason its refused image is counted under
    "truncated JPEG": ([ib.jpeg(64, 64, seed=3)[:400]], "truncated"),
    "not an image": ([b"GET / HTTP/1.1\r\n\r\n"], "not_an_image"),
    "PNG bomb": ([ib.png_bomb()], "too_large"),
    "JPEG header 20000x20000": ([ib.jpeg(20, 20), ib.jpeg_claiming()], "too_large"),
}


def _infer(client, items):
    array = np.empty((len(items), 1), dtype=object)
    array[:, 0] = items
    tensor = grpcclient.InferInput("IMAGE", [len(items), 1], "BYTES")
    tensor.set_data_from_numpy(array)
    return client.infer(ENSEMBLE, [tensor], client_timeout=120)


@pytest.fixture(scope="module")
def traffic(server):
    """(Δ samples over the good and bad requests, detections the good ones returned)."""
    before = metrics.scrape(server.endpoints.metrics)
    client = grpcclient.InferenceServerClient(server.endpoints.grpc)
    try:
        detections = sum(int(_infer(client, items).as_numpy("num_detections").sum()) for items in GOOD)
        for items, _ in BAD.values():
            with pytest.raises(InferenceServerException):
                _infer(client, items)
    finally:
        client.close()
    return metrics.delta(before, metrics.scrape(server.endpoints.metrics)), detections


def _value(changes, name, stage, model, **extra):
    found = [s.value for s in changes if s.name in (name, name + "_total") and s.labels ==
             {"model": model, "stage": stage, **extra}]
    assert len(found) == 1, f"{name} {model} {extra}: {len(found)} series on /metrics"
    return found[0]


def test_refused_images_counted_by_reason(traffic):
    changes, _ = traffic
    expected = {reason: sum(1 for _, r in BAD.values() if r == reason) for reason in stage_metrics.REASONS}
    got = {reason: _value(changes, stage_metrics.DECODE_FAILURES, "preprocess", PRE, reason=reason)
           for reason in stage_metrics.REASONS}
    assert got == expected == {"truncated": 1, "not_an_image": 1, "too_large": 2, "other": 0}


def test_images_per_request_and_time_in_the_preprocess(traffic):
    changes, _ = traffic
    requests = list(GOOD) + [items for items, _ in BAD.values()]
    assert _value(changes, "tritonforge_requests_total", "preprocess", PRE) == len(requests)
    assert _value(changes, "tritonforge_images_total", "preprocess", PRE) == sum(map(len, requests))
    assert _value(changes, "tritonforge_execute_us_total", "preprocess", PRE) > 0
    summary = metrics.custom_summary(changes)
    assert summary["images_per_request"] == pytest.approx(sum(map(len, requests)) / len(requests))


def test_detections_per_image_in_the_postprocess(traffic):
    changes, detections = traffic
    images = sum(map(len, GOOD))  # refused requests never reach the postprocess
    assert detections > 0
    assert _value(changes, "tritonforge_images_total", "postprocess", POST) == images
    assert _value(changes, "tritonforge_detections_total", "postprocess", POST) == detections
    assert _value(changes, "tritonforge_execute_us_total", "postprocess", POST) > 0
    assert metrics.custom_summary(changes)["detections_per_image"] == pytest.approx(detections / images)


def test_triton_counts_the_same_requests(traffic):
    """The stage breakdown over the same interval: the ensemble answered the good requests only."""
    changes, _ = traffic
    assert metrics.by_label(changes, metrics.SUCCESS)[ENSEMBLE] == len(GOOD)
    assert metrics.queue_us_per_request(changes, ENSEMBLE) is not None
    rows = {r["model"]: r for r in metrics.stage_rows(changes, ENSEMBLE)}
    assert list(rows) == [PRE, "shapes", POST]
    assert rows[POST]["requests"] == len(GOOD) and rows[POST]["compute_us"] > 0
