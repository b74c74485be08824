"""``bench variants``: one row per runtime, by default every runtime available for each
variant on this host; ``--runtimes`` picks them."""

import json

import pytest
from click.testing import CliRunner

from generator import bench
from generator.cli import cli
from generator.data.synth import synthesize
from generator.errors import UsageError
from generator.runtime.runners.openvino_runner import bf16_supported

pytest.importorskip("openvino")
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    from generator.export.onnx_export import export_onnx
    from generator.export.torchscript import export_torchscript
    from generator.models.checkpoint import build_detector

    root = tmp_path_factory.mktemp("runtimes")
    data = synthesize(root / "data", 6, seed=1, imgsz=64, classes=3, progress=False)
    det = build_detector("yolo-n", 3, 64, ["circle", "rectangle", "triangle"], seed=0)
    export_onnx(det, root / "m.onnx")
    export_torchscript(det, root / "m.torchscript")
    return root / "m.onnx", data


def _rows(args):
    r = CliRunner().invoke(cli, ["bench", "variants", *args, "--json"])
    assert r.exit_code == 0, r.output
    return {row["name"]: row for row in json.loads(r.output)["variants"]}


def test_an_onnx_gets_a_row_per_available_runtime(variant):
    onnx, data = variant
    rows = _rows([f"m={onnx}", "--data", str(data)])
    want = ["m (onnxruntime)", "m (openvino)"] + (["m (openvino-bf16)"] if bf16_supported() else []) + \
        ["m (torchscript)"]
    assert list(rows) == want
    for row in rows.values():
        assert row["latency_ms_b1"] > 0 and row["latency_ms_b8"] > 0
    # the same network on every runtime: the same detections, so the same mAP
    assert len({round(r["map50_95"], 3) for r in rows.values()}) == 1


def test_runtimes_flag_picks_rows_and_refused_ones_say_why(variant):
    onnx, data = variant
    rows = _rows([f"m={onnx}", "--data", str(data), "--runtimes", "openvino-bf16,openvino"])
    assert list(rows) == ["m (openvino-bf16)", "m (openvino)"]
    if not bf16_supported():
        assert "no bfloat16 units" in rows["m (openvino-bf16)"]["note"]
        assert rows["m (openvino-bf16)"].get("latency_ms_b8") is None


def test_unknown_runtime_is_refused():
    with pytest.raises(UsageError, match=r"--runtimes: unknown tvm; choose from pytorch, torchscript, onnxruntime"):
        bench.parse_runtimes("onnxruntime,tvm")


def test_default_runtimes_of_an_onnx_without_torchscript(tmp_path, contract_onnx):
    assert bench.onnx_runtimes(contract_onnx, None)[:2] == ["onnxruntime", "openvino"]
    assert "torchscript" not in bench.onnx_runtimes(contract_onnx, None)
    assert bench.onnx_runtimes(contract_onnx, ["pytorch", "torchscript", "openvino"]) == ["torchscript", "openvino"]
    note = bench._torchscript_entry(contract_onnx)["note"]
    assert note.startswith("skipped: no contract.torchscript beside the ONNX") and "--torchscript" in note

