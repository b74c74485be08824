"""``tritonforge bench --variants``: PyTorch, ONNX Runtime (FP32, INT8) and TensorRT rows,
latency and mAP measured in one run, on tiny real models."""

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from generator import bench
from generator.cli import cli
from generator.data.synth import synthesize
from generator.errors import TritonForgeError
from generator.models.checkpoint import build_detector, save_checkpoint
from generator.report import format_table, latency_ratios, measure_variants, runner_latency

NAMES = ["circle", "rectangle", "triangle"]
SIZE = 64


def _pseudo_label(data_yaml: Path, det, split: str = "val") -> None:
    """Rewrite ``split``'s labels as the model's own top detections, so that its mAP is high
    (a random-weight model scores 0 on the real labels, and 0 == 0 proves nothing)."""
    import cv2

    from generator.evaluation.predictors import Thresholds, offline_detector
    from generator.runners import open_runner

    detect = offline_detector(open_runner("torch", det.model), SIZE, SIZE, Thresholds(score=0.0, iou=0.3, max_detections=3))
    root = data_yaml.parent
    for image in sorted((root / "images" / split).iterdir()):
        h, w = cv2.imread(str(image)).shape[:2]
        (boxes, _, classes), = detect([image])
        lines = []
        for (x1, y1, x2, y2), c in zip(np.clip(boxes, 0, [w, h, w, h]), classes):
            if x2 - x1 > 2 and y2 - y1 > 2:
                lines.append(f"{int(c)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} "
                             f"{(y2 - y1) / h:.6f}")
        (root / "labels" / split / f"{image.stem}.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Data labelled by the model itself, its checkpoint, and an INT8 Q/DQ ONNX of it."""
    from generator.compress.calibration import calibration_images
    from generator.compress.quantize import QuantizeConfig, quantize_onnx
    from generator.export.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("bench")
    data = synthesize(root / "data", 24, seed=4, imgsz=SIZE, classes=3, progress=False)
    det = build_detector("yolo-n", 3, SIZE, NAMES, seed=0)
    save_checkpoint(det, root / "m.pt")
    _pseudo_label(Path(data), det)
    export_onnx(det, root / "m.onnx")
    quantize_onnx(root / "m.onnx", root / "m.int8.onnx", calibration_images(root / "data", SIZE, SIZE, 16),
                  QuantizeConfig(method="minmax"))
    plan = root / "plan" / "model.plan"
    plan.parent.mkdir()
    plan.write_bytes(b"a TensorRT plan from another machine")
    return root, Path(data)


@pytest.fixture(scope="module")
def report(models, tmp_path_factory):
    """One CLI run: a checkpoint, an INT8 ONNX and a plan, on a machine without TensorRT."""
    root, data = models
    out = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("generator.runners.tensorrt_runner.tensorrt_unavailable", lambda: "tensorrt is not installed")
        r = CliRunner().invoke(cli, ["bench", "--data", str(data), "--json", "--out", str(out),
                                     "--runtimes", "pytorch,onnxruntime", "--variants",
                                     f"m={root / 'm.pt'},int8={root / 'm.int8.onnx'},"
                                     f"trt={root / 'plan' / 'model.plan'}"])
    assert r.exit_code == 0, r.output
    return {row["name"]: row for row in json.loads(r.output)["variants"]}, out


def test_rows_per_runtime_in_order(report):
    rows, _ = report
    assert list(rows) == ["m (pytorch)", "m (onnxruntime)", "int8 (onnxruntime)", "trt (tensorrt)"]
    assert [r["runtime"] for r in rows.values()] == ["pytorch", "onnxruntime", "onnxruntime", "tensorrt"]


def test_checkpoint_gives_pytorch_and_onnxruntime_rows_that_agree(report):
    rows, _ = report
    pt, ort = rows["m (pytorch)"], rows["m (onnxruntime)"]
    assert pt["map50"] > 0.2, "the pseudo labels are the model's own detections"
    assert pt["map50_95"] == pytest.approx(ort["map50_95"], abs=0.01)
    assert pt["map50"] == pytest.approx(ort["map50"], abs=0.01)
    for row in (pt, ort):
        assert row["latency_ms_b1"] > 0 and row["latency_ms_b8"] > 0
        assert row["params"] == pt["params"] > 0 and row["gflops"] == pt["gflops"] > 0
        assert "note" not in row


def test_int8_onnx_gets_its_row(report):
    rows, _ = report
    q = rows["int8 (onnxruntime)"]
    assert q["latency_ms_b1"] > 0 and q["latency_ms_b8"] > 0 and q["params"] > 0
    assert 0.0 <= q["map50_95"] <= q["map50"] <= 1.0
    assert q["gflops"] is None  # no PyTorch model behind an ONNX file


def test_plan_without_tensorrt_is_a_skipped_row(report):
    rows, out = report
    trt = rows["trt (tensorrt)"]
    assert trt["note"] == bench.TENSORRT_SKIPPED
    assert all(trt[k] is None for k in ("latency_ms_b1", "latency_ms_b8", "map50_95", "map50"))
    saved = json.loads((out / "report.json").read_text())["variants"]
    assert [r["name"] for r in saved] == list(rows) and saved[-1]["runtime"] == "tensorrt"
    assert (out / "report.png").stat().st_size > 0


def test_table_shows_runtime_ratios_and_notes(report):
    rows, _ = report
    table = [re.split(r"\s{2,}", line) for line in format_table(list(rows.values())).splitlines()]
    assert table[0][:2] == ["name", "runtime"] and "b8_vs_first" in table[0] and table[0][-1] == "note"
    first = dict(zip(table[0], table[1]))
    assert (first["name"], first["runtime"], first["b8_vs_first"]) == ("m (pytorch)", "pytorch", "x1.00")
    ratio = float(dict(zip(table[0], table[2]))["b8_vs_first"].lstrip("x"))
    assert ratio == pytest.approx(rows["m (onnxruntime)"]["latency_ms_b8"] / rows["m (pytorch)"]["latency_ms_b8"],
                                  abs=0.01)
    assert table[-1][0] == "trt (tensorrt)" and table[-1][-1] == bench.TENSORRT_SKIPPED


def test_ratios_are_relative_to_the_first_measured_row():
    rows = [{"name": "skipped", "latency_ms_b8": None}, {"name": "a", "latency_ms_b8": 10.0},
            {"name": "b", "latency_ms_b8": 4.5}]
    assert latency_ratios(rows) == [None, 1.0, 0.45]
    table = format_table(rows, ("latency_ms_b8",))
    assert "x1.00" in table and "x0.45" in table and table.splitlines()[1].split()[1:] == ["-", "-"]
    assert format_table([], ("latency_ms_b8",)) == "name  latency_ms_b8"


def test_runner_latency_interleaves_rounds_and_respects_a_profile():
    calls = []

    def runner(tag):
        return lambda x: calls.append((tag, len(x)))

    class Profiled:  # a plan built for batch 1..4
        min_batch, max_batch = 1, 4

        def __call__(self, x):
            assert len(x) <= 4
            calls.append(("plan", len(x)))

    latency = runner_latency({"a": runner("a"), "b": runner("b"), "plan": Profiled()}, 8, 8, rounds=2, runs=1)
    assert latency["plan"][8] is None and latency["plan"][1] > 0 and latency["a"][8] > 0
    timed = calls[5:]  # after the warm-up
    assert timed == [("a", 1), ("a", 8), ("b", 1), ("b", 8), ("plan", 1)] * 2


def test_demo_style_entries_keep_their_names_and_are_onnxruntime(models):
    from generator.data.dataset import load_dataset

    root, data = models
    rows = measure_variants({"fp32": {"onnx": root / "m.onnx", "model": None}}, load_dataset(data, "val"),
                            SIZE, SIZE, echo=lambda _: None, rounds=1, runs=1)
    (row,) = rows
    assert row["name"] == "fp32" and row["runtime"] == "onnxruntime" and row["params"] > 0
    assert row["latency_ms_b8"] > 0 and row["map50"] > 0.2


def test_bench_errors_are_clear(models, tmp_path):
    root, data = models
    r = CliRunner().invoke(cli, ["bench", "--data", str(data), "--variants", "a=/nope.onnx"])
    assert r.exit_code == 2 and "a: file not found" in r.output
    other = tmp_path / "big.pt"
    save_checkpoint(build_detector("yolo-n", 3, 96, NAMES, seed=0), other)
    r = CliRunner().invoke(cli, ["bench", "--data", str(data), "--variants", f"a={root / 'm.pt'},b={other}"])
    assert r.exit_code == 2 and "different input sizes" in r.output and "96x96: b" in r.output


# ------------------------------------------------------------------ TensorRT runner plumbing (fake TensorRT)


def _fake_tensorrt(onnx_path: Path, min_batch: int, max_batch: int) -> dict:
    """``tensorrt`` and ``pycuda`` stand-ins with the TensorRT 10 calls the ``tensorrt`` runner makes;
    the "engine" runs ``onnx_path`` with ONNX Runtime on bytes copied through fake device memory."""
    import types

    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    channels, anchors = session.run(None, {"images": np.zeros((1, 3, SIZE, SIZE), np.float32)})[0].shape[1:]
    memory = {}

    class Alloc:
        def __init__(self, nbytes):
            self.ptr = len(memory) + 1
            memory[self.ptr] = bytearray(nbytes)

        def __int__(self):
            return self.ptr

    def memcpy_htod(dst, src):
        data = np.ascontiguousarray(src).tobytes()
        memory[int(dst)][:len(data)] = data

    def memcpy_dtoh(dst, src):
        dst[...] = np.frombuffer(bytes(memory[int(src)][:dst.nbytes]), dst.dtype).reshape(dst.shape)

    class Context:
        def __init__(self):
            self.batch, self.addresses = None, {}

        def set_input_shape(self, name, shape):
            self.batch = shape[0]
            return name == "images" and min_batch <= shape[0] <= max_batch and tuple(shape[1:]) == (3, SIZE, SIZE)

        def get_tensor_shape(self, name):
            return (self.batch, 3, SIZE, SIZE) if name == "images" else (self.batch, channels, anchors)

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr

        def execute_async_v3(self, stream):
            x = np.frombuffer(bytes(memory[self.addresses["images"]][:self.batch * 3 * SIZE * SIZE * 4]), np.float32)
            y = session.run(None, {"images": x.reshape(self.batch, 3, SIZE, SIZE)})[0]
            memcpy_htod(self.addresses["output0"], y)
            return True

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, i):
            return ["images", "output0"][i]

        def get_tensor_mode(self, name):
            return "in" if name == "images" else "out"

        def get_tensor_shape(self, name):
            return (-1, 3, SIZE, SIZE) if name == "images" else (-1, channels, anchors)

        def get_tensor_profile_shape(self, name, profile):
            return [(b, 3, SIZE, SIZE) for b in (min_batch, max_batch, max_batch)]

        def get_tensor_dtype(self, name):
            return "float"

        def create_execution_context(self):
            return Context()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine() if data == b"fake plan" else None

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.0.fake"
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.nptype = lambda dtype: np.float32
    trt.init_libnvinfer_plugins = lambda logger, namespace: True
    trt.Runtime = Runtime
    driver = types.ModuleType("pycuda.driver")
    driver.mem_alloc, driver.memcpy_htod, driver.memcpy_dtoh = Alloc, memcpy_htod, memcpy_dtoh
    driver.Stream = lambda: types.SimpleNamespace(handle=0, synchronize=lambda: None)
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = driver
    return {"tensorrt": trt, "pycuda": pycuda, "pycuda.driver": driver,
            "pycuda.autoinit": types.ModuleType("pycuda.autoinit")}


