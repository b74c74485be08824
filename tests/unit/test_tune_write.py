"""``tune`` writing back: tuned configs round-trip through Triton's schema, keep their header
comments and say they were tuned (no date: the same result writes the same bytes), the
manifest follows, and a failure part-way leaves every old file in place."""

import json
import shutil
from pathlib import Path

import pytest

from generator.repository.generate import generate
from generator.repository.render import parse_config
from generator.repository.targets import options_for
from generator.tune.knobs import configure, read_knobs
from generator.tune.repository import read_repository
from generator.tune.write import TUNED_PREFIX, header_comments, tuned_files, tuned_line, write_files

RECORD = {"p99_ms": 250.0, "ratio": 1.234, "command": "tritonforge tune repo --p99-ms 250"}


@pytest.fixture(scope="module")
def generated(contract_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("tune-write") / "repo"
    return generate(contract_onnx, "embedded", out, options_for("embedded")).path


@pytest.fixture()
def repo_path(generated, tmp_path):
    path = tmp_path / "repo"
    shutil.copytree(generated, path)
    return path


def _tuned(repo, **change):
    default = read_knobs(repo)
    knobs = {**default, **change}
    return knobs, default, tuned_files(repo, configure(repo, knobs), knobs, default, RECORD)


def test_tuned_configs_round_trip_keep_comments_and_say_so(repo_path):
    repo = read_repository(repo_path)
    old_header = header_comments(repo.texts["detector_preprocess"])
    knobs, _, files = _tuned(repo, preprocess_instances=3, queue_delay_us=500)
    assert set(files) == {repo_path / m / "config.pbtxt" for m in ("detector_preprocess", "detector",
                                                                    "detector_postprocess")} | \
        {repo_path / "tritonforge.json"}  # the ensemble does not batch: unchanged
    write_files(files)
    again = read_repository(repo_path)
    assert read_knobs(again) == knobs
    text = (repo_path / "detector_preprocess" / "config.pbtxt").read_text()
    lines = text.splitlines()
    assert lines[:len(old_header)] == old_header and old_header[0].startswith("# decode, letterbox")
    assert lines[len(old_header)] == tuned_line(250.0, 1.234)
    assert "for p99 <= 250 ms: 1.23x the default configuration's images/s" in text
    assert parse_config(text) == again.configs["detector_preprocess"]


def test_retuning_replaces_the_tuned_line_and_is_reproducible(repo_path):
    repo = read_repository(repo_path)
    _, _, files = _tuned(repo, detector_instances=2)
    write_files(files)
    first = {p: p.read_bytes() for p in files}
    again = read_repository(repo_path)
    text = tuned_files(again, configure(again, read_knobs(again)), read_knobs(again), read_knobs(repo), RECORD)
    # the same knobs from the tuned repository: no config changes, only the manifest
    assert set(text) == {repo_path / "tritonforge.json"}
    assert sum(line.startswith(TUNED_PREFIX) for line in first[repo_path / "detector" / "config.pbtxt"]
               .decode().splitlines()) == 1
    _, _, files2 = _tuned(repo, detector_instances=2)  # the same result from the same start: same bytes
    assert {p: data for p, data in files2.items()} == first


def test_manifest_options_follow_and_record_the_tuning(repo_path):
    repo = read_repository(repo_path)
    _, _, files = _tuned(repo, max_batch_size=16, preferred_batch_sizes=(8, 16), detector_instances=2)
    write_files(files)
    manifest = json.loads((repo_path / "tritonforge.json").read_text())
    assert manifest["options"]["max_batch_size"] == 16 and manifest["options"]["detector_instances"] == 2
    assert manifest["tuned"]["knobs"]["preferred_batch_sizes"] == [8, 16]
    assert manifest["tuned"]["p99_ms"] == 250.0 and manifest["tuned"]["ratio"] == 1.234
    assert "runtime" not in manifest  # unchanged runtime: the manifest says nothing new
    ensemble = parse_config((repo_path / "detector_ensemble" / "config.pbtxt").read_text())
    assert ensemble.max_batch_size == 16


def test_a_changed_runtime_updates_the_manifest_and_requirements(repo_path):
    repo = read_repository(repo_path)
    _, _, files = _tuned(repo, runtime="openvino")
    write_files(files)
    manifest = json.loads((repo_path / "tritonforge.json").read_text())
    assert manifest["runtime"]["chosen"] == "openvino" and manifest["runtime"]["requested"] == "onnxruntime"
    assert "openvino>=2024.4" in (repo_path / "requirements.txt").read_text().splitlines()
    detector = parse_config((repo_path / "detector" / "config.pbtxt").read_text())
    assert detector.parameters["runtime"].string_value == "openvino"


def test_a_failure_while_writing_leaves_every_old_file(repo_path, monkeypatch):
    repo = read_repository(repo_path)
    before = {p: p.read_bytes() for p in repo_path.rglob("*") if p.is_file()}
    _, _, files = _tuned(repo, preprocess_instances=3, max_batch_size=4, preferred_batch_sizes=(2, 4))
    calls = []
    real = Path.write_bytes

    def failing(self, data):
        calls.append(self)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing)
    with pytest.raises(OSError, match="No space left"):
        write_files(files)
    monkeypatch.undo()
    after = {p: p.read_bytes() for p in repo_path.rglob("*") if p.is_file()}
    assert after == before  # the same files, the same bytes, no temporaries left behind
