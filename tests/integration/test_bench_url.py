"""``tritonforge bench --url`` against the real server: every level measured, reports written."""

import json

import pytest
from click.testing import CliRunner

from generator.cli import cli
from generator.serve.server import free_port


@pytest.mark.parametrize("protocol, shm", [("grpc", False), ("http", False), ("grpc", True)])
def test_bench_url_measures_each_level(server, tmp_path, protocol, shm):
    url = server.endpoints.grpc if protocol == "grpc" else server.endpoints.http
    args = ["bench", "--url", url, "--protocol", protocol, "--model", "shapes_ensemble", "--concurrency", "1,3",
            "--duration", "1", "--out", str(tmp_path), "--json"] + (["--shm"] if shm else [])
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
