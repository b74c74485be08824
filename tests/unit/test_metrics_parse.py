"""generator.metrics on real Triton metrics text: two scrapes of the bundled server on
model_repository/ around 28 good and 6 bad requests (tests/fixtures/metrics/capture.py)."""

import re
from pathlib import Path

import pytest

from generator import metrics
from generator.serve.server import free_port

FIXTURES = Path(__file__).parents[1] / "fixtures" / "metrics"
ENSEMBLE = "detector_ensemble"
STAGES = ["detector_preprocess", "detector", "detector_postprocess"]


@pytest.fixture(scope="module")
def scrapes():
    return [metrics.parse((FIXTURES / f"{name}.txt").read_text()) for name in ("before", "after")]


def _raw(name: str, model: str, which: str) -> float:
    """A value read straight off the fixture text, without the parser."""
    text = (FIXTURES / f"{which}.txt").read_text()
    match = re.search(rf'^{name}{{model="{re.escape(model)}",version="1"}} (\S+)$', text, re.M)
    assert match, (name, model, which)
    return float(match.group(1))


def _change(name: str, model: str) -> float:
    return _raw(name, model, "after") - _raw(name, model, "before")


def test_parse_reads_every_model_of_triton_text(scrapes):
    _, after = scrapes
    success = metrics.by_label(after, metrics.SUCCESS)
    assert success == {ENSEMBLE: 29, "detector_preprocess": 35, "detector": 29, "detector_postprocess": 29}
    # the parser names counters ..._total; by_label finds them under Triton's own names too
    assert metrics.by_label(after, metrics.SUCCESS + "_total") == success
    assert metrics.by_label(after, metrics.QUEUE)["detector"] == _raw(metrics.QUEUE, "detector", "after")


def test_queue_per_request_excludes_the_ensemble(scrapes):
    changes = metrics.delta(*scrapes)
    done = _change(metrics.SUCCESS, ENSEMBLE)
    assert done == 28
    expected = sum(_change(metrics.QUEUE, m) for m in STAGES) / done
    assert metrics.queue_us_per_request(changes, ENSEMBLE) == pytest.approx(expected)
    assert expected == pytest.approx(404035 / 28)
    # the ensemble's own queue time is not counted: it is the composing models' queue seen again, ~0
    assert _change(metrics.QUEUE, ENSEMBLE) == 50
    with_ensemble = expected + _change(metrics.QUEUE, ENSEMBLE) / done
    assert metrics.queue_us_per_request(changes, ENSEMBLE) != pytest.approx(with_ensemble, rel=1e-6)


def test_stage_rows_in_pipeline_order_without_the_ensemble(scrapes):
    rows = metrics.stage_breakdown(*scrapes, ensemble=ENSEMBLE)["stages"]
    assert [r["model"] for r in rows] == STAGES
    for row in rows:
        m = row["model"]
        n = _change(metrics.SUCCESS, m)
        assert row["requests"] == n and row["executions"] == _change(metrics.EXECUTIONS, m)
        assert row["batch"] == pytest.approx(_change(metrics.INFERENCES, m) / _change(metrics.EXECUTIONS, m))
        assert row["queue_us"] == pytest.approx(_change(metrics.QUEUE, m) / n)
        assert row["compute_us"] == pytest.approx(sum(_change(c, m) for c in metrics.COMPUTE) / n)
        assert row["queue_us"] > 0 and row["compute_us"] > 0
    assert rows[0] == {"model": "detector_preprocess", "requests": 34, "executions": 21,
                       "batch": pytest.approx(39 / 21), "queue_us": pytest.approx(229315 / 34),
                       "compute_us": pytest.approx((53864 + 1178150 + 8236) / 34)}


def test_custom_metrics_summary_from_the_stages(scrapes):
    summary = metrics.stage_breakdown(*scrapes, ensemble=ENSEMBLE)["custom_metrics"]
    assert summary["decode_failures"] == {"not_an_image": 2, "other": 0, "too_large": 2, "truncated": 2}
    assert summary["images_per_request"] == pytest.approx(39 / 34)
    assert summary["detections_per_image"] == pytest.approx(29 / 32)
    assert summary["preprocess_us_per_image"] == pytest.approx((494075.42 - 6736.537) / 39)
    assert summary["postprocess_us_per_image"] == pytest.approx((23726.104 - 935.065) / 32)


def test_no_custom_metrics_from_a_server_without_them(scrapes):
    plain = [[s for s in scrape if not s.name.startswith("tritonforge_")] for scrape in scrapes]
    breakdown = metrics.stage_breakdown(*plain, ensemble=ENSEMBLE)
    assert breakdown["custom_metrics"] is None and len(breakdown["stages"]) == 3


def test_nothing_done_means_no_queue_figure_and_no_stages(scrapes):
    _, after = scrapes
    breakdown = metrics.stage_breakdown(after, after, ensemble=ENSEMBLE)
    assert breakdown["queue_us_per_request"] is None and breakdown["stages"] == []


def test_a_counter_that_went_down_was_reset():
    before = [metrics.Sample("nv_inference_count", {"model": "m"}, 100.0)]
    after = [metrics.Sample("nv_inference_count", {"model": "m"}, 7.0),
             metrics.Sample("nv_inference_count", {"model": "new"}, 3.0)]
    assert metrics.by_label(metrics.delta(before, after), "nv_inference_count") == {"m": 7.0, "new": 3.0}


def test_unreachable_endpoint_is_reported_once_and_then_skipped():
    url = f"http://127.0.0.1:{free_port()}/metrics"
    with pytest.raises(metrics.MetricsUnavailable, match=re.escape(url)):
        metrics.scrape(url, timeout=2)
    said = []
    probe = metrics.Probe(url, said.append)
    assert probe.scrape() is None and probe.scrape() is None
    assert len(said) == 1 and url in said[0] and "--metrics-url none" in said[0]
    assert not probe.active and metrics.Probe(None).scrape() is None


def test_text_that_is_not_prometheus_is_refused():
    with pytest.raises(ValueError):
        metrics.parse("<html><body>not metrics</body></html>")


@pytest.mark.parametrize("url, expected", [
    ("127.0.0.1:8001", "http://127.0.0.1:8002/metrics"),
    ("grpc://triton.example:8001", "http://triton.example:8002/metrics"),
    ("http://triton.example:8000/", "http://triton.example:8002/metrics"),
    ("localhost", "http://localhost:8002/metrics"),
    ("[::1]:8001", "http://[::1]:8002/metrics"),
])
def test_default_metrics_url_is_the_hosts_port_8002(url, expected):
    assert metrics.resolve_metrics_url(None, url) == expected
    assert metrics.resolve_metrics_url("none", url) is None
    assert metrics.resolve_metrics_url("http://m:9/metrics", url) == "http://m:9/metrics"
