"""The uint8 hand-off (issue 13): the preprocess stage hands the detector uint8 pixels and the
input format runs inside the detector graph, with results bit-identical to the float hand-off."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import image_bytes as ib
from generator.errors import UsageError
from generator.export.input_format import InputFormat
from generator.export.uint8_input import fold_input_format
from generator.runtime import imaging

FORMATS = {
    "default": InputFormat(),
    "bgr-255": InputFormat(scale=1.0, channel_order="BGR"),
    "imagenet": InputFormat(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    "bgr-caffe": InputFormat(scale=1.0, channel_order="BGR", mean=(103.53, 116.28, 123.675), std=(57.375, 57.12, 58.395)),
}
IMAGES = [ib.jpeg(90, 150, seed=3), ib.jpeg(128, 64, seed=4), ib.jpeg(40, 40, seed=5)]


def _session(model: onnx.ModelProto):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_folded_graph_gives_bit_identical_outputs(tiny_yolo_onnx, fmt):
    """A real yolo-n: float hand-off (the preprocess applies the format) vs uint8 hand-off."""
    source = onnx.load(str(tiny_yolo_onnx))
    folded = fold_input_format(tiny_yolo_onnx, FORMATS[fmt])
    assert folded.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert folded.graph.input[0].name == source.graph.input[0].name
    floats = np.stack([imaging.preprocess_bytes(b, 128, 128, None, FORMATS[fmt])[0] for b in IMAGES])
    pixels = np.stack([imaging.letterbox_uint8(b, 128, 128)[0] for b in IMAGES])
    assert pixels.dtype == np.uint8 and pixels.nbytes * 4 == floats.nbytes
    want = _session(source).run(None, {"images": floats})
    got = _session(folded).run(None, {"images": pixels})
    for w, g in zip(want, got):
        assert np.array_equal(w, g)


def test_a_float16_input_is_cast_after_the_format(tmp_path):
    """A graph whose input is float16 gets the format in float32, then float16: what the
    float hand-off's ``astype(float16)`` of the preprocessed image gives."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "half",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT16, ["n", 3, 32, 48])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT16, ["n", 3, 32, 48])])
    path = tmp_path / "half.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    fmt = FORMATS["imagenet"]
    floats = np.stack([imaging.preprocess_bytes(b, 32, 48, None, fmt)[0] for b in IMAGES])
    pixels = np.stack([imaging.letterbox_uint8(b, 32, 48)[0] for b in IMAGES])
    (got,) = _session(fold_input_format(path, fmt)).run(None, {"images": pixels})
    assert got.dtype == np.float16 and np.array_equal(got, floats.astype(np.float16))


def test_an_input_that_is_not_an_image_is_refused_with_its_name(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["tokens"], ["out"])], "g",
                              [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["n", 7])],
                              [helper.make_tensor_value_info("out", TensorProto.INT64, ["n", 7])])
    path = tmp_path / "tokens.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(UsageError, match=r"tokens\.onnx: input 'tokens' must be float32 or float16 \[N, 3, H, W\]"):
        fold_input_format(path, InputFormat())


# ---- the preprocess stage in UINT8 mode -------------------------------------------------------------

def _args(parameters):
    config = {"name": "m", "parameters": {k: {"string_value": v} for k, v in parameters.items()}, "input": []}
    return {"model_config": json.dumps(config), "model_name": "m"}


def _batch(*items):
    arr = np.empty((len(items), 1), dtype=object)
    arr[:, 0] = items
    return arr


def test_preprocess_stage_hands_off_uint8_pixels(pb_utils):
    from generator.runtime import preprocess

    model = preprocess.TritonPythonModel()
    model.initialize(_args({"height": "64", "width": "96", "dtype": "UINT8"}))
    (response,) = model.execute([pb_utils.InferenceRequest(IMAGE=_batch(*IMAGES[:2]))])
    out = response.output("PREPROCESSED")
    assert out.dtype == np.uint8 and out.shape == (2, 3, 64, 96)
    want = [imaging.letterbox_uint8(b, 64, 96) for b in IMAGES[:2]]
    assert np.array_equal(out, np.stack([w[0] for w in want]))
    assert np.array_equal(response.output("TRANSFORM"), np.stack([w[1] for w in want]))
    # the float path's pixels, before scaling, are these very values
    floats = imaging.preprocess_bytes(IMAGES[0], 64, 96)[0]
    assert np.array_equal(out[0].astype(np.float32) * np.float32(1 / 255), floats)


@pytest.mark.parametrize("params, message", [
    ({"dtype": "UINT8", "channel_order": "BGR"}, "graph applies the input format"),
    ({"dtype": "INT8"}, "dtype must be one of UINT8, FP32, FP16, got 'INT8'"),
])
def test_preprocess_stage_refuses_what_it_cannot_honour(pb_utils, params, message):
    from generator.runtime import preprocess

    with pytest.raises(ValueError, match=message):
        preprocess.TritonPythonModel().initialize(_args({"height": "64", "width": "64", **params}))


# ---- the generated repository ----------------------------------------------------------------------

def _stage(repo, model):
    from generator.repository.render import parse_config

    return parse_config((repo / model / "config.pbtxt").read_text())


@pytest.mark.parametrize("target", ["embedded", "cpu"])
def test_cpu_targets_hand_off_uint8_and_ship_the_folded_graph(contract_onnx, tmp_path, target):
    from generator.repository.generate import generate
    from generator.repository.targets import options_for

    repo = generate(contract_onnx, target, tmp_path / "repo", options_for(target)).path
    pre, det = _stage(repo, "detector_preprocess"), _stage(repo, "detector")
    (pre_out,) = [o for o in pre.output if o.name == "PREPROCESSED"]
    assert pre_out.data_type == det.input[0].data_type == 2  # TYPE_UINT8
    assert pre.parameters["dtype"].string_value == "UINT8" and "scale" not in pre.parameters
    shipped = onnx.load(str(repo / "detector" / "1" / "model.onnx"))
    assert shipped.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert json.loads((repo / "tritonforge.json").read_text())["handoff"] == "UINT8"


def test_float_handoff_keeps_the_detector_as_it_is(contract_onnx, tmp_path):
    from generator.repository.generate import generate
    from generator.repository.targets import options_for

    repo = generate(contract_onnx, "embedded", tmp_path / "repo", options_for("embedded", handoff="float")).path
    assert _stage(repo, "detector").input[0].data_type == 11  # TYPE_FP32
    assert (repo / "detector" / "1" / "model.onnx").read_bytes() == contract_onnx.read_bytes()


def test_handoff_is_refused_where_the_preprocess_runs_on_the_gpu(contract_onnx, tmp_path):
    from generator.repository.targets import options_for

    with pytest.raises(UsageError, match="--handoff: only for the cpu and embedded targets"):
        options_for("gpu", handoff="float")
    with pytest.raises(UsageError, match="--handoff must be one of uint8, float, got 'int8'"):
        options_for("embedded", handoff="int8").validate()
