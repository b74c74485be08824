"""INT8 post-training quantization (explicit Q/DQ), calibration inputs, TensorRT caches, FP16."""

from __future__ import annotations

import json
import re
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from generator.compress import quantize as q
from generator.compress.calibration import ImageBatchReader, calibration_images, calibration_paths
from generator.export.tensorrt import calib_cache
from generator.errors import MissingDependencyError, TritonForgeError, UsageError
from generator.runtime.imaging import preprocess_bytes
from generator.samples import write_samples

S = 128  # tiny_yolo_onnx's input size
HEAD_CONV = re.compile(r"^/head/(box|cls)\.[0-2]/(box|cls)\.[0-2]\.2/Conv$")


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("calib") / "calib"
    write_samples(folder, 10)
    return folder


@pytest.fixture(scope="module")
def calib(calib_dir) -> np.ndarray:
    return calibration_images(calib_dir, S, S, 10)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> np.ndarray:
    """Images the calibration never saw, to compare FP32 and INT8 on."""
    folder = tmp_path_factory.mktemp("held_out")
    write_samples(folder, 12, seed=100)
    return calibration_images(folder, S, S, 12)


@pytest.fixture(scope="module")
def lively_onnx(tmp_path_factory, calib) -> Path:
    """A yolo-n whose outputs depend on the image (random weights rescaled so every conv's
    output has unit spread, LSUV-style): tiny_yolo_onnx's random weights give outputs that
    are constant to 1e-6 over images, so any quantized copy looks "close" to them."""
    pytest.importorskip("torch")
    from make_models import make_lively

    from generator.export.onnx_export import export_onnx
    from generator.models.checkpoint import build_detector

    det = build_detector("yolo-n", 3, S, ["circle", "rectangle", "triangle"], seed=0)
    make_lively(det, calib, head_gain=2.0, cls_bias_mean=-1.0)
    path = tmp_path_factory.mktemp("lively") / "lively.onnx"
    export_onnx(det, path, check_images=calib[:2])
    return path


@pytest.fixture(scope="module")
def int8(tmp_path_factory, tiny_yolo_onnx, calib):
    """tiny_yolo_onnx quantized once (minmax, so ranges are plain min/max), with a TensorRT
    cache; run from an empty working directory to see that nothing is left there."""
    import os

    out = tmp_path_factory.mktemp("int8") / "tiny.int8.onnx"
    cache = out.with_name("tiny.cache")
    cwd, here = tmp_path_factory.mktemp("cwd"), os.getcwd()
    os.chdir(cwd)
    try:
        report = q.quantize_onnx(tiny_yolo_onnx, out, calib, q.QuantizeConfig(method="minmax", trt_cache=cache,
                                                                         exclude=["/backbone/stem/*"]),
                                 command=["tritonforge", "quantize", "--method", "minmax"])
    finally:
        os.chdir(here)
    assert list(cwd.iterdir()) == [], "quantization left files in the working directory"
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.cache", "tiny.int8.onnx",
                                                            "tiny.int8.onnx.quantize.json"]
    return out, cache, report


def run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def nodes(path: Path):
    import onnx

    model = onnx.load(str(path))
    return model, {n.name: n for n in model.graph.node}


# ------------------------------------------------------------------ calibration images


def test_calibration_images_match_the_server_preprocessing(calib_dir, calib):
    paths = calibration_paths(calib_dir, 10)
    assert [p.name for p in paths] == sorted(p.name for p in calib_dir.iterdir())
    assert calib.shape == (10, 3, S, S) and calib.dtype == np.float32
    assert 0.0 <= calib.min() and calib.max() <= 1.0
    np.testing.assert_array_equal(calib[3], preprocess_bytes(paths[3].read_bytes(), S, S)[0])
    # fewer than available: evenly spaced, deterministic, both ends included
    picked = calibration_paths(calib_dir, 4, min_images=4)
    assert [p.name for p in picked] == ["sample_00.jpg", "sample_03.png", "sample_06.jpg", "sample_09.png"]
    assert calibration_images(calib_dir, 64, 96, 99).shape == (10, 3, 64, 96)  # non-square, capped at 10


def test_calibration_images_from_a_dataset_use_the_train_split(tmp_path):
    write_samples(tmp_path / "images" / "train", 8)
    write_samples(tmp_path / "images" / "val", 2, seed=50)
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [a, b, c]\n")
    paths = calibration_paths(tmp_path, 100)
    assert len(paths) == 8 and all(p.parent.name == "train" for p in paths)
    assert calibration_images(tmp_path / "data.yaml", 64, 64, 8).shape == (8, 3, 64, 64)


