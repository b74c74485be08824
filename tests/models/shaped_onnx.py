"""Tiny ONNX graphs with the OUTPUT SHAPES of each layout, built with onnx.helper (no torch).

For repository-generation tests, where the graph's interface matters and its numbers do
not: every output is the image mean broadcast to the output's shape and cast to its type,
so ONNX Runtime runs the graph at any batch. (``layouts.py`` has the fixtures with known
detections.) Options reproduce what generation must handle: a fixed batch (``batch=1``),
a batch baked into a ``Reshape`` (so it cannot be made dynamic), and a TensorRT-only
``EfficientNMS_TRT`` node.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np

NAMES = ("red", "green", "blue")
FP32, FP16, INT32, INT64 = "FP32", "FP16", "INT32", "INT64"

# output (name, Triton type, dims without the batch axis) per layout case, for a 64x96 input
LAYOUT_OUTPUTS: Dict[str, Tuple[str, Sequence[Tuple[str, str, Tuple[int, ...]]]]] = {
    "anchor-free": ("anchor-free", [("output0", FP32, (7, 96))]),
    "objectness": ("objectness", [("output0", FP32, (288, 8))]),
    "end-to-end": ("end-to-end", [("output0", FP32, (50, 6))]),
    "efficient-nms": ("efficient-nms", [("num_dets", INT32, (1,)), ("det_boxes", FP32, (20, 4)),
                                        ("det_scores", FP32, (20,)), ("det_classes", INT64, (20,))]),
    "detr": ("detr", [("pred_boxes", FP32, (30, 4)), ("pred_logits", FP32, (30, 3))]),
    "detr-single": ("detr", [("output0", FP16, (30, 7))]),
}


def _onnx_type(name: str) -> int:
    from onnx import TensorProto

    return {FP32: TensorProto.FLOAT, FP16: TensorProto.FLOAT16, INT32: TensorProto.INT32,
            INT64: TensorProto.INT64}[name]


def shaped_onnx(path: Path, outputs: Sequence[Tuple[str, str, Tuple[int, ...]]], imgsz=(64, 96),
                batch: Optional[int] = None, baked_batch: bool = False, trt_plugin: bool = False,
                meta: Optional[Dict[str, str]] = None) -> Path:
    """``images [N, 3, H, W]`` -> ``outputs`` (name, Triton type, dims without batch).

    ``batch``: None for a dynamic batch axis, else fixed; ``baked_batch``: the batch is
    also written into a Reshape (the graph then fails for any other batch);
    ``trt_plugin``: the outputs come out of an ``EfficientNMS_TRT`` node (only TensorRT
    runs it); ``meta``: metadata_props (default: tritonforge.names for 3 classes).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = imgsz
    lead = "batch" if batch is None else batch
    nodes = [helper.make_node("Shape", ["images"], ["shape"]),
             helper.make_node("Slice", ["shape", "zero", "one"], ["n"]),
             helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=1)]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([1], np.int64), "one")]
    made = outputs if not trt_plugin else [("plugin_boxes", FP32, (64, 4)), ("plugin_scores", FP32, (64, 3))]
    for i, (name, dtype, dims) in enumerate(made):
        inits += [numpy_helper.from_array(np.array([1 if baked_batch else -1] + [1] * len(dims), np.int64), f"r{i}"),
                  numpy_helper.from_array(np.array(dims, np.int64), f"d{i}")]
        nodes += [helper.make_node("Reshape", ["mean", f"r{i}"], [f"flat{i}"]),
                  helper.make_node("Concat", ["n", f"d{i}"], [f"to{i}"], axis=0),
                  helper.make_node("Expand", [f"flat{i}", f"to{i}"], [f"big{i}"]),
                  helper.make_node("Cast", [f"big{i}"], [name], to=_onnx_type(dtype))]
    if trt_plugin:
        nodes.append(helper.make_node("EfficientNMS_TRT", ["plugin_boxes", "plugin_scores"], [o[0] for o in outputs],
                                      background_class=-1, max_output_boxes=outputs[1][2][0], score_threshold=0.25,
                                      iou_threshold=0.45, score_activation=0, box_coding=0, plugin_version="1"))
    graph = helper.make_graph(
        nodes, "shaped", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [lead, 3, h, w])],
        [helper.make_tensor_value_info(name, _onnx_type(dtype), [lead, *dims]) for name, dtype, dims in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    model.ir_version = 8
    for key, value in (meta if meta is not None else {"tritonforge.names": json.dumps(NAMES)}).items():
        model.metadata_props.add(key=key, value=value)
    if not trt_plugin:
        onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def layout_onnx(case: str, path: Union[Path, str], **options) -> Path:
    """The ONNX of one ``LAYOUT_OUTPUTS`` case."""
    return shaped_onnx(Path(path), LAYOUT_OUTPUTS[case][1], **options)
