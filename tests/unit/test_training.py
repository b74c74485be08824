"""Training end to end on a tiny synthetic set: checkpoint contents, resume, errors, eval."""

import json

import pytest
import torch
from click.testing import CliRunner

from generator.cli import cli
from generator.data.synth import synthesize
from generator.errors import UsageError
from generator.models.checkpoint import load_checkpoint
from generator.training.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("data") / "shapes", 24, seed=3, imgsz=96, classes=2, progress=False)


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    result = train(TrainConfig(data=str(tiny_data), model="yolo-n", out=str(out), imgsz=96, epochs=1, batch=8),
                   echo=lambda _: None, progress=False)
    return out, result


def test_checkpoint_embeds_family_names_size_and_state(trained):
    out, result = trained
    det = load_checkpoint(out)
    assert det.family == "yolo-n" and det.names == ["circle", "rectangle"] and det.imgsz == 96
    payload = torch.load(out, weights_only=True)
    state = payload["extra"]["train_state"]
    assert state["epoch"] == 0 and len(state["history"]) == 1 and state["config"]["imgsz"] == 96
    assert {"map50", "map50_95"} <= set(result.metrics)
    assert 0.0 <= result.metrics["map50"] <= 1.0


def test_resume_continues_the_stored_run(trained, tiny_data, tmp_path):
    out, _ = trained
    copy = tmp_path / "resume.pt"
    copy.write_bytes(out.read_bytes())
    result = train(TrainConfig(data=str(tiny_data), out=str(copy), imgsz=96, epochs=2, batch=8, resume=True),
                   echo=lambda _: None, progress=False)
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert torch.load(copy, weights_only=True)["extra"]["train_state"]["epoch"] == 1


def test_training_errors_name_the_problem(tiny_data, tmp_path):
    with pytest.raises(UsageError, match="--imgsz must be a multiple of 32, got 100"):
        train(TrainConfig(data=str(tiny_data), out=str(tmp_path / "x.pt"), imgsz=100), progress=False)
    with pytest.raises(UsageError, match="--resume: no checkpoint to resume"):
        train(TrainConfig(data=str(tiny_data), out=str(tmp_path / "none.pt"), imgsz=96, epochs=1, resume=True),
              progress=False)
    with pytest.raises(UsageError, match="missing.yaml"):
        train(TrainConfig(data=str(tmp_path / "missing.yaml"), out=str(tmp_path / "x.pt"), imgsz=96), progress=False)
    assert not (tmp_path / "x.pt").exists()


def test_checkpoint_of_another_family_is_refused(trained, tmp_path):
    out, _ = trained
    payload = torch.load(out, weights_only=True)
    payload["family"] = "mobilenetv3"
    bad = tmp_path / "relabelled.pt"
    torch.save(payload, bad)
    with pytest.raises(UsageError, match="relabelled.pt: weights do not fit family 'mobilenetv3'"):
        load_checkpoint(bad)


def test_eval_of_checkpoint_and_its_onnx_agree(trained, tiny_data, tmp_path):
    out, _ = trained
    onnx_path = tmp_path / "tiny.onnx"
    r = CliRunner().invoke(cli, ["export", "--model", str(out), "--out", str(onnx_path), "--data", str(tiny_data)])
    assert r.exit_code == 0, r.output
    results = {}
    for flag, value in (("--model", out), ("--onnx", onnx_path)):
        r = CliRunner().invoke(cli, ["eval", "--data", str(tiny_data), flag, str(value), "--json"])
        assert r.exit_code == 0, r.output
        results[flag] = json.loads(r.output)
    a, b = results["--model"], results["--onnx"]
    assert set(a) >= {"map50_95", "map50", "per_class"} and set(a["per_class"]) == {"circle", "rectangle"}
    assert a["detections"] > 0
    assert abs(a["map50_95"] - b["map50_95"]) <= 0.005 and abs(a["map50"] - b["map50"]) <= 0.005


def test_eval_needs_exactly_one_source(tiny_data):
    r = CliRunner().invoke(cli, ["eval", "--data", str(tiny_data)])
    assert r.exit_code == 2 and "exactly one of --model CKPT, --onnx M, --url HOST:PORT" in r.output