def test_calibration_errors_name_the_problem(tmp_path):
    with pytest.raises(UsageError, match="calibration source not found: .*nowhere"):
        calibration_images(tmp_path / "nowhere", S, S, 8)
    few = tmp_path / "few"
    write_samples(few, 3)
    (few / "notes.txt").write_text("not an image")
    with pytest.raises(UsageError, match=r"found 3 images under .*few; calibration needs at least 8"):
        calibration_images(few, S, S, 8)
    bad = tmp_path / "calib"
    write_samples(bad, 8)
    (bad / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(UsageError, match=r"calib/bad\.jpg: cannot decode"):
        calibration_images(bad, S, S, 9)


def test_image_batch_reader_is_an_ort_calibration_data_reader(calib):
    from onnxruntime.quantization import CalibrationDataReader

    reader = ImageBatchReader("images", calib, batch_size=4)
    assert isinstance(reader, CalibrationDataReader) and len(reader) == 3
    shapes = [b["images"].shape[0] for b in reader]
    assert shapes == [4, 4, 2] and reader.get_next() is None
    reader.set_range(2, 5)
    assert [b["images"].shape[0] for b in reader] == [3]


# ------------------------------------------------------------------ the Q/DQ model


def test_head_exclusion_found_from_the_graph(tiny_yolo_onnx, contract_onnx):
    import onnx

    excluded = q.sensitive_nodes(onnx.load(str(tiny_yolo_onnx)))
    heads = [e.name for e in excluded if e.reason == q.REASON_HEAD_CONV]
    assert sorted(heads) == sorted(f"/head/{b}.{i}/{b}.{i}.2/Conv" for b in ("box", "cls") for i in range(3))
    by_name = {e.name: e for e in excluded}
    assert by_name["/head/dfl/conv/Conv"].reason == q.REASON_DFL
    assert by_name["/head/dfl/Softmax"].reason == q.REASON_DFL
    assert by_name["/head/Sigmoid"].reason == q.REASON_SCORES
    tail_ops = {e.op_type for e in excluded if e.reason == q.REASON_DECODE}
    assert {"Concat", "Split", "Sub", "Add", "Div", "Mul"} <= tail_ops
    # nothing from the backbone, the neck or the head's inner convolutions
    assert not [e for e in excluded if not e.name.startswith("/head/")]
    assert not [e for e in excluded if re.search(r"\.[01]/conv/Conv$", e.name)]
    # the hand-built contract graph: its one Conv is the head, Reshape + Sigmoid the tail
    contract = q.sensitive_nodes(onnx.load(str(contract_onnx)))
    assert [e.op_type for e in contract] == ["Conv", "Reshape", "Sigmoid"]


def test_qdq_model_keeps_the_head_float_and_reports_it(int8, tiny_yolo_onnx):
    out, _, report = int8
    model, by_name = nodes(out)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 50 and ops.count("DequantizeLinear") > 100
    initializers = {i.name: i for i in model.graph.initializer}
    dq_inputs = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    heads = [name for name in by_name if HEAD_CONV.match(name)]
    assert len(heads) == 6
    for name in heads + ["/head/dfl/conv/Conv", "/backbone/stem/conv/Conv"]:
        weight = by_name[name].input[1]
        assert weight in initializers and initializers[weight].data_type == 1, f"{name} has quantized weights"
    # the other convolutions carry int8 weights through a DequantizeLinear
    inner = by_name["/head/cls.0/cls.0.1/conv/Conv"]
    assert initializers[dq_inputs[inner.input[1]]].data_type == 3  # INT8
    for tail in ("/head/Sigmoid", "/head/dfl/Softmax", "/head/Concat_25"):
        assert not any(t in dq_inputs for t in by_name[tail].input), f"{tail} reads a dequantized tensor"
    assert set(heads) == set(report.head_convs)
    assert len(report.quantized_nodes) == 74 - 6 - 1 - 1  # all convs but heads, DFL and the excluded stem
    assert any(e.name == "/backbone/stem/conv/Conv" and e.reason == q.REASON_USER for e in report.excluded)
    text = report.summary()
    assert "head output convolution" in text and "/head/cls.2/cls.2.2/Conv" in text and "minmax" in text
    data = report.to_json()
    assert data["calibration_images"] == 10 and data["method"] == "minmax" and not data["per_channel"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta[q.META_QUANTIZATION])["format"] == "int8-qdq"
    assert json.loads(meta["tritonforge.names"]) == ["circle", "rectangle", "triangle"]
    repro = json.loads(Path(str(out) + ".quantize.json").read_text())
    assert repro["options"]["method"] == "minmax" and repro["onnxruntime"] and repro["source"] == str(tiny_yolo_onnx)
    assert repro["command"] == "tritonforge quantize --method minmax"  # the caller's, never sys.argv


def test_qdq_model_runs_with_dynamic_batch(int8, calib):
    out, _, _ = int8
    one = np.concatenate([run(out, calib[i:i + 1]) for i in range(4)])
    four = run(out, calib[:4])
    assert four.shape == (4, 7, (S // 8) ** 2 + (S // 16) ** 2 + (S // 32) ** 2)
    np.testing.assert_allclose(four, one, atol=1e-4)


def test_int8_activations_are_symmetric_for_tensorrt(tiny_yolo_onnx, calib, tmp_path):
    """TensorRT's explicit quantization takes int8 with zero point 0 only."""
    from onnx import numpy_helper

    out = tmp_path / "s8.onnx"
    q.quantize_onnx(tiny_yolo_onnx, out, calib, q.QuantizeConfig(method="minmax", activation_type="int8",
                                                                 per_channel=True))
    model, _ = nodes(out)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert run(out, calib[:2]).shape[0] == 2


def _agreement(ref: np.ndarray, got: np.ndarray, k: int = 100):
    """(mean |delta class probability|, share of the k top-scoring anchors both agree on)."""
    dp = np.abs(got[:, 4:] - ref[:, 4:]).mean()
    top = lambda y, i: set(np.argsort(-y[i, 4:].max(0))[:k])  # noqa: E731
    overlap = np.mean([len(top(ref, i) & top(got, i)) / k for i in range(len(ref))])
    return float(dp), float(overlap)


@pytest.mark.parametrize("method, per_channel", [("entropy", False), ("minmax", True), ("percentile", False)])
def test_int8_outputs_stay_close_to_fp32(lively_onnx, calib, held_out, tmp_path, method, per_channel):
    ref = run(lively_onnx, held_out)
    spread = ref[:, 4:].std(axis=0).mean()
    assert spread > 0.05  # the model really reacts to the image
    out = tmp_path / "m.int8.onnx"
    report = q.quantize_onnx(lively_onnx, out, calib, q.QuantizeConfig(method=method, per_channel=per_channel))
    assert report.method == method and report.per_channel == per_channel
    dp, overlap = _agreement(ref, run(out, held_out))
    # measured here: dp 0.026 of a spread 0.071 (onnxruntime 1.23 and 1.32 alike); the control below (head
    # quantized: > 5x worse) is what shows the float head matters
    assert dp < 0.03 and dp < 0.4 * spread, (dp, spread)
    assert overlap > 0.7
    if method == "entropy":  # the control: quantizing the head and decode tail is far worse
        bad = q.quantize_onnx(lively_onnx, tmp_path / "head.int8.onnx", calib,
                              q.QuantizeConfig(method=method, keep_head_float=False))
        assert not bad.excluded
        bad_dp, bad_overlap = _agreement(ref, run(tmp_path / "head.int8.onnx", held_out))
        assert bad_dp > 5 * dp and bad_overlap < overlap


def test_bad_options_are_clear_errors_and_write_nothing(tiny_yolo_onnx, calib, tmp_path):
    out = tmp_path / "m.int8.onnx"
    with pytest.raises(UsageError, match="unknown calibration method 'kl'; choose one of: entropy, minmax, percentile"):
        q.quantize_onnx(tiny_yolo_onnx, out, calib, q.QuantizeConfig(method="kl"))
    with pytest.raises(UsageError, match="unknown activation type 'int4'"):
        q.quantize_onnx(tiny_yolo_onnx, out, calib, q.QuantizeConfig(activation_type="int4"))
    with pytest.raises(UsageError, match=r"must be \[N, 3, 128, 128\]"):
        q.quantize_onnx(tiny_yolo_onnx, out, calib[:, :, :64])
    with pytest.raises(UsageError, match=r"--exclude '/head/cls\.0/cls\.0\.9/Conv' matches no node.*did you mean"):
        q.quantize_onnx(tiny_yolo_onnx, out, calib, q.QuantizeConfig(exclude=["/head/cls.0/cls.0.9/Conv"]))
    with pytest.raises(UsageError, match="ONNX file not found"):
        q.quantize_onnx(tmp_path / "missing.onnx", out, calib)
    assert list(tmp_path.iterdir()) == []


def test_onnx_without_the_detector_contract_is_refused(tmp_path, calib):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(UsageError, match=r"input 'x' must be \[N, 3, H, W\]"):
        q.quantize_onnx(path, tmp_path / "out.onnx", calib)
    assert not (tmp_path / "out.onnx").exists()


def test_failure_midway_leaves_nothing(tiny_yolo_onnx, calib, tmp_path, monkeypatch):
    import onnxruntime.quantization as oq

    def broken(*args, **kwargs):
        Path(args[1]).write_bytes(b"half a model")
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(oq, "quantize_static", broken)
    out, cache = tmp_path / "m.int8.onnx", tmp_path / "m.cache"
    with pytest.raises(TritonForgeError, match="nothing written: RuntimeError: simulated crash"):
        q.quantize_onnx(tiny_yolo_onnx, out, calib, q.QuantizeConfig(method="minmax", trt_cache=cache))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ TensorRT cache


def test_trt_cache_holds_amax_over_127_per_tensor(int8, tiny_yolo_onnx, calib):
    _, cache, report = int8
    lines = cache.read_text().splitlines()
    assert lines[0] == "TRT-8600-MinMaxCalibration"
    assert all(re.fullmatch(r"\S+: [0-9a-f]{8}", line) for line in lines[1:])
    assert report.trt_cache == cache and report.trt_cache_tensors == len(lines) - 1 > 200
    header, scales = calib_cache.read_trt_cache(cache)
    ranges = q.collect_ranges(tiny_yolo_onnx, calib, "minmax")
    assert lines[1].startswith("images: ")  # the network input, first
    for name, scale in scales.items():
        amax = max(abs(ranges[name][0]), abs(ranges[name][1]))
        assert scale > 0 and scale == pytest.approx(amax / 127, rel=1e-6), name
    # independent of ORT: the input's range is the pixels', the output's what FP32 gives
    assert scales["images"] == pytest.approx(float(calib.max()) / 127, rel=1e-6)
    y = run(tiny_yolo_onnx, calib)
    assert scales["output0"] == pytest.approx(float(np.abs(y).max()) / 127, rel=1e-5)
    assert "/head/cls.0/cls.0.2/Conv_output_0" in scales  # the cache covers every tensor; the builder decides


def test_write_trt_cache_format(tmp_path):
    path = tmp_path / "c.cache"
    n = calib_cache.write_trt_cache(path, {"images": 1.0, "a/b:0": 127.0 * 0.5, "zero": 0.0, "nan": float("nan")})
    assert n == 2
    assert path.read_text() == "TRT-8600-EntropyCalibration2\nimages: 3c010204\na/b:0: 3f000000\n"
    assert struct.unpack(">f", bytes.fromhex("3c010204"))[0] == pytest.approx(1 / 127)
    assert calib_cache.read_trt_cache(path) == ("TRT-8600-EntropyCalibration2", {"images": pytest.approx(1 / 127), "a/b:0": 0.5})
    assert calib_cache.trt_cache_header("minmax", "10.3.0.26") == "TRT-100300-MinMaxCalibration"
    assert calib_cache.trt_cache_header("entropy2", "8.6.1") == "TRT-8601-EntropyCalibration2"


# ------------------------------------------------------------------ FP16


def test_fp16_keeps_float32_io_and_close_outputs(lively_onnx, held_out, tmp_path):
    import onnx

    from generator.export.signature import read_signature

    out = q.convert_fp16(lively_onnx, tmp_path / "m.fp16.onnx")
    sig = read_signature(out)
    assert (sig.input_dtype, sig.output_dtype) == ("FP32", "FP32")
    model = onnx.load(str(out))
    assert sum(i.data_type == 10 for i in model.graph.initializer) > 70  # FP16 weights
    ref, got = run(lively_onnx, held_out), run(out, held_out)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got[:, 4:], ref[:, 4:], atol=1e-2)  # probabilities, 0..1
    box_scale = np.abs(ref[:, :4]).max()
    assert np.abs(got[:, :4] - ref[:, :4]).max() < 1e-2 * box_scale


# ------------------------------------------------------------------ legacy TensorRT calibrators


def test_trt_calibrators_import_lazily_and_say_what_to_install(monkeypatch, calib, tmp_path):
    from generator.export.tensorrt import calibrators as trt_calibrators

    assert "tensorrt" not in sys.modules or sys.modules["tensorrt"] is not None
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'tritonforge\[gpu\]'"):
        trt_calibrators.make_calibrator("entropy2", calib, tmp_path / "c.cache", batch_size=2)
    with pytest.raises(UsageError, match="unknown TensorRT calibrator 'kl'"):
        trt_calibrators.make_calibrator("kl", calib, tmp_path / "c.cache")


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["entropy2", "minmax"])
def test_trt_calibrator_builds_an_int8_engine(kind, tiny_yolo_onnx, calib, tmp_path):
    trt = pytest.importorskip("tensorrt")
    from generator.export.tensorrt.calibrators import make_calibrator

    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        with pytest.raises(TritonForgeError, match="tritonforge quantize"):
            make_calibrator(kind, calib, tmp_path / "c.cache", batch_size=2)
        return
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(tiny_yolo_onnx.read_bytes()), parser.get_error(0)
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("images", (1, 3, S, S), (2, 3, S, S), (4, 3, S, S))
    config.add_optimization_profile(profile)
    config.set_calibration_profile(profile)
    config.set_flag(trt.BuilderFlag.INT8)
    cache = tmp_path / "c.cache"
    config.int8_calibrator = make_calibrator(kind, calib, cache, batch_size=2)
    assert builder.build_serialized_network(network, config) is not None
    assert cache.read_text().startswith("TRT-")
