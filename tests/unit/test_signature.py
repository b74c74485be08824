"""read_signature on small hand-built ONNX graphs: every layout detected, dynamic H/W fixed
from metadata or --imgsz, fixed batch, class counts, score kinds, input formats, and the
errors (exit 2) for what does not fit."""

import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from generator.errors import UsageError
from generator.export.input_format import InputFormat
from generator.export.signature import TensorSpec, layout_of, read_signature

F, I32, I64 = TensorProto.FLOAT, TensorProto.INT32, TensorProto.INT64
ULTRALYTICS = {"author": "Ultralytics", "task": "detect", "head": "Detect", "stride": "32", "batch": "1",
               "names": "{0: 'person', 1: 'car', 2: 'dog'}", "end2end": "False", "args": "{'nms': None}"}


def save(path, outputs, input_dims=("batch", 3, 64, 64), meta=None, ops=(), domain=""):
    """An ONNX file with the given outputs ((name, dims, elem_type)); each output is fed by a
    node of its own (Identity unless ``ops`` names others), shapes as declared."""
    nodes = [helper.make_node("GlobalAveragePool", ["images"], ["pooled"])]
    for i, (name, _, _) in enumerate(outputs):
        op = ops[i] if i < len(ops) else "Identity"
        nodes.append(helper.make_node(op, ["pooled"], [name], domain=domain if op.endswith("_TRT") else ""))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("images", F, list(input_dims))],
        [helper.make_tensor_value_info(n, t, list(d)) for n, d, t in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in (meta or {}).items():
        model.metadata_props.add(key=key, value=value)
    path.write_bytes(model.SerializeToString())
    return path


def dynamic_hw_onnx(path, meta=None, fields=7):
    """A real graph with dynamic batch, height and width: the output's anchors follow H and W
    ([N, F, H/8 * W/8]), so fixing H and W lets shape inference give them."""
    weight = np.ones((fields, 3, 1, 1), np.float32)
    nodes = [helper.make_node("AveragePool", ["images"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
             helper.make_node("Conv", ["pooled", "w"], ["conv"]),
             helper.make_node("Reshape", ["conv", "shape"], ["output0"])]
    graph = helper.make_graph(
        nodes, "dyn", [helper.make_tensor_value_info("images", F, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("output0", F, ["batch", "fields", "anchors"])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.array([0, fields, -1], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in (meta or {}).items():
        model.metadata_props.add(key=key, value=value)
    path.write_bytes(model.SerializeToString())
    return path


# ---------------------------------------------------------------- layouts, detected


def test_anchor_free_with_tritonforge_metadata_keeps_todays_signature(contract_onnx):
    sig = read_signature(contract_onnx)
    assert (sig.layout, sig.num_classes, sig.num_candidates, sig.batch, sig.source_meta) == \
        ("anchor-free", 3, 64, None, "tritonforge")
    assert sig.outputs == (TensorSpec("output0", "FP32", (7, 64)),)
    # the compatibility properties existing callers use
    assert (sig.output_name, sig.output_dtype, sig.output_dims, sig.num_anchors) == ("output0", "FP32", (7, 64), 64)
    assert (sig.scores, sig.input_format, sig.has_trt_plugin) == ("probs", InputFormat(), False)


def test_ultralytics_dynamic_height_and_width_come_from_its_metadata(tmp_path):
    path = dynamic_hw_onnx(tmp_path / "u.onnx", {**ULTRALYTICS, "imgsz": "[384, 640]"})
    sig = read_signature(path)
    assert (sig.height, sig.width, sig.batch) == (384, 640, None)
    assert sig.outputs == (TensorSpec("output0", "FP32", (7, 48 * 80)),)  # anchors inferred for 384x640
    assert (sig.layout, sig.num_classes, sig.names, sig.source_meta) == \
        ("anchor-free", 3, ("person", "car", "dog"), "ultralytics")


def test_dynamic_height_and_width_need_imgsz_without_metadata(tmp_path):
    path = dynamic_hw_onnx(tmp_path / "d.onnx")
    with pytest.raises(UsageError, match=r"d.onnx: input 'images' has a dynamic height or width "
                                         r"\(\[N, 3, \?, \?\]\) .*pass --imgsz H,W") as err:
        read_signature(path)
    assert err.value.exit_code == 2
    sig = read_signature(path, imgsz=(128, 64))
    assert (sig.height, sig.width, sig.outputs[0].dims) == (128, 64, (7, 128))
    assert sig.names == ("class0", "class1", "class2")
    # --imgsz wins over the metadata's size
    meta_path = dynamic_hw_onnx(tmp_path / "m.onnx", {**ULTRALYTICS, "imgsz": "[640, 640]"})
    assert read_signature(meta_path, imgsz=(64, 128)).outputs[0].dims == (7, 128)


def test_imgsz_must_match_a_fixed_input(contract_onnx):
    with pytest.raises(UsageError, match=r"input 'images' has a fixed size 64x64 \(HxW\); --imgsz 32,32 does not"):
        read_signature(contract_onnx, imgsz=(32, 32))
    assert read_signature(contract_onnx, imgsz=(64, 64)).height == 64


def test_non_square_fixed_batch_input(tmp_path):
    path = save(tmp_path / "ns.onnx", [("output0", [1, 6, 3840], F)], input_dims=(1, 3, 384, 640))
    sig = read_signature(path)
    assert (sig.height, sig.width, sig.batch, sig.outputs[0].dims, sig.num_classes) == (384, 640, 1, (6, 3840), 2)


def test_objectness_from_yolov5_metadata(tmp_path):
    path = save(tmp_path / "v5.onnx", [("output0", [1, 252, 8], F)],
                meta={"stride": "32", "names": "{0: 'a', 1: 'b', 2: 'c'}"})
    sig = read_signature(path)
    assert (sig.layout, sig.num_classes, sig.num_candidates, sig.source_meta, sig.names) == \
        ("objectness", 3, 252, "yolov5", ("a", "b", "c"))


def test_end_to_end_after_topk_takes_the_class_count_from_metadata_or_labels(tmp_path):
    meta = {**ULTRALYTICS, "end2end": "True", "imgsz": "[64, 64]"}
    path = save(tmp_path / "e2e.onnx", [("output0", [1, 300, 6], F)], input_dims=(1, 3, 64, 64), meta=meta,
                ops=["TopK"])
    sig = read_signature(path)
    assert (sig.layout, sig.num_classes, sig.num_candidates) == ("end-to-end", 3, 300)
    assert sig.names == ("person", "car", "dog")
    bare = save(tmp_path / "bare.onnx", [("output0", [1, 300, 6], F)], ops=["TopK"])
    with pytest.raises(UsageError, match=r"bare.onnx: the end-to-end layout's outputs do not tell the class count "
                                         r".*pass --labels FILE"):
        read_signature(bare)
    sig = read_signature(bare, labels=["a", "b", "c", "d"])
    assert (sig.layout, sig.num_classes, sig.names) == ("end-to-end", 4, ("a", "b", "c", "d"))


def test_efficient_nms_with_the_tensorrt_node(tmp_path):
    outputs = [("num_dets", [None, 1], I32), ("det_boxes", [None, 100, 4], F), ("det_scores", [None, 100], F),
               ("det_classes", [None, 100], I32)]
    path = save(tmp_path / "enms.onnx", outputs, ops=["EfficientNMS_TRT"] * 4, domain="TRT")
    sig = read_signature(path, labels=["a", "b"])
    assert (sig.layout, sig.has_trt_plugin, sig.num_candidates, sig.num_classes) == ("efficient-nms", True, 100, 2)
    assert [(o.name, o.dtype, o.dims) for o in sig.outputs] == [
        ("num_dets", "INT32", (1,)), ("det_boxes", "FP32", (100, 4)), ("det_scores", "FP32", (100,)),
        ("det_classes", "INT32", (100,))]
    # the same outputs from TopK (no TensorRT node): still efficient-nms, ONNX Runtime can run it
    topk = save(tmp_path / "topk.onnx", outputs, ops=["TopK"])
    sig = read_signature(topk, labels=["a", "b"])
    assert (sig.layout, sig.has_trt_plugin) == ("efficient-nms", False)


def test_detr_must_be_told_logits_or_probs(tmp_path):
    path = save(tmp_path / "detr.onnx", [("pred_boxes", [None, 100, 4], F), ("pred_logits", [None, 100, 5], F)])
    with pytest.raises(UsageError, match=r"detr.onnx: the detr layout's class scores may be logits or probabilities "
                                         r".*pass --scores logits\|probs"):
        read_signature(path)
    sig = read_signature(path, scores="logits")
    assert (sig.layout, sig.scores, sig.num_classes, sig.num_candidates) == ("detr", "logits", 5, 100)
    layout = layout_of(sig)
    assert (layout.name, layout.height, layout.width, layout.scores) == ("detr", 64, 64, "logits")


# ---------------------------------------------------------------- what does not fit


def test_ambiguous_outputs_ask_for_layout(tmp_path):
    path = save(tmp_path / "amb.onnx", [("output0", [None, 84, 84], F)])
    with pytest.raises(UsageError, match=r"amb.onnx: ambiguous: \[N, 84, 84\] fits anchor-free and objectness; "
                                         r"pass --layout NAME"):
        read_signature(path)
    assert read_signature(path, layout="objectness").num_classes == 79
    assert read_signature(path, layout="anchor-free").num_classes == 80


def test_forced_layout_that_does_not_fit(contract_onnx):
    with pytest.raises(UsageError, match=r"contract.onnx: layout end-to-end: output 'output0' must be \[N, K, 6\]"
                                         r".*\(expected one output \[N, K, 6\]"):
        read_signature(contract_onnx, layout="end-to-end")


def test_outputs_that_fit_nothing_name_every_output_and_layout(tmp_path):
    path = save(tmp_path / "odd.onnx", [("a", [None, 3], F), ("b", [None, 2, 2, 2], F)])
    with pytest.raises(UsageError) as err:
        read_signature(path)
    text = str(err.value)
    assert text.startswith(f"{path}: the outputs 'a' [N, 3] FP32, 'b' [N, 2, 2, 2] FP32 fit no known output layout:")
    for name in ("anchor-free", "objectness", "end-to-end", "efficient-nms", "detr"):
        assert f"\n  {name}: " in text
    assert err.value.exit_code == 2


def test_labels_that_disagree_with_the_class_count(contract_onnx):
    with pytest.raises(UsageError, match=r"--labels lists 2 class names but the output has 3 classes "
                                         r"\(layout anchor-free\)"):
        read_signature(contract_onnx, labels=["a", "b"])
    assert read_signature(contract_onnx, labels=["x", "y", "z"]).names == ("x", "y", "z")  # --labels wins


def test_ultralytics_tasks_other_than_detect_are_refused(tmp_path):
    path = save(tmp_path / "pose.onnx", [("output0", [1, 56, 84], F)], meta={**ULTRALYTICS, "task": "pose"})
    with pytest.raises(UsageError, match=r"pose.onnx: an Ultralytics 'pose' model; only 'detect' models"):
        read_signature(path)


def test_unsupported_output_type_is_named(tmp_path):
    path = save(tmp_path / "bool.onnx", [("mask", [None, 10], TensorProto.BOOL)])
    with pytest.raises(UsageError, match=r"output 'mask' has ONNX type 9; expected float32, float16, int32 or int64"):
        read_signature(path)


# ---------------------------------------------------------------- formats and speed


def test_input_format_default_and_override(contract_onnx):
    bgr = InputFormat(scale=1.0, channel_order="BGR", mean=(103.53, 116.28, 123.675), std=(57.375, 57.12, 58.395))
    assert read_signature(contract_onnx).input_format.is_default
    assert read_signature(contract_onnx, input_format=bgr).input_format == bgr


def test_reading_starts_no_onnxruntime(contract_onnx):
    """read_signature stays fast: the graph is read, nothing is run."""
    code = ("import sys; from generator.export.signature import read_signature; "
            f"read_signature({str(contract_onnx)!r}); print('onnxruntime' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_unreadable_ultralytics_metadata_names_the_file_once(tmp_path):
    path = save(tmp_path / "badmeta.onnx", [("output0", [1, 7, 64], F)], meta={**ULTRALYTICS, "names": "a,b,c"})
    with pytest.raises(UsageError) as err:
        read_signature(path)
    assert str(err.value) == (f"{path}: metadata 'names' is not a list of class names or a {{0: name, ...}} dict: "
                              f"'a,b,c'")
