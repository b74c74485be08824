"""bench --url with stage metrics, without a server: a level bracketed by two scrapes, the
tables and the plot, from the real metrics fixture (tests/fixtures/metrics)."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from generator import loadtest, metrics
from generator.cli import cli

FIXTURES = Path(__file__).parents[1] / "fixtures" / "metrics"
ENSEMBLE = "detector_ensemble"


class ReplayProbe:
    """Answers the fixture's scrapes in turn (before, after), or None like a probe whose endpoint is down."""

    def __init__(self, *names):
        self.scrapes = [metrics.parse((FIXTURES / f"{n}.txt").read_text()) if n else None for n in names]

    def scrape(self):
        return self.scrapes.pop(0)


def _level(**extra):
    return {"concurrency": 8, "requests": 28, "errors": 0, "throughput_img_s": 12.5, "p50_ms": 60.0,
            "p90_ms": 80.0, "p99_ms": 95.0, "mean_ms": 64.0, **extra}


def _measured(probe):
    started = []

    def run(on_start):
        on_start()
        started.append(True)
        return _level()

    row = loadtest._measured_level(probe, ENSEMBLE, run)
    assert started == [True]
    return row


def test_a_level_gets_its_stage_breakdown():
    row = _measured(ReplayProbe("before", "after"))
    assert row["queue_us_per_request"] == pytest.approx(404035 / 28)
    assert [s["model"] for s in row["stages"]] == ["detector_preprocess", "detector", "detector_postprocess"]
    assert row["custom_metrics"]["decode_failures"]["too_large"] == 2
    assert row["p99_ms"] == 95.0  # the latency figures are kept


@pytest.mark.parametrize("answers", [(None, None), ("before", None), (None, "after")])
def test_without_both_scrapes_the_level_has_none(answers):
    row = _measured(ReplayProbe(*answers))
    assert row["queue_us_per_request"] is None and row["stages"] == [] and row["custom_metrics"] is None


def _result():
    rows = [{**_level(concurrency=c), **metrics.stage_breakdown(*ReplayProbe("before", "after").scrapes, ENSEMBLE)}
            for c in (1, 8)]
    return {"endpoint": {"model": ENSEMBLE, "url": "h:8001", "protocol": "grpc", "transport": "network"},
            "levels": rows}


def test_report_has_the_stage_and_custom_tables():
    text = loadtest.format_report(_result())
    lines = text.splitlines()
    assert "queue ms/req" in lines[0] and lines[1].split()[-1] == f"{404035 / 28 / 1000:.2f}"
    stage_lines = [line.split() for line in lines if line.split()[1:2] and line.split()[1].startswith("detector")]
    stages = ("detector_preprocess", "detector", "detector_postprocess")
    assert [parts[:2] for parts in stage_lines] == [[c, m] for c in ("1", "8") for m in stages]
    pre = stage_lines[0]  # requests, batch, queue ms, compute ms, queue %
    assert pre[2:6] == ["34", f"{39 / 21:.2f}", f"{229315 / 34 / 1000:.2f}", f"{1240250 / 34 / 1000:.2f}"]
    assert "too_large 2" in text and "not_an_image 2" in text and "truncated 2" in text


def test_report_without_metrics_is_the_load_table_alone():
    result = {"endpoint": {}, "levels": [_level(queue_us_per_request=None, stages=[], custom_metrics=None)]}
    text = loadtest.format_report(result)
    assert text == loadtest.format_load_table(result["levels"]) and "queue" not in text


def test_load_png_has_the_stage_panel(tmp_path):
    from PIL import Image

    result = _result()
    paths = loadtest.write_load_report(result, tmp_path)
    assert json.loads(paths[0].read_text()) == result
    with_stages = Image.open(paths[1]).size
    plain = {**result, "levels": [{**r, "stages": []} for r in result["levels"]]}
    loadtest.write_load_report(plain, tmp_path / "plain")
    assert with_stages[0] > Image.open(tmp_path / "plain" / "load.png").size[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["load.json", "load.png", "plain"]  # no temporaries left


def test_cli_hands_the_metrics_url_over(monkeypatch):
    seen = []

    def run_load(url, protocol, model, levels, duration, images, transport, progress=True, echo=print,
                 metrics_url="", admin_key=None):
        seen.append(metrics_url)
        return {"endpoint": {}, "levels": [_level()]}

    monkeypatch.setattr("generator.loadtest.run_load", run_load)
    monkeypatch.setattr("generator.loadtest.load_images", lambda folder: [b"img"])
    for extra in ([], ["--metrics-url", "none"], ["--metrics-url", "http://m:9/metrics"]):
        assert CliRunner().invoke(cli, ["bench", "--url", "h:8001", "--json"] + extra).exit_code == 0
    assert seen == ["", "none", "http://m:9/metrics"]
