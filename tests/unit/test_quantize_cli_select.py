"""`tritonforge quantize --select / --runtime / --threads / --max-drop` as a user runs them."""

import json

import onnx
import pytest
from click.testing import CliRunner

from generator.cli import cli
from generator.compress.quantize import select
from generator.samples import write_samples


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_calib") / "calib"
    write_samples(folder, 8)
    return folder


def quantize(*args):
    return CliRunner().invoke(cli, ["quantize", *map(str, args)])


def test_help_names_the_new_options():
    r = quantize("--help")
    assert r.exit_code == 0
    for flag in ("--select", "--runtime", "--threads", "--max-drop", "measured", "op-type", "openvino"):
        assert flag in r.output


def test_measured_is_the_default_and_prints_its_table(tiny_yolo_onnx, images, tmp_path, monkeypatch):
    monkeypatch.setattr(select, "MAX_ROUNDS", 3)
    out = tmp_path / "m.int8.onnx"
    r = quantize("--onnx", tiny_yolo_onnx, "--data", images, "--samples", 8, "--method", "minmax", "--threads", 1,
                 "--out", out)
    assert r.exit_code == 0, r.output
    assert "measured selection: " in r.output and "measured selection on onnxruntime" in r.output
    assert "int8 gain" in r.output and "latency: fp32" in r.output
    saved = json.loads((tmp_path / "m.int8.onnx.quantize.json").read_text())
    assert saved["options"]["select"] == "measured" and saved["report"]["selection"]["groups"]
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["tritonforge.quantization"])["select"] == "measured"


def test_op_type_keeps_todays_behaviour(tiny_yolo_onnx, images, tmp_path):
    out = tmp_path / "o.int8.onnx"
    r = quantize("--onnx", tiny_yolo_onnx, "--data", images, "--samples", 8, "--method", "minmax",
                 "--select", "op-type", "--out", out)
    assert r.exit_code == 0, r.output
    assert "measured" not in r.output
    saved = json.loads((tmp_path / "o.int8.onnx.quantize.json").read_text())["report"]
    assert saved["selection"] == {"mode": "op-type"} and saved["accuracy"] is None


def test_refusals_are_clear_and_write_nothing(tiny_yolo_onnx, images, tmp_path):
    out = tmp_path / "x.onnx"
    r = quantize("--onnx", tiny_yolo_onnx, "--data", images, "--max-drop", 0.01, "--select", "op-type", "--out", out)
    assert r.exit_code == 2 and "val" in r.output and "folder of images" in r.output
    r = quantize("--onnx", tiny_yolo_onnx, "--data", images, "--target", "tensorrt", "--select", "measured",
                 "--out", out)
    assert r.exit_code == 2 and "--select op-type" in r.output
    r = quantize("--onnx", tiny_yolo_onnx, "--fp16", "--max-drop", 0.01, "--out", out)
    assert r.exit_code == 2 and "--fp16 takes no calibration options" in r.output
    r = quantize("--onnx", tiny_yolo_onnx, "--data", images, "--max-drop", 1.5, "--out", out)
    assert r.exit_code == 2 and "--max-drop" in r.output
    assert not out.exists()
