"""``tritonforge tune`` on the real bundled server: a tiny repository generated with a
deliberately poor queue delay (100 ms on every stage) is tuned within a small budget, at
concurrency 1, where that delay costs most of the throughput (about 2.7 img/s against 7
at 32 ms and 17 at 8 ms, measured here: a gap no noise of this host closes); the
tuned repository then serves exactly the detections of the untuned one on the same images;
tune.json holds every candidate, the default first and never beaten by the choice, and the
configs written parse with Triton's schema and hold the chosen knobs. A budget too small
for the default itself is refused with how long it took."""

import json
import shutil

import pytest
from click.testing import CliRunner

from generator.cli import cli
from generator.loadtest import load_images
from generator.repository.generate import generate
from generator.repository.options import RepositoryOptions
from generator.repository.render import parse_config
from generator.serve.server import TritonServer, free_port
from generator.tune.knobs import read_knobs
from generator.tune.repository import read_repository

from .conftest import OPTIONS

SLOW_DELAY_US = 100_000  # a poor default the search must leave: every request waits for its batch
KNOBS = "preprocess_instances,queue_delay_us,max_batch_size"


@pytest.fixture(scope="module")
def untuned(tiny_yolo_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("tune") / "untuned"
    generate(tiny_yolo_onnx, "embedded", out, RepositoryOptions(**{**OPTIONS, "queue_delay_us": SLOW_DELAY_US}))
    return out


@pytest.fixture(scope="module")
def tuned(untuned, tmp_path_factory):
    """(tuned repository, tune.json, CLI output)."""
    root = tmp_path_factory.mktemp("tuned")
    repo = root / "repo"
    shutil.copytree(untuned, repo)
    result = CliRunner().invoke(cli, ["tune", str(repo), "--p99-ms", "1500", "--budget", "2", "--concurrency", "1",
                                      "--duration", "2", "--knobs", KNOBS, "--out", str(root / "report")])
    assert result.exit_code == 0, result.output
    return repo, json.loads((root / "report" / "tune.json").read_text()), result.output


def _detections(repo):
    images = load_images(None)
    from client import DetectionClient

    with TritonServer(repo, free_port(), free_port(), free_port()) as server:
        with DetectionClient(server.endpoints.grpc, protocol="grpc", model="shapes_ensemble") as client:
            return [[d.to_dict() for d in client.detect(image)] for image in images]


def test_tuned_repository_serves_the_same_detections(untuned, tuned):
    repo, report, _ = tuned
    before, after = _detections(untuned), _detections(repo)
    assert sum(len(d) for d in before) > 0  # a comparison with something in it
    assert after == before


def test_tune_json_default_first_and_never_beaten(tuned):
    _, report, output = tuned
    candidates = report["candidates"]
    assert candidates[0]["phase"] == "default" and candidates[0]["changed"] == {}
    assert report["default"]["id"] == 0 and report["default"]["knobs"]["queue_delay_us"] == SLOW_DELAY_US
    decision = report["decision"]
    assert decision["default_score"] is not None
    assert decision["chosen_score"] >= decision["default_score"]
    for c in candidates:
        assert set(c) >= {"knobs", "levels", "score", "feasible", "phase"}
        assert c["feasible"] == (c["score"] is not None)
    assert report["knobs"]["searched"] == KNOBS.split(",")
    assert "img/s @ bound" in output and "chosen/default = " in output


def test_written_configs_parse_and_hold_the_chosen_knobs(untuned, tuned):
    repo, report, _ = tuned
    chosen = {k: tuple(v) if isinstance(v, list) else v for k, v in report["chosen"]["knobs"].items()}
    for path in repo.glob("*/config.pbtxt"):
        parse_config(path.read_text(), str(path))
    assert read_knobs(read_repository(repo)) == chosen
    written = set(report["written"])
    if report["decision"]["chosen"] == "winner":
        assert "tritonforge.json" in written
        assert "shapes_preprocess/config.pbtxt" in written  # the queue delay is on every batching stage
        manifest = json.loads((repo / "tritonforge.json").read_text())
        assert manifest["options"]["queue_delay_us"] == chosen["queue_delay_us"]
        assert "# Tuned by tritonforge tune for p99 <= 1500 ms" in (repo / "shapes" / "config.pbtxt").read_text()
    else:
        assert written == set()
        assert all((repo / p).read_bytes() == (untuned / p).read_bytes() for p in ("tritonforge.json",
                                                                                    "shapes/config.pbtxt"))


def test_a_100_ms_queue_delay_is_left(tuned):
    """The poor default is several times slower at concurrency 1: the search must find that."""
    _, report, _ = tuned
    assert report["decision"]["chosen"] == "winner", report["decision"]["why"]
    assert report["chosen"]["knobs"]["queue_delay_us"] < SLOW_DELAY_US


def test_a_budget_too_small_for_the_default_is_refused(untuned, tmp_path):
    result = CliRunner().invoke(cli, ["tune", str(untuned), "--budget", "0.05", "--concurrency", "1",
                                      "--duration", "2", "--dry-run", "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "--budget 0.05 min is too small: measuring the default configuration alone took" in result.output
    assert not (tmp_path / "tune.json").exists()
