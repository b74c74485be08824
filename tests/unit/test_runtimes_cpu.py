"""The OpenVINO and TorchScript runners against ONNX Runtime and eager PyTorch on the test
models; bfloat16 refused (never emulated) on CPUs without it; TorchScript export checked
and refused; ONNX Runtime's thread spinning off by default."""

from pathlib import Path

import numpy as np
import pytest

from generator.errors import TritonForgeError
from generator.runtime import runners as registry
from generator.runtime.runners.openvino_runner import bf16_supported, check_bf16

pytest.importorskip("openvino")
BF16 = bf16_supported()


def _batch(n, size, seed=0):
    return np.random.default_rng(seed).random((n, 3, size, size), dtype=np.float32)


@pytest.fixture(scope="module")
def int8_onnx(tiny_yolo_onnx, tmp_path_factory):
    """The tiny yolo as a Q/DQ INT8 ONNX (minmax on random images)."""
    from generator.compress.quantize import QuantizeConfig, quantize_onnx

    out = tmp_path_factory.mktemp("int8") / "tiny.int8.onnx"
    quantize_onnx(tiny_yolo_onnx, out, _batch(8, 128, seed=3), QuantizeConfig(method="minmax"))
    return out


@pytest.mark.parametrize("batch", [1, 3])
def test_openvino_agrees_with_onnxruntime_on_the_contract_model(contract_onnx, batch):
    ov = registry.open_runner("openvino", contract_onnx, threads=1)
    ort = registry.open_runner("onnxruntime", contract_onnx, threads=1)
    assert (ov.name, ov.input_name, ov.output_names, ov.input_dtype) == ("openvino", "images", ["output0"], np.float32)
    x = _batch(batch, 64)
    (got,), (want,) = ov(x), ort(x)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_openvino_runs_every_batch_size_of_a_dynamic_graph(tiny_yolo_onnx):
    ov = registry.open_runner("openvino", tiny_yolo_onnx, threads=1)
    ort = registry.open_runner("onnxruntime", tiny_yolo_onnx, threads=1)
    for batch in (2, 1, 2):  # a size seen before reuses its compiled model
        x = _batch(batch, 128, seed=batch)
        np.testing.assert_allclose(ov(x)[0], ort(x)[0], atol=1e-3)
    assert sorted(ov.requests) == [1, 2]


def test_openvino_runs_the_qdq_int8_onnx_close_to_onnxruntime(int8_onnx, tiny_yolo_onnx):
    ov = registry.open_runner("openvino", int8_onnx, threads=1)
    ort = registry.open_runner("onnxruntime", int8_onnx, threads=1)
    fp32 = registry.open_runner("onnxruntime", tiny_yolo_onnx, threads=1)
    x = _batch(2, 128, seed=5)
    got, want, ref = ov(x)[0], ort(x)[0], fp32(x)[0]
    # the same quantized model on two INT8 engines: boxes within a few pixels, scores within a few points
    boxes, scores = np.abs(got - want)[:, :4], np.abs(got - want)[:, 4:]
    assert np.median(boxes) < 1.0 and np.median(scores) < 0.02
    assert np.median(np.abs(got - ref)[:, 4:]) < 0.05  # and close to float


def test_bf16_is_refused_on_a_cpu_without_it_naming_the_capabilities(contract_onnx):
    with pytest.raises(ValueError, match=r"no bfloat16 units \(OpenVINO capabilities: FP32, INT8\)"):
        check_bf16(["FP32", "INT8"])
    check_bf16(["FP32", "BF16"])
    if BF16:
        pytest.skip("this CPU has bfloat16 units")
    with pytest.raises(ValueError, match="openvino-bf16: this CPU has no bfloat16 units"):
        registry.open_runner("openvino-bf16", contract_onnx)


@pytest.mark.skipif(not BF16, reason="needs a CPU with bfloat16 units (AMX or AVX512-BF16)")
def test_bf16_runs_close_to_fp32_where_supported(tiny_yolo_onnx):
    bf = registry.open_runner("openvino-bf16", tiny_yolo_onnx, threads=1)
    fp = registry.open_runner("onnxruntime", tiny_yolo_onnx, threads=1)
    x = _batch(2, 128)
    assert np.median(np.abs(bf(x)[0] - fp(x)[0])[:, 4:]) < 0.02


