"""``tritonforge build``: option checks, the per-TensorRT-version strategy, the build record,
the CLI without TensorRT; real plans on a GPU (``gpu`` marker, skipped elsewhere)."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from generator.cli import cli
from generator.errors import TritonForgeError, UsageError
from generator.export import tensorrt as tb
from generator.export.tensorrt import BuildOptions, plan_build

TRT10, TRT11 = "10.3.0", "11.0.0"


def opts(**kw) -> BuildOptions:
    return BuildOptions(**kw).validate()


def has_cuda_driver() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def qdq_onnx(contract_onnx, tmp_path_factory) -> Path:
    """A real Q/DQ ONNX from ``tritonforge quantize``'s code path (random calibration batch)."""
    pytest.importorskip("onnxruntime")
    from generator.compress.quantize import QuantizeConfig, quantize_onnx

    out = tmp_path_factory.mktemp("qdq") / "contract.qdq.onnx"
    calib = np.random.default_rng(0).random((8, 3, 64, 64), dtype=np.float32)
    quantize_onnx(contract_onnx, out, calib, QuantizeConfig(method="minmax", activation_type="int8",
                                                            keep_head_float=False))
    return out


@pytest.fixture(scope="module")
def fp16_onnx(contract_onnx, tmp_path_factory) -> Path:
    pytest.importorskip("onnxruntime")
    from generator.compress.quantize import convert_fp16

    return convert_fp16(contract_onnx, tmp_path_factory.mktemp("fp16") / "contract.fp16.onnx", keep_decode_float=False)


@pytest.fixture()
def trt_cache(tmp_path) -> Path:
    from generator.export.tensorrt.calib_cache import trt_cache_header, write_trt_cache

    path = tmp_path / "model.calib"
    write_trt_cache(path, {"images": 1.0, "output0": 0.5}, trt_cache_header("minmax", "8.6.1"))
    return path


# ------------------------------------------------------------------ options


@pytest.mark.parametrize("kw, message", [
    (dict(precision="bf16"), "--precision must be one of fp32, fp16, int8"),
    (dict(min_batch=0), "--min-batch must be an integer >= 1"),
    (dict(max_batch=-2, opt_batch=1), "--max-batch must be an integer >= 1"),
    (dict(min_batch=2, opt_batch=1), "--min-batch <= --opt-batch <= --max-batch, got 2 <= 1 <= 8"),
    (dict(opt_batch=16), "--min-batch <= --opt-batch <= --max-batch, got 1 <= 16 <= 8"),
    (dict(workspace=0), "--workspace must be >= 1"),
    (dict(dla_core=-1), "--dla-core must be >= 0"),
    (dict(dla_core=0, precision="fp32"), "--dla-core needs --precision fp16 or int8"),
    (dict(calibrator="entropy2", data=Path(".")), "--calibrator applies only to --precision int8"),
    (dict(precision="int8", calibrator="kl", data=Path(".")), "--calibrator must be one of entropy, entropy2, minmax"),
    (dict(precision="int8", calibrator="entropy"), "--calibrator needs --data"),
    (dict(precision="int8", calibrator="entropy", data=Path("/nowhere/at/all")), "--data not found: /nowhere/at/all"),
    (dict(precision="int8", data=Path(".")), "--data is only used with --calibrator"),
    (dict(precision="int8", calibrator="minmax", data=Path("."), calib_cache=Path("c")), "are exclusive"),
    (dict(calib_cache=Path("c.cache")), "--calib-cache applies only to --precision int8"),
    (dict(precision="int8", calib_cache=Path("/nowhere/c.cache")), "--calib-cache not found"),
    (dict(timing_cache=Path("/nowhere/t.cache")), "--timing-cache: folder does not exist"),
    (dict(nms=True, score_threshold=1.5), "--score-threshold must be in [0, 1]"),
    (dict(nms=True, iou_threshold=0.0), "--iou-threshold must be in (0, 1]"),
    (dict(nms=True, max_detections=0), "--max-detections must be >= 1"),
])
def test_bad_options_name_the_flag(kw, message):
    with pytest.raises(UsageError) as err:
        BuildOptions(**kw).validate()
    assert message in str(err.value)


