"""The click layer: options reach the library; errors become messages and exit codes."""

import json

import onnx
import pytest
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
    record = json.loads((tmp_path / "m.onnx.export.json").read_text())
    assert record["imgsz"] == 64
    assert record["command"].startswith("tritonforge export --model yolo-n --out ")  # what was typed, not pytest's argv


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


# ------------------------------------------------------------------ the command the user ran


def test_invoked_command_is_what_the_user_typed():
    import click

    from generator.cli import ForgeGroup, invoked_command

    seen = []
    group = ForgeGroup()
    group.add_command(click.Command("probe", params=[click.Option(["--x"])], callback=lambda x: seen.append(invoked_command())))
    r = CliRunner().invoke(group, ["probe", "--x", "a b"])
    assert r.exit_code == 0, r.output
    assert seen == [["tritonforge", "probe", "--x", "a b"]]


# ------------------------------------------------------------------ bench: subcommands and the short forms


@pytest.fixture
def fake_bench(monkeypatch):
    """Record what the bench commands hand the library; no model runs, no server."""
    calls = {}

    def run_variants(spec, data, split, echo=print, **_):
        calls["variants"] = (spec, str(data), split)
        return [{"name": "a", "runtime": "onnxruntime"}]

    def run_load(url, protocol, model, levels, duration, images, transport, progress=True, echo=print, metrics_url="",
                 admin_key=None):
        calls["load"] = (url, protocol, model, list(levels), duration, transport, progress)
        calls["metrics_url"] = metrics_url
        row = {"concurrency": levels[0], "requests": 10, "errors": 0, "throughput_img_s": 5.0, "p50_ms": 1.0,
               "p90_ms": 2.0, "p99_ms": 3.0, "mean_ms": 1.5}
        return {"endpoint": {"url": url, "protocol": protocol}, "levels": [row]}

    monkeypatch.setattr("generator.bench.run_variants", run_variants)
    monkeypatch.setattr("generator.loadtest.run_load", run_load)
    monkeypatch.setattr("generator.loadtest.load_images", lambda folder: [b"img"])
    return calls


@pytest.mark.parametrize("args", [
    ["bench", "--variants", "a=m.onnx", "--data", "d", "--split", "train", "--json"],
    ["bench", "variants", "a=m.onnx", "--data", "d", "--split", "train", "--json"],
])
def test_bench_variants_both_forms(fake_bench, args):
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert fake_bench["variants"] == ("a=m.onnx", "d", "train")
    assert json.loads(r.output) == {"variants": [{"name": "a", "runtime": "onnxruntime"}]}


@pytest.mark.parametrize("args", [
    ["bench", "--url", "http://h:8000", "--concurrency", "1,3", "--duration", "0.5", "--shm", "--json"],
    ["bench", "load", "http://h:8000", "--concurrency", "1,3", "--duration", "0.5", "--shm", "--json"],
])
def test_bench_load_both_forms(fake_bench, args):
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert fake_bench["load"] == ("http://h:8000", "http", "detector_ensemble", [1, 3], 0.5, "shm", False)
    assert json.loads(r.output)["endpoint"]["protocol"] == "http"


def test_bench_load_protocol_defaults_to_grpc(fake_bench):
    r = CliRunner().invoke(cli, ["bench", "--url", "h:8001", "--concurrency", "2"])
    assert r.exit_code == 0, r.output
    assert fake_bench["load"][1:4] == ("grpc", "detector_ensemble", [2])
    assert "p99 ms" in r.output


@pytest.mark.parametrize("args, message", [
    (["bench"], "exactly one of --variants"),
    (["bench", "--variants", "a=b", "--url", "h:1"], "exactly one of --variants"),
    (["bench", "--variants", "a=b"], "--variants needs --data"),
    (["bench", "variants", "a=b"], "--variants needs --data"),
    (["bench", "load", "h:1", "--concurrency", "0,2"], "--concurrency"),
])
def test_bench_usage_errors_exit_2(fake_bench, args, message):
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and message in r.output, r.output
    assert not fake_bench
