"""The Python stages' custom metrics, through the stand-in pb_utils: what they count, by
reason, and that metrics never get in a request's way (no MetricFamily, failing updates)."""

import json

import numpy as np
import pytest

import image_bytes as ib
from generator.runtime import imaging, stage_metrics

PRE, POST = "shapes_preprocess", "shapes_postprocess"
RAW = {"name": "RAW", "data_type": "TYPE_FP32", "dims": [7, 50]}
TRANSFORM = {"name": "TRANSFORM", "data_type": "TYPE_FP32", "dims": [5]}


def _args(model, parameters, inputs=()):
    config = {"parameters": {k: {"string_value": v} for k, v in parameters.items()}, "input": list(inputs)}
    return {"model_config": json.dumps(config), "model_name": model, "model_repository": "", "model_version": "1"}


def _batch(*items):
    arr = np.empty((len(items), 1), dtype=object)
    arr[:, 0] = items
    return arr


@pytest.fixture()
def fam(pb_utils):
    pb_utils.MetricFamily.reset()
    yield pb_utils.MetricFamily
    pb_utils.MetricFamily.reset()


def _preprocess(model=PRE):
    from generator.runtime import preprocess

    stage = preprocess.TritonPythonModel()
    stage.initialize(_args(model, {"height": "64", "width": "64", "dtype": "UINT8"}))
    return stage


def _postprocess():
    from generator.runtime import postprocess

    stage = postprocess.TritonPythonModel()
    stage.initialize(_args(POST, {"score_threshold": "0.3", "iou_threshold": "0.5", "max_detections": "20"},
                           [RAW, TRANSFORM]))
    return stage


