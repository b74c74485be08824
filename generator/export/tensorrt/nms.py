"""EfficientNMS inside the plan (``tritonforge build --nms``): the plugin's settings, the
outputs it gives the plan, and the network surgery that puts it there.

The settings and outputs are pure Python (the ``gpu``/``jetson`` configs use them); only
``add_nms`` touches TensorRT, through the module passed in.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

from generator.errors import TritonForgeError
from generator.export.tensorrt.options import BuildOptions

NMS_PLUGIN = ("EfficientNMS_TRT", "1")  # name, version
NMS_OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")
NMS_BOX_CODING_CENTER_SIZE = 1  # EfficientNMS box_coding: 0 corners, 1 center-size (cx, cy, w, h)


def nms_plugin_fields(opts: BuildOptions) -> List[Tuple[str, object, str]]:
    """EfficientNMS_TRT fields as (name, value, PluginFieldType member name).

    Scores are already probabilities (score_activation 0), boxes are cx, cy, w, h in
    network-input pixels (box_coding 1); NMS is per class like the server's postprocess.
    """
    return [
        ("score_threshold", float(opts.score_threshold), "FLOAT32"),
        ("iou_threshold", float(opts.iou_threshold), "FLOAT32"),
        ("max_output_boxes", int(opts.max_detections), "INT32"),
        ("background_class", -1, "INT32"),
        ("score_activation", 0, "INT32"),
        ("class_agnostic", 0, "INT32"),
        ("box_coding", NMS_BOX_CODING_CENTER_SIZE, "INT32"),
    ]


def nms_outputs(max_detections: int) -> List[dict]:
    """The plan's outputs with ``--nms`` (dims without the batch axis, as in config.pbtxt)."""
    d = int(max_detections)
    return [
        {"name": "num_detections", "data_type": "TYPE_INT32", "dims": [1]},
        {"name": "detection_boxes", "data_type": "TYPE_FP32", "dims": [d, 4]},  # x1, y1, x2, y2, input pixels
        {"name": "detection_scores", "data_type": "TYPE_FP32", "dims": [d]},
        {"name": "detection_classes", "data_type": "TYPE_INT32", "dims": [d]},
    ]


def add_nms(trt, network, sig, opts: BuildOptions, keep: list) -> None:
    """``[N, 4+C, A]`` -> boxes ``[N, A, 4]`` + scores ``[N, A, C]`` -> EfficientNMS_TRT; its four
    outputs replace the raw output. ``keep`` holds the numpy buffers TensorRT reads at build time."""
    raw = next((network.get_output(i) for i in range(network.num_outputs)
                if network.get_output(i).name == sig.output_name), None)
    if raw is None:
        raise TritonForgeError(f"the parsed network has no output {sig.output_name!r}")
    boxes = _to_anchor_major(network, network.add_gather(raw, _indices(trt, network, range(4), keep), 1).get_output(0))
    classes = range(4, 4 + sig.num_classes)
    scores = _to_anchor_major(network, network.add_gather(raw, _indices(trt, network, classes, keep), 1).get_output(0))
    layer = _nms_layer(trt, network, [boxes, scores], _plugin_fields(trt, opts, keep))
    network.unmark_output(raw)
    for i, name in enumerate(NMS_OUTPUTS):
        tensor = layer.get_output(i)
        tensor.name = name
        network.mark_output(tensor)


def _indices(trt, network, values, keep: list):
    array = np.asarray(list(values), dtype=np.int32)
    keep.append(array)
    return network.add_constant(array.shape, trt.Weights(array)).get_output(0)


def _to_anchor_major(network, tensor):
    """``[N, K, A]`` -> ``[N, A, K]``."""
    layer = network.add_shuffle(tensor)
    layer.first_transpose = (0, 2, 1)
    return layer.get_output(0)


def _plugin_fields(trt, opts: BuildOptions, keep: list):
    fields = []
    for name, value, kind in nms_plugin_fields(opts):
        array = np.array([value], dtype=np.float32 if kind == "FLOAT32" else np.int32)
        keep.append(array)
        fields.append(trt.PluginField(name, array, getattr(trt.PluginFieldType, kind)))
    return trt.PluginFieldCollection(fields)


def _nms_layer(trt, network, inputs, collection):
    registry = trt.get_plugin_registry()
    # EfficientNMS_TRT 1 is an IPluginV2 plugin: get_plugin_creator (deprecated since 10.0) hands back
    # the V2 creator type; get_creator where that is gone
    get = getattr(registry, "get_plugin_creator", None) or registry.get_creator
    creator = get(NMS_PLUGIN[0], NMS_PLUGIN[1], "")
    if creator is None:
        raise TritonForgeError(f"TensorRT plugin {NMS_PLUGIN[0]} version {NMS_PLUGIN[1]} is not registered "
                               "(libnvinfer_plugin missing?): install TensorRT's plugin library or build without --nms")
    if hasattr(trt, "IPluginCreatorV3One") and isinstance(creator, trt.IPluginCreatorV3One):
        plugin = creator.create_plugin("nms", collection, trt.TensorRTPhase.BUILD)
        layer = network.add_plugin_v3(inputs, [], plugin)
    else:
        plugin = creator.create_plugin("nms", collection)
        layer = network.add_plugin_v2(inputs, plugin)
    if plugin is None or layer is None:
        raise TritonForgeError(f"TensorRT could not create the {NMS_PLUGIN[0]} layer")
    return layer