def test_tensorrt_runner_pads_splits_and_benches_with_a_fake_tensorrt(models, tmp_path, monkeypatch):
    from generator.export.tensorrt import BUILD_INFO_NAME
    from generator.runners import open_runner

    root, data = models
    for name, module in _fake_tensorrt(root / "m.onnx", min_batch=2, max_batch=4).items():
        monkeypatch.setitem(sys.modules, name, module)
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"fake plan")
    runner = open_runner("tensorrt", plan)
    assert (runner.height, runner.width, runner.min_batch, runner.max_batch, runner.nms) == (SIZE, SIZE, 2, 4, False)
    assert (runner.input_name, runner.output_names, runner.input_dtype) == ("images", ["output0"], np.float32)
    x = np.random.default_rng(0).random((6, 3, SIZE, SIZE), dtype=np.float32)
    ort = open_runner("onnxruntime", root / "m.onnx")
    np.testing.assert_allclose(runner(x), ort(x), atol=1e-4)  # split 4 + 2
    np.testing.assert_allclose(runner(x[:1]), ort(x[:1]), atol=1e-4)  # padded to 2

    (tmp_path / BUILD_INFO_NAME).write_text(json.dumps(
        {"precision": "fp16", "min_batch": 2, "opt_batch": 4, "max_batch": 4, "nms": False, "image_size": [64, 64]}))
    monkeypatch.setattr("generator.runners.tensorrt_runner.tensorrt_unavailable", lambda: None)
    r = CliRunner().invoke(cli, ["bench", "--data", str(data), "--json", "--runtimes", "onnxruntime",
                                 "--variants", f"m={root / 'm.onnx'},t={plan}"])
    assert r.exit_code == 0, r.output
    onnx_row, trt_row = json.loads(r.output)["variants"]
    assert (trt_row["name"], trt_row["runtime"], trt_row["note"]) == ("t (tensorrt)", "tensorrt", "fp16 plan")
    assert trt_row["latency_ms_b1"] is None and trt_row["latency_ms_b8"] is None  # outside the profile 2..4
    assert trt_row["map50_95"] == pytest.approx(onnx_row["map50_95"], abs=1e-3) and trt_row["map50"] > 0.2
    plan.write_bytes(b"corrupt")
    with pytest.raises(TritonForgeError, match="cannot load this plan"):
        open_runner("tensorrt", plan)