def test_available_runtimes_follow_the_host_and_the_files(contract_onnx, tmp_path):
    names = registry.available_runtimes(contract_onnx)
    assert names[:2] == ["onnxruntime", "openvino"] and ("openvino-bf16" in names) == BF16
    assert "torchscript" not in registry.available_runtimes(contract_onnx, tmp_path / "missing.torchscript")
    (tmp_path / "m.torchscript").write_bytes(b"x")
    assert registry.available_runtimes(None, tmp_path / "m.torchscript") == ["torchscript"]


def test_onnxruntime_spinning_is_off_by_default(contract_onnx):
    def spinning(runner):
        return runner.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")

    assert spinning(registry.open_runner("onnxruntime", contract_onnx)) == "0"
    assert spinning(registry.open_runner("onnxruntime", contract_onnx, spinning=True)) == "1"


# ------------------------------------------------------------------ TorchScript


@pytest.fixture(scope="module")
def detector():
    pytest.importorskip("torch")
    from generator.models.checkpoint import build_detector

    return build_detector("yolo-n", 3, 64, None, seed=0)


def test_torchscript_export_matches_eager_and_leaves_a_reproducer(detector, tmp_path):
    import json

    from generator.export.torchscript import export_torchscript
    from generator.runners import open_runner

    report = export_torchscript(detector, tmp_path / "m.torchscript", command=["tritonforge", "export"])
    assert report.max_abs_diff <= 1e-4 and "max |torchscript - pytorch|" in report.summary()
    record = json.loads((tmp_path / "m.torchscript.export.json").read_text())
    assert record["format"] == "torchscript" and record["command"] == "tritonforge export"
    runner = open_runner("torchscript", tmp_path / "m.torchscript", threads=1)
    assert (runner.input_name, runner.output_names, runner.input_dtype) == ("images", ["output0"], np.float32)
    x = _batch(3, 64)
    np.testing.assert_allclose(runner(x)[0], open_runner("torch", detector.model)(x)[0], atol=1e-4)


def test_torchscript_export_refuses_a_trace_that_disagrees(detector, tmp_path, monkeypatch):
    import generator.export.torchscript as ts

    monkeypatch.setattr(ts, "max_abs_diff", lambda *a: 0.5)
    with pytest.raises(TritonForgeError, match=r"differs from PyTorch by 5.000e-01 > 0.01 \(--tolerance\); nothing"):
        ts.export_torchscript(detector, tmp_path / "m.torchscript")
    assert list(tmp_path.iterdir()) == []


def test_folded_torchscript_takes_uint8_pixels_in_the_input_format(detector, tmp_path):
    from generator.export.input_format import InputFormat
    from generator.export.torchscript import export_torchscript, fold_input_format
    from generator.runners import open_runner

    export_torchscript(detector, tmp_path / "m.torchscript")
    fmt = InputFormat(channel_order="BGR", mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5))
    (tmp_path / "f.torchscript").write_bytes(fold_input_format(tmp_path / "m.torchscript", fmt))
    folded = open_runner("torchscript", tmp_path / "f.torchscript")
    assert folded.input_dtype == np.uint8
    pixels = np.random.default_rng(0).integers(0, 256, (2, 3, 64, 64), dtype=np.uint8)
    x = ((pixels[:, ::-1].astype(np.float32) * np.float32(fmt.scale) - np.float32([0.1, 0.2, 0.3])[:, None, None])
         / np.float32(0.5))
    np.testing.assert_allclose(folded(pixels)[0], open_runner("torch", detector.model)(x)[0], atol=1e-4)


def test_export_cli_writes_the_torchscript_beside_the_onnx(tmp_path):
    pytest.importorskip("torch")
    from click.testing import CliRunner

    from generator.cli import cli

    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(cli, ["export", "--model", "yolo-n", "--imgsz", "64", "--num-classes", "2",
                                 "--out", str(out), "--torchscript"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "m.torchscript").is_file() and "wrote " + str(tmp_path / "m.torchscript") in r.output
    assert Path(str(tmp_path / "m.torchscript") + ".export.json").is_file()
