"""The compression commands as a user runs them: quantize, prune (bench: test_bench_variants.py)."""

import onnx
import pytest
from click.testing import CliRunner

from generator.cli import cli
from generator.data.synth import synthesize
from generator.models.checkpoint import build_detector, load_checkpoint, save_checkpoint
from generator.samples import write_samples


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("compress")
    data = synthesize(root / "data", 16, seed=4, imgsz=64, classes=3, progress=False)
    det = build_detector("yolo-n", 3, 64, ["circle", "rectangle", "triangle"], seed=0)
    save_checkpoint(det, root / "m.pt")
    return root, data


def test_quantize_int8_and_fp16(tiny_yolo_onnx, tmp_path):
    images = tmp_path / "calib"
    write_samples(images, 10)
    out = tmp_path / "m.int8.onnx"
    r = CliRunner().invoke(cli, ["quantize", "--onnx", str(tiny_yolo_onnx), "--data", str(images), "--samples", "10",
                                 "--method", "minmax", "--out", str(out), "--trt-cache", str(tmp_path / "m.cache")])
    assert r.exit_code == 0, r.output
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert (tmp_path / "m.cache").read_text().splitlines()[0].startswith("TRT-")
    r = CliRunner().invoke(cli, ["quantize", "--onnx", str(tiny_yolo_onnx), "--fp16", "--out", str(tmp_path / "h.onnx")])
    assert r.exit_code == 0, r.output


def test_quantize_errors_are_clear(tiny_yolo_onnx, tmp_path):
    r = CliRunner().invoke(cli, ["quantize", "--onnx", str(tiny_yolo_onnx), "--out", str(tmp_path / "q.onnx")])
    assert r.exit_code == 2 and "--data is required" in r.output
    few = tmp_path / "few"
    write_samples(few, 3)
    r = CliRunner().invoke(cli, ["quantize", "--onnx", str(tiny_yolo_onnx), "--data", str(few), "--out",
                                 str(tmp_path / "q.onnx")])
    assert r.exit_code == 2 and "calibration needs at least 8" in r.output
    assert not (tmp_path / "q.onnx").exists()


def test_prune_command_writes_a_reloadable_smaller_checkpoint(shapes, tmp_path):
    root, data = shapes
    out = tmp_path / "p.pt"
    r = CliRunner().invoke(cli, ["prune", "--model", str(root / "m.pt"), "--ratio", "0.5", "--round-to", "8",
                                 "--data", str(data), "--finetune-epochs", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    pruned = load_checkpoint(out)
    before = sum(p.numel() for p in load_checkpoint(root / "m.pt").model.parameters())
    assert sum(p.numel() for p in pruned.model.parameters()) < 0.7 * before
    r = CliRunner().invoke(cli, ["export", "--model", str(out), "--out", str(tmp_path / "p.onnx")])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("ratio", ["0", "1", "1.5"])
def test_prune_refuses_a_ratio_outside_0_1(shapes, tmp_path, ratio):
    root, data = shapes
    r = CliRunner().invoke(cli, ["prune", "--model", str(root / "m.pt"), "--ratio", ratio, "--data", str(data),
                                 "--out", str(tmp_path / "p.pt")])
    assert r.exit_code == 2 and "ratio" in r.output
    assert not (tmp_path / "p.pt").exists()

