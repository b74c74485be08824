"""The in-server stages for other detectors (issue 12): the input format in the preprocess
stages, several raw outputs in the postprocess stage, a bad request failing alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

import image_bytes as ib
from generator.runtime import boxes, imaging

BGR_255 = imaging.PixelFormat(scale=1.0, channel_order="BGR")
IMAGENET = imaging.PixelFormat(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
FORMAT_PARAMS = {"BGR_255": {"scale": "1.0", "channel_order": "BGR", "mean": "0,0,0", "std": "1,1,1"},
                 "IMAGENET": {"scale": "0.00392156862745098", "channel_order": "RGB", "mean": "0.485,0.456,0.406",
                              "std": "0.229,0.224,0.225"}}


def _args(parameters, inputs=()):
    config = {"name": "m", "parameters": {k: {"string_value": v} for k, v in parameters.items()},
              "input": list(inputs)}
    return {"model_config": json.dumps(config), "model_name": "m"}


def _batch(*items):
    arr = np.empty((len(items), 1), dtype=object)
    arr[:, 0] = items
    return arr


def _solid(rgb, h=32, w=32) -> bytes:
    """A PNG of one colour, given as R, G, B."""
    return ib.png(np.tile(np.array(rgb[::-1], np.uint8), (h, w, 1)))  # ib.png takes OpenCV's BGR


# ---- imaging ---------------------------------------------------------------------------------------

def test_other_input_formats_give_the_known_values():
    data = _solid((200, 100, 50))  # fills the 32x32 input: no padding, no resize
    chw, _ = imaging.preprocess_bytes(data, 32, 32, None, BGR_255)
    assert chw.dtype == np.float32 and chw.shape == (3, 32, 32)
    assert [float(chw[c, 0, 0]) for c in range(3)] == [50.0, 100.0, 200.0] and (chw == chw[:, :1, :1]).all()
    chw, _ = imaging.preprocess_bytes(data, 32, 32, None, IMAGENET)
    want = [(np.float32(v) * np.float32(1 / 255) - np.float32(m)) / np.float32(s)
            for v, m, s in zip((200, 100, 50), IMAGENET.mean, IMAGENET.std)]
    assert [chw[c, 5, 7] for c in range(3)] == want
    np.testing.assert_allclose([chw[c, 0, 0] for c in range(3)], [1.3070, -0.2850, -0.9330], atol=1e-4)


def test_the_default_format_is_bit_identical_to_the_plain_path():
    data = ib.jpeg(50, 80, seed=3)
    plain, t1 = imaging.preprocess_bytes(data, 64, 96)
    given, t2 = imaging.preprocess_bytes(data, 64, 96, None, imaging.PixelFormat())
    canvas, _ = imaging.letterbox_hwc(imaging.decode_image(data), 64, 96)
    assert plain.tobytes() == given.tobytes() == imaging.apply_format(canvas, imaging.DEFAULT_FORMAT).tobytes()
    np.testing.assert_array_equal(t1, t2)


@pytest.mark.parametrize("params, message", [
    (("1.0", "RGBA", "0,0,0", "1,1,1"), "channel_order must be one of RGB, BGR, got 'RGBA'"),
    (("1.0", "RGB", "0,0", "1,1,1"), r"mean must have 3 values \(one per channel\), got \[0.0, 0.0\]"),
    (("1.0", "RGB", "0,0,0", "1,0,1"), r"std must not hold 0"),
    (("x", "RGB", "0,0,0", "1,1,1"), "scale must be a number, got 'x'"),
    (("1.0", "RGB", "a,b,c", "1,1,1"), "mean must be three numbers separated by commas, got 'a,b,c'"),
])
def test_bad_format_parameters_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        imaging.parse_pixel_format(*params)


# ---- preprocess stages -----------------------------------------------------------------------------

@pytest.mark.parametrize("module", ["preprocess", "preprocess_gpu"])
@pytest.mark.parametrize("fmt", ["BGR_255", "IMAGENET"])
def test_preprocess_stages_apply_the_configured_format(pb_utils, module, fmt):
    import importlib

    stage = importlib.import_module(f"generator.runtime.{module}")
    extra = {"output_device": "cpu"} if module == "preprocess_gpu" else {}
    model = stage.TritonPythonModel()
    pb_utils.Logger.messages.clear()
    model.initialize(_args({"height": "64", "width": "96", **FORMAT_PARAMS[fmt], **extra}))
    items = [ib.jpeg(50, 80, seed=1), ib.jpeg(120, 40, seed=2)]
    (response,) = model.execute([pb_utils.InferenceRequest(IMAGE=_batch(*items))])
    want = np.stack([imaging.preprocess_bytes(i, 64, 96, None, globals()[fmt])[0] for i in items])
    assert response.output("PREPROCESSED").tobytes() == want.tobytes()
    if module == "preprocess_gpu":  # the CUDA kernel makes RGB /255 only: the CPU path, said once
        assert model.engine is None and "is not the kernel's (RGB, /255)" in model.fallback_reason
        assert any("using the CPU path" in message for _, message in pb_utils.Logger.messages)


# ---- postprocess -----------------------------------------------------------------------------------

def _tensor(name, dtype, dims):
    return {"name": name, "data_type": f"TYPE_{dtype}", "dims": list(dims)}


TRANSFORM = _tensor("TRANSFORM", "FP32", (5,))
POST = {"score_threshold": "0.3", "iou_threshold": "0.5", "max_detections": "5"}


def _transforms(n):
    return np.tile(np.array([[0.5, 0, 16, 192, 96]], np.float32), (n, 1))  # 192x96 letterboxed into 96x96


def test_postprocess_decodes_two_detr_outputs_batched_over_requests(pb_utils):
    from generator.runtime import postprocess
    from generator.runtime.layouts import get_layout

    model = postprocess.TritonPythonModel()
    inputs = [_tensor("RAW_0", "FP32", (6, 4)), _tensor("RAW_1", "FP32", (6, 3)), TRANSFORM]
    model.initialize(_args({**POST, "layout": "detr", "input_height": "96", "input_width": "96",
                            "scores": "logits"}, inputs))
    assert model.inputs == ["RAW_0", "RAW_1"]
    rng = np.random.default_rng(0)
    per = [(rng.uniform(0.2, 0.6, (n, 6, 4)).astype(np.float32), rng.normal(0, 2, (n, 6, 3)).astype(np.float32))
           for n in (2, 1, 3)]
    requests = [pb_utils.InferenceRequest(RAW_0=b, RAW_1=s, TRANSFORM=_transforms(len(b))) for b, s in per]
    responses = model.execute(requests)
    layout = get_layout("detr", height=96, width=96, scores="logits")
    for (b, s), response in zip(per, responses):
        want = boxes.postprocess([b, s], _transforms(len(b)), 0.3, 0.5, 5, 1024, layout)
        assert not response.has_error()
        np.testing.assert_array_equal(response.output("num_detections")[:, 0], want[0])
        for name, w in zip(("boxes", "scores", "classes"), want[1:]):
            np.testing.assert_array_equal(response.output(name), w)
    assert responses[0].output("num_detections")[:, 0].sum() > 0


def test_a_request_that_does_not_fit_fails_alone(pb_utils):
    from generator.runtime import postprocess

    model = postprocess.TritonPythonModel()
    model.initialize(_args(POST, [_tensor("RAW", "FP32", (7, 40)), TRANSFORM]))
    rng = np.random.default_rng(1)
    good = rng.uniform(0, 1, (2, 7, 40)).astype(np.float32) * np.float32([[90], [90], [20], [20], [1], [1], [1]])
    other = rng.uniform(0, 1, (1, 7, 40)).astype(np.float32) * np.float32([[90], [90], [20], [20], [1], [1], [1]])
    bad = good[:1]  # with a TRANSFORM row of 4 values: its boxes cannot be mapped back
    responses = model.execute([pb_utils.InferenceRequest(RAW=good, TRANSFORM=_transforms(2)),
                               pb_utils.InferenceRequest(RAW=bad, TRANSFORM=np.ones((1, 4), np.float32)),
                               pb_utils.InferenceRequest(RAW=other, TRANSFORM=_transforms(1))])
    assert [r.has_error() for r in responses] == [False, True, False]
    assert responses[1].error().message().startswith("postprocess (anchor-free): ")
    for raw, response in ((good, responses[0]), (other, responses[2])):
        want = boxes.postprocess(raw, _transforms(len(raw)), 0.3, 0.5, 5)
        np.testing.assert_array_equal(response.output("num_detections")[:, 0], want[0])
        np.testing.assert_array_equal(response.output("boxes"), want[1])


def test_postprocess_refuses_inputs_its_layout_does_not_decode(pb_utils):
    from generator.runtime import postprocess

    with pytest.raises(ValueError, match=r"m: the config's inputs do not fit layout 'end-to-end'"):
        postprocess.TritonPythonModel().initialize(
            _args({**POST, "layout": "end-to-end"}, [_tensor("RAW", "FP32", (7, 64)), TRANSFORM]))
