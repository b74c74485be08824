"""INT8 quantization of detectors in every output layout: the decode / TopK / NMS tail stays
float (with its reasons), the quantized model keeps the source's interface and metadata and
gives the same detections; a TensorRT-only graph is refused."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
import layouts as L  # noqa: E402

from generator.compress import quantize as q  # noqa: E402
from generator.compress.quantize.qdq import graph_io  # noqa: E402
from generator.errors import UsageError  # noqa: E402
from generator.evaluation.predictors import Thresholds  # noqa: E402
from generator.evaluation.run import run_eval  # noqa: E402
from generator.export.signature import read_signature  # noqa: E402

THRESHOLDS = Thresholds(0.1, 0.7, 100)
# fixture -> read_signature keywords its file does not tell
CASES = {
    "yolov5": {},  # objectness [N, A, 5+C], YOLOv5 metadata
    "yolo26_e2e_dynamic": {},  # end-to-end TopK + GatherElements, 384x640, dynamic H/W, Ultralytics metadata
    "efficient_nms": {},  # the four EfficientNMS outputs made with TopK (class names from the dataset)
    "detr_logits": {"scores": "logits"},  # RT-DETR-style boxes + logits, two outputs
    "ultralytics_b1": {},  # anchor-free DFL head, fixed batch 1, 384x640
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return tmp_path_factory.mktemp("layouts")


def _quantized(built, name):
    fx = L.build(name, built)
    data = L.write_dataset(built / f"data_{name}", L.random_scenes(8, *fx.imgsz, seed=1))
    out = built / f"{name}.int8.onnx"
    report = q.quantize_from_images(fx.path, out, data, 8, read_options=CASES[name])
    return fx, data, out, report


@pytest.mark.parametrize("name", list(CASES))
def test_every_layout_quantizes_with_its_tail_float_and_the_same_detections(built, name):
    import onnx

    fx, data, out, report = _quantized(built, name)
    source, quantized = onnx.load(str(fx.path)), onnx.load(str(out))
    assert graph_io(quantized) == graph_io(source)  # every output, its type and dims
    meta = {p.key: p.value for p in quantized.metadata_props}
    assert {k: meta[k] for k in fx.meta} == fx.meta  # the exporter's metadata kept as it was
    assert report.head_convs and all(e.reason != q.REASON_USER for e in report.excluded)
    options = dict(CASES[name], labels=list(L.NAMES))
    want, got = read_signature(fx.path, **options), read_signature(out, **options)
    assert (got.layout, got.height, got.width, got.batch, got.names) == (want.layout, want.height, want.width,
                                                                        want.batch, want.names)
    fp32 = run_eval(data, onnx=fx.path, thresholds=THRESHOLDS, progress=False, read_options=CASES[name])
    int8 = run_eval(data, onnx=out, thresholds=THRESHOLDS, progress=False, read_options=CASES[name])
    assert fp32.detections > 20 and 0.5 < fp32.map50_95 < 1
    assert (int8.detections, int8.map50_95) == (fp32.detections, fp32.map50_95)


def test_tail_reasons_name_what_the_nodes_do(built):
    import onnx

    e2e = q.sensitive_nodes(onnx.load(str(L.build("yolo26_e2e", built).path)))
    by_op = {}
    for e in e2e:
        by_op.setdefault(e.op_type, set()).add(e.reason)
    assert by_op["TopK"] == {q.REASON_SELECT} and by_op["GatherElements"] == {q.REASON_SELECT}
    assert by_op["Sigmoid"] == {q.REASON_SCORES} and by_op["Softmax"] == {q.REASON_DFL}
    assert q.REASON_HEAD_CONV in by_op["Conv"] and q.REASON_DFL in by_op["Conv"]


def _mlp_decoder(path: Path) -> Path:
    """images -> Conv -> pool -> MatMul -> Relu -> MatMul (box head) -> Sigmoid: a DETR-like
    decoder whose output layer is a MatMul with a constant weight."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "cw"),
             numpy_helper.from_array(rng.normal(size=(8, 16)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(size=(16, 4)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["images", "cw"], ["c"], name="backbone/Conv"),
             helper.make_node("GlobalAveragePool", ["c"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "w1"], ["h"], name="decoder/MatMul"),
             helper.make_node("Relu", ["h"], ["r"], name="decoder/Relu"),
             helper.make_node("MatMul", ["r", "w2"], ["b"], name="bbox_head/MatMul"),
             helper.make_node("Sigmoid", ["b"], ["boxes"], name="bbox_head/Sigmoid")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_a_decoders_matmul_output_layer_is_the_head(tmp_path):
    import onnx

    excluded = {e.name: e.reason for e in q.sensitive_nodes(onnx.load(str(_mlp_decoder(tmp_path / "m.onnx"))))}
    assert excluded == {"bbox_head/MatMul": q.REASON_HEAD_LINEAR, "bbox_head/Sigmoid": q.REASON_SCORES}


def test_a_graph_with_efficient_nms_trt_is_refused_and_nothing_written(built, tmp_path):
    fx = L.efficient_nms_trt_onnx(tmp_path / "trt.onnx")
    data = L.write_dataset(tmp_path / "data", L.random_scenes(8, *fx.imgsz, seed=1))
    with pytest.raises(UsageError, match=r"trt\.onnx: contains TensorRT's EfficientNMS_TRT node.*to calibrate it"):
        q.quantize_from_images(fx.path, tmp_path / "out.onnx", data, 8)
    with pytest.raises(UsageError, match="EfficientNMS_TRT node.*to evaluate it offline.*eval --url"):
        run_eval(data, onnx=fx.path, progress=False)
    assert not (tmp_path / "out.onnx").exists()