def test_calibration_cache_header_names_the_calibrator(trt_cache, tmp_path):
    assert tb.calibrator_of_cache(trt_cache) == "minmax"
    assert opts(precision="int8", calib_cache=trt_cache).calib_cache == trt_cache
    bad = tmp_path / "bad.cache"
    bad.write_text("not a cache\n")
    with pytest.raises(UsageError, match=r"--calib-cache .*bad.cache: not a TensorRT calibration cache"):
        opts(precision="int8", calib_cache=bad)
    for text in ("TRT-8601-KLCalibration\n", "TRT-x-MinMaxCalibration\n", "TRT-8601-MinMaxCalibration\nimages: zz\n"):
        bad.write_text(text)  # unknown algorithm, no version code, a scale that is not hex
        with pytest.raises(UsageError, match=r"--calib-cache .*bad.cache: not a TensorRT calibration cache"):
            tb.calibrator_of_cache(bad)
    bad.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(UsageError, match=r"not a TensorRT calibration cache"):
        tb.calibrator_of_cache(bad)


def test_validate_without_files_checks_the_combination_only():
    o = BuildOptions(precision="int8", calib_cache=Path("/nowhere/c.cache"), timing_cache=Path("/nowhere/t.cache"))
    assert o.validate(files=False) is o
    with pytest.raises(UsageError, match="--dla-core needs --precision fp16 or int8"):
        BuildOptions(precision="fp32", dla_core=0).validate(files=False)


def test_choices_are_defined_once():
    assert tb.PRECISIONS == ("fp32", "fp16", "int8") and tb.CALIBRATORS == ("entropy", "entropy2", "minmax")
    from generator.export.tensorrt.calibrators import CALIBRATOR_CLASSES
    from generator.export.tensorrt.calib_cache import TRT_CACHE_ALGORITHMS

    assert tuple(CALIBRATOR_CLASSES) == tuple(TRT_CACHE_ALGORITHMS) == tb.CALIBRATORS


def test_defaults_are_fp16_batch_1_4_8_without_nms():
    o = opts()
    assert (o.precision, o.min_batch, o.opt_batch, o.max_batch, o.nms) == ("fp16", 1, 4, 8, False)
    assert tb.profile_shapes(o, 64, 96) == {"min": [1, 3, 64, 96], "opt": [4, 3, 64, 96], "max": [8, 3, 64, 96]}


# ------------------------------------------------------------------ strategy per TensorRT version


def test_fp16_is_a_builder_flag_on_10_and_an_fp16_onnx_on_11():
    p10 = plan_build(TRT10, False, opts())
    assert (p10.strongly_typed, p10.flags, p10.convert_fp16) == (False, ("FP16",), False)
    p11 = plan_build("11.2.0.5", False, opts())
    assert (p11.strongly_typed, p11.flags, p11.convert_fp16) == (True, (), True)
    assert "no FP16 builder flag" in " ".join(p11.notes)


@pytest.mark.parametrize("version", [TRT10, TRT11])
def test_fp32_is_strongly_typed_without_flags(version):
    p = plan_build(version, False, opts(precision="fp32"))
    assert (p.strongly_typed, p.flags, p.convert_fp16, p.calibrator) == (True, (), False, None)


@pytest.mark.parametrize("version", [TRT10, TRT11])
def test_qdq_onnx_is_explicit_int8_strongly_typed(version):
    p = plan_build(version, True, opts(precision="int8"))
    assert (p.strongly_typed, p.flags, p.explicit_int8, p.calibrator, p.calib_cache) == (True, (), True, None, None)
    with pytest.raises(UsageError, match=r"m.onnx has Q/DQ nodes \(explicit INT8\): pass --precision int8"):
        plan_build(version, True, opts(precision="fp16"), onnx_name="m.onnx")


def test_qdq_onnx_takes_no_calibration(trt_cache):
    with pytest.raises(UsageError, match="already calibrated .*--calib-cache applies only to a float ONNX"):
        plan_build(TRT10, True, opts(precision="int8", calib_cache=trt_cache))


