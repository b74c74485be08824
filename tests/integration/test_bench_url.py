"""``tritonforge bench --url`` against the real server: every level measured, where the time goes
per stage from Triton's metrics endpoint, reports written."""

import json

import pytest
from click.testing import CliRunner

from generator.cli import cli
from generator.serve.server import free_port


@pytest.mark.parametrize("protocol, shm", [("grpc", False), ("http", False), ("grpc", True)])
def test_bench_url_measures_each_level(server, tmp_path, protocol, shm):
    url = server.endpoints.grpc if protocol == "grpc" else server.endpoints.http
    args = ["bench", "--url", url, "--protocol", protocol, "--model", "shapes_ensemble", "--concurrency", "1,3",
            "--duration", "1", "--metrics-url", server.endpoints.metrics, "--out", str(tmp_path), "--json"] + \
        (["--shm"] if shm else [])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["endpoint"]["model"] == "shapes_ensemble" and report["endpoint"]["protocol"] == protocol
    assert report["endpoint"]["transport"] == ("shm" if shm else "network")
    assert [r["concurrency"] for r in report["levels"]] == [1, 3]
    for row in report["levels"]:
        assert row["errors"] == 0 and row["requests"] > 0, row
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["throughput_img_s"] > 0
        _assert_stage_breakdown(row)
    assert report["endpoint"]["metrics_url"] == server.endpoints.metrics
    assert json.loads((tmp_path / "load.json").read_text()) == report
    assert (tmp_path / "load.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_url_table_and_progress(server):
    result = CliRunner().invoke(cli, ["bench", "--url", server.endpoints.grpc, "--model", "shapes_ensemble",
                                      "--concurrency", "2", "--duration", "0.5"])
    assert result.exit_code == 0, result.output
    header = [line for line in result.output.splitlines() if "p99 ms" in line]
    assert header and "img/s" in header[0]


def test_bench_url_errors_are_clear(server):
    runner = CliRunner()
    down = runner.invoke(cli, ["bench", "--url", f"127.0.0.1:{free_port()}", "--duration", "0.5"])
    assert down.exit_code == 4 and "127.0.0.1" in down.output
    missing = runner.invoke(cli, ["bench", "--url", server.endpoints.grpc, "--model", "nope", "--duration", "0.5"])
    assert missing.exit_code == 4 and "nope" in missing.output
    bad = runner.invoke(cli, ["bench", "--url", server.endpoints.grpc, "--concurrency", "0,2"])
    assert bad.exit_code == 2 and "--concurrency" in bad.output
    both = runner.invoke(cli, ["bench", "--url", server.endpoints.grpc, "--variants", "a=b"])
    assert both.exit_code == 2 and "exactly one of --variants" in both.output


STAGES = ["shapes_preprocess", "shapes", "shapes_postprocess"]


def _assert_stage_breakdown(row):
    """Every stage served the level's requests, with time spent queued and computing."""
    assert [s["model"] for s in row["stages"]] == STAGES, row["stages"]
    for stage in row["stages"]:
        assert stage["requests"] >= row["requests"] and stage["executions"] >= 1, stage
        assert stage["batch"] >= 1 and stage["queue_us"] + stage["compute_us"] > 0, stage
    assert row["queue_us_per_request"] is not None and row["queue_us_per_request"] > 0
    assert row["queue_us_per_request"] == pytest.approx(
        sum(s["queue_us"] * s["requests"] for s in row["stages"]) / row["stages"][-1]["requests"], rel=0.05)
    custom = row["custom_metrics"]
    assert custom["images_per_request"] == 1.0 and custom["decode_failures"]["truncated"] == 0
    assert custom["preprocess_us_per_image"] > 0 and custom["detections_per_image"] is not None


def test_bench_url_prints_where_the_time_goes(server):
    result = CliRunner().invoke(cli, ["bench", "load", server.endpoints.grpc, "--model", "shapes_ensemble",
                                      "--concurrency", "1,4", "--duration", "1",
                                      "--metrics-url", server.endpoints.metrics])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("queue ms/req" in line for line in lines)
    stage_header = lines.index(next(line for line in lines if "compute ms" in line))
    stage_lines = lines[stage_header + 1:stage_header + 1 + 2 * len(STAGES)]
    assert [line.split()[:2] for line in stage_lines] == [[c, m] for c in ("1", "4") for m in STAGES]
    assert any("img/request" in line for line in lines)


def test_bench_url_carries_on_without_metrics(server, tmp_path):
    down = f"http://127.0.0.1:{free_port()}/metrics"
    result = CliRunner().invoke(cli, ["bench", "--url", server.endpoints.grpc, "--model", "shapes_ensemble",
                                      "--concurrency", "1,2", "--duration", "0.5", "--metrics-url", down,
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.count(down) == 1 and "carrying on without stage metrics" in result.output
    assert "compute ms" not in result.output
    report = json.loads((tmp_path / "load.json").read_text())
    assert report["endpoint"]["metrics_url"] is None and down in report["endpoint"]["metrics_error"]
    assert [r["queue_us_per_request"] for r in report["levels"]] == [None, None]
    skipped = CliRunner().invoke(cli, ["bench", "--url", server.endpoints.grpc, "--model", "shapes_ensemble",
                                       "--concurrency", "1", "--duration", "0.5", "--metrics-url", "none", "--json"])
    assert skipped.exit_code == 0, skipped.output
    report = json.loads(skipped.output)
    assert report["endpoint"]["metrics_url"] is None and "metrics_error" not in report["endpoint"]
    assert report["levels"][0]["queue_us_per_request"] is None and report["levels"][0]["stages"] == []