BAD = {  # item -> the reason label it is counted under
    "truncated JPEG": (ib.jpeg(64, 64, seed=3)[:400], "truncated"),
    "JPEG cut inside its header": (ib.jpeg(64, 64)[:90], "truncated"),
    "truncated PNG": (ib.png(ib.noise(64, 64))[:-30], "truncated"),
    "non-image bytes": (b"GET / HTTP/1.1\r\n\r\n", "not_an_image"),
    "empty bytes": (b"", "not_an_image"),
    "TIFF": (ib.pil(ib.noise(8, 8), "TIFF"), "not_an_image"),
    "PNG bomb": (ib.png_bomb(), "too_large"),
    "JPEG header 20000x20000": (ib.jpeg_claiming(), "too_large"),
    "WebP canvas 20000x20000": (ib.webp_claiming(), "too_large"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_refused_image_is_counted_under_its_reason(name, fam):
    item, reason = BAD[name]
    stage = _preprocess()
    (response,) = stage.execute([_request(item)])
    assert response.has_error()
    counts = {r: fam.value(stage_metrics.DECODE_FAILURES, model=PRE, stage="preprocess", reason=r)
              for r in stage_metrics.REASONS}
    assert counts == {r: (1.0 if r == reason else 0.0) for r in stage_metrics.REASONS}, name


def _request(*items):
    import triton_python_backend_utils as pb_utils

    return pb_utils.InferenceRequest(IMAGE=_batch(*items))


def test_failure_reason_other_for_what_is_not_about_the_image():
    from generator.runtime.preprocess import failure_reason

    assert failure_reason(ib.jpeg(8, 8), MemoryError("no memory"), 10) == "other"
    assert failure_reason("text", imaging.ImageError("expected encoded image bytes"), 10) == "other"
    assert failure_reason(ib.jpeg(8, 8), imaging.ImageError("decode failed"), 64) == "truncated"
    assert failure_reason(ib.jpeg(8, 8), imaging.ImageError("over"), 63) == "too_large"


def test_preprocess_counts_requests_images_and_time(fam):
    stage = _preprocess()
    good = [_request(ib.jpeg(40, 50), ib.jpeg(30, 20, 1)), _request(ib.png(ib.noise(20, 20)))]
    bad = [_request(ib.jpeg(40, 50), b"not an image at all"), _request(ib.jpeg_claiming())]
    responses = stage.execute(good + bad) + stage.execute([good[1]])
    assert [r.has_error() for r in responses] == [False, False, True, True, False]

    def value(name, **extra):
        return fam.value(name, model=PRE, stage="preprocess", **extra)

    assert value("tritonforge_requests_total") == 5
    assert value("tritonforge_images_total") == 2 + 1 + 2 + 1 + 1
    assert value("tritonforge_execute_us_total") > 0
    assert value(stage_metrics.DECODE_FAILURES, reason="not_an_image") == 1
    assert value(stage_metrics.DECODE_FAILURES, reason="too_large") == 1
    assert value(stage_metrics.DECODE_FAILURES, reason="truncated") == 0


def test_every_series_is_published_at_zero_before_any_request(fam):
    _preprocess()
    _postprocess()
    failures = fam.series(stage_metrics.DECODE_FAILURES)
    assert {dict(key)["reason"] for key in failures} == set(stage_metrics.REASONS) and set(failures.values()) == {0.0}
    assert fam.value("tritonforge_detections_total", model=POST, stage="postprocess") == 0.0
    assert fam.value("tritonforge_detections_total", model=PRE, stage="preprocess") is None


def test_two_instances_of_a_stage_share_their_series(fam):
    first, second = _preprocess(), _preprocess()
    first.execute([_request(ib.jpeg(20, 20))])
    second.execute([_request(ib.jpeg(20, 20), ib.jpeg(10, 10))])
    assert fam.value("tritonforge_images_total", model=PRE, stage="preprocess") == 3


def _raw(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, 7, 50)).astype(np.float32) * [[100], [100], [30], [30], [1], [1], [1]]


def _transform(n):
    return np.tile(np.array([[0.5, 10, 0, 400, 300]], np.float32), (n, 1))


def test_postprocess_counts_images_and_detections(fam, pb_utils):
    stage = _postprocess()
    requests = [pb_utils.InferenceRequest(RAW=_raw(n, n).astype(np.float32), TRANSFORM=_transform(n)) for n in (1, 3)]
    responses = stage.execute(requests)
    detections = sum(int(r.output("num_detections").sum()) for r in responses)
    assert detections > 0
    assert fam.value("tritonforge_images_total", model=POST, stage="postprocess") == 4
    assert fam.value("tritonforge_detections_total", model=POST, stage="postprocess") == detections
    assert fam.value("tritonforge_execute_us_total", model=POST, stage="postprocess") > 0


def test_postprocess_counts_no_images_for_a_refused_request(fam, pb_utils):
    stage = _postprocess()
    good = pb_utils.InferenceRequest(RAW=_raw(2), TRANSFORM=_transform(2))
    misfit = pb_utils.InferenceRequest(RAW=_raw(1), TRANSFORM=np.ones((1, 4), np.float32))  # boxes cannot map back
    responses = stage.execute([good, misfit])
    assert [r.has_error() for r in responses] == [False, True]
    assert fam.value("tritonforge_images_total", model=POST, stage="postprocess") == 2
    assert fam.value("tritonforge_detections_total", model=POST, stage="postprocess") == \
        int(responses[0].output("num_detections").sum())


def test_without_metric_family_the_stages_serve_without_metrics(pb_utils, monkeypatch):
    """An older Triton's pb_utils has no MetricFamily: no metrics, no error."""
    monkeypatch.delattr(pb_utils, "MetricFamily")
    stage = _preprocess()
    assert not stage.metrics.enabled
    responses = stage.execute([_request(ib.jpeg(20, 20)), _request(b"junk")])
    assert [r.has_error() for r in responses] == [False, True]


def test_a_refused_family_turns_metrics_off_with_a_warning(fam, pb_utils, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("metrics are disabled")

    monkeypatch.setattr(fam, "__init__", refuse)
    pb_utils.Logger.messages.clear()
    stage = _preprocess()
    assert not stage.metrics.enabled
    assert any("custom metrics off" in m and "metrics are disabled" in m for _, m in pb_utils.Logger.messages)
    assert not stage.execute([_request(ib.jpeg(20, 20))])[0].has_error()


def test_a_failing_update_never_fails_the_request(fam, pb_utils, monkeypatch):
    stage = _preprocess()

    def broken(self, value):
        raise RuntimeError("metrics IPC broke")

    monkeypatch.setattr(pb_utils.Metric, "increment", broken)
    responses = stage.execute([_request(ib.jpeg(20, 20)), _request(b"")])
    assert [r.has_error() for r in responses] == [False, True]
    assert responses[0].output("PREPROCESSED").shape == (1, 3, 64, 64)


def test_finalize_drops_the_metrics(fam):
    stage = _preprocess()
    stage.finalize()
    assert not stage.metrics.enabled
    assert not stage.execute([_request(ib.jpeg(20, 20))])[0].has_error()