def test_implicit_int8_calibrator_on_10(tmp_path, trt_cache):
    p = plan_build(TRT10, False, opts(precision="int8", calibrator="entropy2", data=tmp_path))
    assert (p.strongly_typed, p.flags, p.calibrator, p.explicit_int8) == (False, ("INT8", "FP16"), "entropy2", False)
    p = plan_build(TRT10, False, opts(precision="int8", calib_cache=trt_cache))
    assert (p.flags, p.calibrator, p.calib_cache) == (("INT8", "FP16"), None, trt_cache)
    with pytest.raises(UsageError, match="needs --calibrator KIND --data D or --calib-cache F"):
        plan_build(TRT10, False, opts(precision="int8"))


def test_implicit_int8_on_11_points_to_tritonforge_quantize(tmp_path, trt_cache):
    for o in (opts(precision="int8", calibrator="entropy", data=tmp_path), opts(precision="int8", calib_cache=trt_cache),
              opts(precision="int8")):
        with pytest.raises(TritonForgeError) as err:
            plan_build(TRT11, False, o)
        assert not isinstance(err.value, UsageError)
        assert "removed implicit INT8 calibration" in str(err.value)
        assert "tritonforge quantize --target tensorrt" in str(err.value)


def test_dla_adds_gpu_fallback_and_device_type():
    p = plan_build(TRT10, False, opts(dla_core=1))
    assert (p.device_type, p.dla_core, p.flags) == ("DLA", 1, ("FP16", "GPU_FALLBACK"))
    assert any("DLA runs FP16/INT8 layers only" in n for n in p.notes)
    p = plan_build(TRT11, False, opts(dla_core=0))
    assert (p.device_type, p.flags, p.convert_fp16, p.strongly_typed) == ("DLA", ("GPU_FALLBACK",), True, True)
    p = plan_build(TRT10, True, opts(precision="int8", dla_core=0))
    assert (p.flags, p.strongly_typed) == (("GPU_FALLBACK",), True)
    assert plan_build(TRT10, False, opts()).device_type == "GPU"


def test_fp16_onnx_builds_strongly_typed_and_only_as_fp16():
    p = plan_build(TRT10, False, opts(), fp16_onnx=True)
    assert (p.strongly_typed, p.flags, p.convert_fp16) == (True, (), False)
    with pytest.raises(UsageError, match="already FP16: pass --precision fp16"):
        plan_build(TRT11, False, opts(precision="fp32"), fp16_onnx=True)


def test_old_tensorrt_versions():
    with pytest.raises(TritonForgeError, match="TensorRT 8.5.3 is too old"):
        plan_build("8.5.3", False, opts())
    p = plan_build("8.6.1", True, opts(precision="int8"))  # JetPack 6.0: no strong typing yet
    assert (p.strongly_typed, p.flags) == (False, ("INT8",))
    with pytest.raises(TritonForgeError, match="cannot read the TensorRT version"):
        plan_build("dev", False, opts())


# ------------------------------------------------------------------ ONNX facts


def test_onnx_facts(contract_onnx, qdq_onnx, fp16_onnx):
    assert not tb.onnx_has_qdq(contract_onnx)
    assert tb.onnx_has_qdq(qdq_onnx)
    assert tb.onnx_facts(contract_onnx) == tb.OnnxFacts(has_qdq=False, fp16=False, batch=None)
    assert tb.onnx_facts(qdq_onnx).has_qdq
    facts = tb.onnx_facts(fp16_onnx)
    assert facts.fp16 and not facts.has_qdq


def test_fixed_batch_onnx_builds_only_that_batch(tmp_path):
    import onnx

    import make_models  # tests/models, on sys.path via conftest

    path = make_models.contract_onnx(tmp_path / "fixed.onnx")
    model = onnx.load(str(path))
    for vi in (model.graph.input[0], model.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, str(path))
    assert tb.onnx_facts(path).batch == 1
    with pytest.raises(UsageError, match="fixed batch size of 1: re-export .* --min-batch 1 --opt-batch 1"):
        tb.check_batch_range(1, opts(), "fixed.onnx")
    tb.check_batch_range(1, opts(min_batch=1, opt_batch=1, max_batch=1))
    tb.check_batch_range(None, opts())


