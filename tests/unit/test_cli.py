"""The click layer: options reach the library; errors become messages and exit codes."""

import json

import onnx
from click.testing import CliRunner

from generator.cli import cli


def test_export_family_name_gives_a_checked_onnx(tmp_path):
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(cli, ["export", "--model", "yolo-n", "--out", str(out), "--imgsz", "64", "--num-classes", "2"])
    assert r.exit_code == 0, r.output
    assert "max |onnxruntime - pytorch|" in r.output
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["tritonforge.names"]) == ["class0", "class1"] and meta["tritonforge.imgsz"] == "64"
    assert json.loads((tmp_path / "m.onnx.export.json").read_text())["imgsz"] == 64


def test_export_errors_are_clear(tmp_path):
    r = CliRunner().invoke(cli, ["export", "--model", "yolo-x", "--out", str(tmp_path / "m.onnx")])
    assert r.exit_code == 2 and "unknown model family 'yolo-x'" in r.output
    r = CliRunner().invoke(cli, ["export", "--model", "yolo-n", "--out", str(tmp_path / "m.onnx"), "--imgsz", "100"])
    assert r.exit_code == 2 and "--imgsz must be a multiple of 32" in r.output
    assert not (tmp_path / "m.onnx").exists()


def test_export_refuses_a_corrupt_checkpoint(tmp_path):
    ckpt = tmp_path / "broken.pt"
    ckpt.write_bytes(b"not a checkpoint")
    r = CliRunner().invoke(cli, ["export", "--model", str(ckpt), "--out", str(tmp_path / "m.onnx")])
    assert r.exit_code == 2 and "broken.pt: not a readable tritonforge checkpoint" in r.output


def test_checkpoint_round_trip_through_export(tmp_path):
    from generator.models.checkpoint import build_detector, load_checkpoint, save_checkpoint

    det = build_detector("yolo-n", 2, 64, ["cat", "dog"], seed=3)
    save_checkpoint(det, tmp_path / "d.pt")
    again = load_checkpoint(tmp_path / "d.pt")
    assert again.names == ["cat", "dog"] and again.imgsz == 64
    r = CliRunner().invoke(cli, ["export", "--model", str(tmp_path / "d.pt"), "--out", str(tmp_path / "d.onnx")])
    assert r.exit_code == 0, r.output
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "d.onnx")).metadata_props}
    assert json.loads(meta["tritonforge.names"]) == ["cat", "dog"]


def test_generate_command(contract_onnx, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    out = tmp_path / "repo"
    args = ["generate", "--onnx", str(contract_onnx), "--target", "cpu", "--out", str(out), "--name", "shapes",
            "--max-batch", "16", "--labels", str(labels)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "send images to shapes_ensemble" in r.output
    assert "max_batch_size: 16" in (out / "shapes" / "config.pbtxt").read_text()
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and "is not empty; pass --force" in r.output
    assert CliRunner().invoke(cli, args + ["--force"]).exit_code == 0


def test_generate_refuses_bad_names_and_targets(contract_onnx, tmp_path):
    for name in ("../up", "a/b", "sp ace", "{{x}}", "q'uote"):
        r = CliRunner().invoke(cli, ["generate", "--onnx", str(contract_onnx), "--out", str(tmp_path / "r"), "--name", name])
        assert r.exit_code == 2 and "invalid --name" in r.output, name
    r = CliRunner().invoke(cli, ["generate", "--onnx", str(contract_onnx), "--out", str(tmp_path / "r"), "--target", "x"])
    assert r.exit_code == 2 and "unknown target 'x'" in r.output
    assert not (tmp_path / "r").exists()


def test_serve_refuses_a_missing_repository(tmp_path):
    r = CliRunner().invoke(cli, ["serve", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "model repository not found" in r.output


def test_detect_reports_an_unreachable_server(tmp_path):
    from generator.samples import write_samples

    (img,) = write_samples(tmp_path, 1)
    r = CliRunner().invoke(cli, ["detect", "--url", "127.0.0.1:1", str(img)])
    assert r.exit_code == 4 and "unavailable" in r.output