# ------------------------------------------------------------------ TensorRT (GPU)


@pytest.mark.gpu
def test_tensorrt_runner_matches_onnxruntime_and_benches(models, tmp_path):
    pytest.importorskip("tensorrt")
    from generator.export import tensorrt as tb
    from generator.runners import open_runner

    root, data = models
    plan = tmp_path / "1" / "model.plan"
    plan.parent.mkdir()
    tb.build_plan(root / "m.onnx", plan, tb.BuildOptions(precision="fp32", min_batch=1, opt_batch=2, max_batch=4))
    runner = open_runner("tensorrt", plan)
    assert (runner.height, runner.width, runner.min_batch, runner.max_batch, runner.nms) == (SIZE, SIZE, 1, 4, False)
    x = np.random.default_rng(0).random((6, 3, SIZE, SIZE), dtype=np.float32)  # split into 4 + 2
    np.testing.assert_allclose(runner(x), open_runner("onnxruntime", root / "m.onnx")(x), atol=1e-2)

    r = CliRunner().invoke(cli, ["bench", "--data", str(data), "--json", "--variants",
                                 f"m={root / 'm.onnx'},trt={plan}"])
    assert r.exit_code == 0, r.output
    ort, trt = json.loads(r.output)["variants"]
    assert (trt["name"], trt["runtime"], trt["note"]) == ("trt (tensorrt)", "tensorrt", "fp32 plan")
    assert trt["latency_ms_b1"] > 0 and trt["latency_ms_b8"] is None  # the profile stops at 4
    assert trt["map50_95"] == pytest.approx(ort["map50_95"], abs=0.01) and not math.isnan(trt["map50"])


@pytest.mark.gpu
def test_plan_with_nms_inside_is_timed_not_scored(models, tmp_path):
    pytest.importorskip("tensorrt")
    from generator.export import tensorrt as tb

    root, data = models
    plan = tmp_path / "model.plan"
    tb.build_plan(root / "m.onnx", plan, tb.BuildOptions(precision="fp16", max_batch=8, nms=True))
    r = CliRunner().invoke(cli, ["bench", "--data", str(data), "--json", "--variants", f"nms={plan}"])
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.output)["variants"]
    assert row["latency_ms_b1"] > 0 and row["latency_ms_b8"] > 0 and row["map50"] is None
    assert row["note"].startswith("latency only")