# ------------------------------------------------------------------ NMS, names, records


def test_efficient_nms_fields_and_outputs():
    fields = {name: (value, kind) for name, value, kind in tb.nms_plugin_fields(opts(nms=True, max_detections=50))}
    assert fields == {"score_threshold": (0.25, "FLOAT32"), "iou_threshold": (0.45, "FLOAT32"),
                      "max_output_boxes": (50, "INT32"), "background_class": (-1, "INT32"),
                      "score_activation": (0, "INT32"), "class_agnostic": (0, "INT32"), "box_coding": (1, "INT32")}
    outs = tb.nms_outputs(50)
    assert [o["name"] for o in outs] == list(tb.NMS_OUTPUTS) == [
        "num_detections", "detection_boxes", "detection_scores", "detection_classes"]
    assert [(o["data_type"], o["dims"]) for o in outs] == [
        ("TYPE_INT32", [1]), ("TYPE_FP32", [50, 4]), ("TYPE_FP32", [50]), ("TYPE_INT32", [50])]
    assert tb.triton_dtype("DataType.HALF") == "TYPE_FP16" and tb.triton_dtype("INT32") == "TYPE_INT32"


def test_parser_errors_name_the_node():
    text = tb.format_parser_errors(Path("m.onnx"), [
        {"desc": "Unsupported operator Foo", "node": 1},
        {"desc": "bad attribute", "node": 0, "node_name": "/head/Conv", "node_operator": "Conv"},
        {"desc": "invalid graph", "node": -1}], node_names=["conv0", "foo1"], node_ops=["Conv", "Foo"])
    assert text.splitlines() == ["TensorRT could not parse m.onnx (3 errors):",
                                 "  node 'foo1' (Foo): Unsupported operator Foo",
                                 "  node '/head/Conv' (Conv): bad attribute",
                                 "  model: invalid graph"]


def _record(tmp_path, contract_onnx, **kw):
    from generator.export.signature import read_signature

    o = opts(**kw)
    plan_bytes = b"\x00plan-bytes"
    out = tmp_path / "model.plan"
    sig = read_signature(contract_onnx)
    strategy = plan_build(TRT10, False, o)
    info = tb.make_build_info(onnx_path=contract_onnx, onnx_sha256="ab", plan_path=out, plan_bytes=plan_bytes, opts=o,
                              strategy=strategy, gpu={"name": "GPU", "compute_capability": "8.9"}, sig=sig,
                              profile=tb.profile_shapes(o, sig.height, sig.width), inputs=[], outputs=[],
                              command=tb.canonical_command(contract_onnx, out, o), seconds=1.0, notes=strategy.notes)
    tb.write_files({out: plan_bytes, tb.build_info_path(out): json.dumps(info).encode()})
    return out, info


def test_build_record_round_trip(tmp_path, contract_onnx):
    out, info = _record(tmp_path, contract_onnx, nms=True, max_detections=20, score_threshold=0.3, max_batch=16)
    assert tb.build_info_path(out) == tmp_path / "build.json"
    got = tb.read_build_info(out)
    assert got == info
    assert (got["precision"], got["min_batch"], got["opt_batch"], got["max_batch"]) == ("fp16", 1, 4, 16)
    assert (got["nms"], got["max_detections"], got["score_threshold"], got["iou_threshold"]) == (True, 20, 0.3, 0.45)
    assert got["nms_settings"]["outputs"] == list(tb.NMS_OUTPUTS)
    assert got["profile"] == {"input": "images", "min": [1, 3, 64, 64], "opt": [4, 3, 64, 64], "max": [16, 3, 64, 64]}
    assert got["onnx"] == {"file": contract_onnx.name, "sha256": "ab"}
    assert got["command"].startswith("tritonforge build --onnx ") and "--nms --score-threshold 0.3" in got["command"]
    assert got["strategy"]["flags"] == ["FP16"] and got["options"]["max_detections"] == 20

    out, _ = _record(tmp_path, contract_onnx)  # rebuilt without NMS: the record is replaced
    got = tb.read_build_info(out)
    assert got["nms"] is False and got["max_detections"] is None and got["nms_settings"] is None


def test_build_record_absent_stale_or_foreign(tmp_path, contract_onnx):
    assert tb.read_build_info(tmp_path / "model.plan") is None
    out, _ = _record(tmp_path, contract_onnx)
    out.write_bytes(b"rebuilt by trtexec")
    with pytest.raises(UsageError, match="describes another plan .*sha256 differs"):
        tb.read_build_info(out)
    tb.build_info_path(out).write_text(json.dumps({"max_batch": 4}))
    with pytest.raises(UsageError, match="not a tritonforge build record \\(no precision, min_batch, opt_batch, nms\\)"):
        tb.read_build_info(out)
    tb.build_info_path(out).write_text("{")
    with pytest.raises(UsageError, match="unreadable build record"):
        tb.read_build_info(out)


def test_write_files_leaves_nothing_on_failure(tmp_path, monkeypatch):
    import generator.atomic

    real = generator.atomic.os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(generator.atomic.os, "replace", flaky)
    with pytest.raises(OSError, match="disk full"):
        tb.write_files({tmp_path / "model.plan": b"p", tmp_path / "build.json": b"{}"})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(has_cuda_driver(), reason="a CUDA driver is present")
def test_no_gpu_is_a_clear_error():
    with pytest.raises(TritonForgeError, match="no CUDA driver found .*needs an NVIDIA GPU"):
        tb.cuda_device()


# ------------------------------------------------------------------ the orchestration, with a stand-in TensorRT


def fake_tensorrt(version: str = TRT10):
    """Just enough of the ``tensorrt`` module for ``build_plan``: records the builder flags."""
    from unittest import mock

    trt = mock.MagicMock(name="tensorrt")
    trt.__version__ = version
    trt.ILogger = type("ILogger", (), {"__init__": lambda self: None,
                                       "Severity": types.SimpleNamespace(ERROR=1, WARNING=2)})
    tensor = types.SimpleNamespace(name="images", shape=(-1, 3, 64, 64), dtype=types.SimpleNamespace(name="FLOAT"))
    raw = types.SimpleNamespace(name="output0", shape=(-1, 7, 64), dtype=types.SimpleNamespace(name="FLOAT"))
    network = trt.Builder.return_value.create_network.return_value
    network.num_inputs, network.num_outputs = 1, 1
    network.get_input.return_value, network.get_output.return_value = tensor, raw
    trt.OnnxParser.return_value.parse_from_file.return_value = True
    trt.Builder.return_value.build_serialized_network.return_value = b"\x00engine"
    config = trt.Builder.return_value.create_builder_config.return_value
    config.get_timing_cache.return_value.serialize.return_value = b"timing"
    return trt, config


def test_build_plan_writes_plan_record_and_timing_cache_together(contract_onnx, tmp_path, monkeypatch):
    from generator.export.tensorrt import build as build_module

    trt, config = fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(build_module, "cuda_device", lambda: {"name": "Fake GPU", "compute_capability": "9.0"})
    out = tmp_path / "model.plan"
    said = []
    info = tb.build_plan(contract_onnx, out, opts(max_batch=4, timing_cache=tmp_path / "timing.cache"),
                         command=["tritonforge", "build", "--onnx", "a b.onnx"], echo=said.append)
    assert out.read_bytes() == b"\x00engine" and (tmp_path / "timing.cache").read_bytes() == b"timing"
    assert tb.read_build_info(out) == info and info["command"] == "tritonforge build --onnx 'a b.onnx'"
    assert info["strategy"]["flags"] == ["FP16"] and info["gpu"]["name"] == "Fake GPU"
    assert info["inputs"] == [{"name": "images", "data_type": "TYPE_FP32", "dims": [3, 64, 64]}]
    config.set_flag.assert_called_once_with(trt.BuilderFlag.FP16)
    assert any("building on Fake GPU" in line for line in said)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build.json", "model.plan", "timing.cache"]

    info = tb.build_plan(contract_onnx, out, opts(max_batch=4))  # no command: the canonical one
    assert info["command"].startswith("tritonforge build --onnx ") and "--max-batch 4" in info["command"]


def test_failed_build_leaves_nothing(contract_onnx, tmp_path, monkeypatch):
    from generator.export.tensorrt import build as build_module

    trt, _ = fake_tensorrt()
    trt.Builder.return_value.build_serialized_network.return_value = None
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(build_module, "cuda_device", lambda: {"name": "Fake GPU", "compute_capability": "9.0"})
    with pytest.raises(TritonForgeError, match="TensorRT failed to build contract.onnx"):
        tb.build_plan(contract_onnx, tmp_path / "model.plan", opts(max_batch=4, timing_cache=tmp_path / "t.cache"))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ CLI (no TensorRT needed)


def test_cli_without_tensorrt_exits_3_and_writes_nothing(contract_onnx, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as if not installed, also on GPU hosts
    out = tmp_path / "out"
    out.mkdir()
    r = CliRunner().invoke(cli, ["build", "--onnx", str(contract_onnx), "--out", str(out / "model.plan"),
                                 "--timing-cache", str(out / "timing.cache"), "--nms"])
    assert r.exit_code == 3, r.output
    assert "tensorrt is not installed" in r.output and "pip install 'tritonforge[gpu]'" in r.output
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--min-batch", "0"], "--min-batch must be an integer >= 1"),
    (["--opt-batch", "16"], "--min-batch <= --opt-batch <= --max-batch"),
    (["--calibrator", "entropy2", "--data", "."], "--calibrator applies only to --precision int8"),
    (["--precision", "int8", "--calibrator", "minmax"], "--calibrator needs --data"),
    (["--precision", "int8", "--calibrator", "minmax", "--data", ".", "--calib-cache", "x.cache"], "are exclusive"),
    (["--precision", "fp32", "--dla-core", "0"], "--dla-core needs --precision fp16 or int8"),
    (["--nms", "--iou-threshold", "2"], "--iou-threshold must be in (0, 1]"),
    (["--precision", "int4"], "Invalid value for '--precision'"),
    (["--calibrator", "kl"], "Invalid value for '--calibrator'"),
])
def test_cli_bad_options_exit_2_naming_the_flag(contract_onnx, tmp_path, args, message):
    r = CliRunner().invoke(cli, ["build", "--onnx", str(contract_onnx), "--out", str(tmp_path / "m.plan"), *args])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_inputs_exit_2(contract_onnx, tmp_path):
    r = CliRunner().invoke(cli, ["build", "--onnx", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "m.plan")])
    assert r.exit_code == 2 and "ONNX file not found" in r.output
    r = CliRunner().invoke(cli, ["build", "--onnx", str(contract_onnx), "--out", str(tmp_path / "no" / "m.plan")])
    assert r.exit_code == 2 and "output folder does not exist" in r.output
    r = CliRunner().invoke(cli, ["build", "--onnx", str(contract_onnx), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--out must be a file" in r.output


def test_build_help_does_not_import_torch_or_tensorrt():
    code = ("import sys; from click.testing import CliRunner; from generator.cli import cli; "
            "r = CliRunner().invoke(cli, ['build', '--help']); assert r.exit_code == 0, r.output; "
            "assert '--calib-cache' in r.output and '--nms / --no-nms' in r.output, r.output; "
            "heavy = [m for m in ('torch', 'onnxruntime', 'cv2', 'tensorrt', 'onnx') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


# ------------------------------------------------------------------ real TensorRT builds (GPU)


def _engine(plan: bytes):
    trt = pytest.importorskip("tensorrt")
    trt.init_libnvinfer_plugins(None, "")
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan)
    assert engine is not None, "the plan does not deserialize"
    return trt, engine


def _run(plan: bytes, x: np.ndarray) -> dict:
    """Outputs of the plan for input ``x`` (pycuda for the device buffers)."""
    cuda = pytest.importorskip("pycuda.driver")
    import pycuda.autoinit  # noqa: F401

    trt, engine = _engine(plan)
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    (inp,) = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    x = np.ascontiguousarray(x, dtype=np.float32)
    assert context.set_input_shape(inp, x.shape)
    device = {inp: cuda.mem_alloc(x.nbytes)}
    cuda.memcpy_htod(device[inp], x)
    host = {}
    for name in names:
        if name != inp:
            host[name] = np.empty(tuple(context.get_tensor_shape(name)), dtype=trt.nptype(engine.get_tensor_dtype(name)))
            device[name] = cuda.mem_alloc(max(1, host[name].nbytes))
    for name, buf in device.items():
        context.set_tensor_address(name, int(buf))
    stream = cuda.Stream()
    assert context.execute_async_v3(stream.handle)
    stream.synchronize()
    for name, array in host.items():
        cuda.memcpy_dtoh(array, device[name])
    return host


def _ort(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.gpu
@pytest.mark.parametrize("precision, atol", [("fp32", 1e-3), ("fp16", 2e-2)])
def test_gpu_plan_matches_onnxruntime(contract_onnx, tmp_path, precision, atol):
    out = tmp_path / "1" / "model.plan"
    out.parent.mkdir()
    timing = tmp_path / "timing.cache"
    args = ["build", "--onnx", str(contract_onnx), "--out", str(out), "--precision", precision, "--min-batch", "1",
            "--opt-batch", "2", "--max-batch", "4", "--timing-cache", str(timing)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    plan = out.read_bytes()
    trt, engine = _engine(plan)
    assert [tuple(s) for s in engine.get_tensor_profile_shape("images", 0)] == [(1, 3, 64, 64), (2, 3, 64, 64),
                                                                                  (4, 3, 64, 64)]
    info = tb.read_build_info(out)
    assert (info["precision"], info["min_batch"], info["opt_batch"], info["max_batch"], info["nms"]) == \
        (precision, 1, 2, 4, False)
    assert info["tensorrt"] == trt.__version__ and info["gpu"]["name"] and "." in info["gpu"]["compute_capability"]
    assert info["onnx"]["file"] == "contract.onnx" and info["plan"]["bytes"] == len(plan)
    assert info["outputs"] == [{"name": "output0", "data_type": "TYPE_FP32", "dims": [7, 64]}]
    assert info["inputs"] == [{"name": "images", "data_type": "TYPE_FP32", "dims": [3, 64, 64]}]
    assert timing.stat().st_size > 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["build.json", "model.plan"]
    x = np.random.default_rng(1).random((3, 3, 64, 64), dtype=np.float32)
    np.testing.assert_allclose(_run(plan, x)["output0"], _ort(contract_onnx, x), atol=atol)
    again = CliRunner().invoke(cli, args)  # the timing cache is read back
    assert again.exit_code == 0, again.output


@pytest.mark.gpu
def test_gpu_engine_nms_outputs_agree_with_the_postprocess(tiny_yolo_onnx, tmp_path):
    from generator.runtime.boxes import postprocess

    out = tmp_path / "model.plan"
    o = opts(precision="fp32", max_batch=2, opt_batch=2, nms=True, max_detections=20)
    info = tb.build_plan(tiny_yolo_onnx, out, o, command=["tritonforge", "build", "--nms"])
    assert info["command"] == "tritonforge build --nms"
    assert info["outputs"] == tb.nms_outputs(20)
    trt, engine = _engine(out.read_bytes())
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    assert names[1:] == list(tb.NMS_OUTPUTS) and "output0" not in names
    assert engine.get_tensor_dtype("num_detections") == trt.DataType.INT32
    assert engine.get_tensor_dtype("detection_classes") == trt.DataType.INT32
    x = np.random.default_rng(2).random((2, 3, 128, 128), dtype=np.float32)
    got = _run(out.read_bytes(), x)
    assert got["num_detections"].shape == (2, 1) and got["detection_boxes"].shape == (2, 20, 4)
    raw = _ort(tiny_yolo_onnx, x)
    identity = np.array([[1, 0, 0, 128, 128]] * 2, np.float32)
    num, boxes, scores, classes = postprocess(raw, identity, 0.25, 0.45, 20)
    for i in range(2):
        assert 0 < got["num_detections"][i, 0] <= 20
        assert got["detection_scores"][i, 0] == pytest.approx(scores[i, 0], abs=1e-4)
        assert got["detection_classes"][i, 0] == classes[i, 0]
        np.testing.assert_allclose(np.clip(got["detection_boxes"][i, 0], 0, 128), boxes[i, 0], atol=1e-2)
