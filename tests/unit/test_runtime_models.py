"""The in-server models, imported and called with a stand-in for Triton's utils."""

import json

import cv2
import numpy as np
import pytest

from generator.runtime import boxes, imaging


def _args(parameters, inputs=(), outputs=(), repo="", version="1"):
    """Triton's ``initialize`` args; a tensor is a name, or a dict with its data type and dims."""
    def tensors(items):
        return [t if isinstance(t, dict) else {"name": t} for t in items]

    config = {"parameters": {k: {"string_value": v} for k, v in parameters.items()},
              "input": tensors(inputs), "output": tensors(outputs)}
    return {"model_config": json.dumps(config), "model_repository": repo, "model_version": version}


TRANSFORM_INPUT = {"name": "TRANSFORM", "data_type": "TYPE_FP32", "dims": [5]}


def _jpeg(h, w, seed=0):
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _batch(*items):
    arr = np.empty((len(items), 1), dtype=object)
    arr[:, 0] = items
    return arr


def test_preprocess_fails_only_the_bad_request(pb_utils):
    from generator.runtime import preprocess

    model = preprocess.TritonPythonModel()
    model.initialize(_args({"height": "96", "width": "128", "dtype": "FP32"}))
    good = pb_utils.InferenceRequest(IMAGE=_batch(_jpeg(50, 80), _jpeg(200, 100, 1)))
    bad = pb_utils.InferenceRequest(IMAGE=_batch(_jpeg(50, 80), b"\xff\xd8\xff garbage"))
    also_good = pb_utils.InferenceRequest(IMAGE=_batch(_jpeg(10, 10)))
    responses = model.execute([good, bad, also_good])
    assert [r.has_error() for r in responses] == [False, True, False]
    assert "IMAGE[1]" in responses[1].error().message() and "cannot decode" in responses[1].error().message()
    pre = responses[0].output("PREPROCESSED")
    assert pre.shape == (2, 3, 96, 128) and pre.dtype == np.float32
    np.testing.assert_allclose(responses[0].output("TRANSFORM")[1], [0.48, 40, 0, 100, 200], atol=1e-5)
    expected, _ = imaging.preprocess_bytes(_jpeg(10, 10), 96, 128)
    np.testing.assert_array_equal(responses[2].output("PREPROCESSED")[0], expected)


def test_preprocess_casts_for_fp16_detectors(pb_utils):
    from generator.runtime import preprocess

    model = preprocess.TritonPythonModel()
    model.initialize(_args({"height": "32", "width": "32", "dtype": "FP16"}))
    (resp,) = model.execute([pb_utils.InferenceRequest(IMAGE=_batch(_jpeg(20, 20)))])
    assert resp.output("PREPROCESSED").dtype == np.float16


def test_postprocess_batches_requests_and_splits_back(pb_utils):
    from generator.runtime import postprocess

    model = postprocess.TritonPythonModel()
    model.initialize(_args({"score_threshold": "0.3", "iou_threshold": "0.5", "max_detections": "20"},
                           [{"name": "RAW", "data_type": "TYPE_FP32", "dims": [7, 50]}, TRANSFORM_INPUT]))
    rng = np.random.default_rng(0)
    raws = [rng.uniform(0, 1, (n, 7, 50)).astype(np.float32) * [[100], [100], [30], [30], [1], [1], [1]]
            for n in (1, 3, 2)]
    ts = [np.tile(np.array([[0.5, 10, 0, 400, 300]], np.float32), (r.shape[0], 1)) for r in raws]
    responses = model.execute([pb_utils.InferenceRequest(RAW=r, TRANSFORM=t) for r, t in zip(raws, ts)])
    expected = boxes.postprocess(np.concatenate(raws), np.concatenate(ts), 0.3, 0.5, 20)
    got = [np.concatenate([r.output(name) for r in responses]) for name in ("num_detections", "boxes", "scores", "classes")]
    assert [r.output("boxes").shape[0] for r in responses] == [1, 3, 2]
    np.testing.assert_array_equal(got[0][:, 0], expected[0])
    for g, e in zip(got[1:], expected[1:]):
        np.testing.assert_array_equal(g, e)


def test_embedded_detector_runs_onnx_runtime(pb_utils, contract_onnx, tmp_path):
    from generator.runtime import detector

    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.onnx").write_bytes(contract_onnx.read_bytes())
    model = detector.TritonPythonModel()
    model.initialize(_args({"onnx_file": "model.onnx", "intra_op_threads": "1"}, ["images"], ["output0"],
                           repo=str(tmp_path)))
    xs = [np.random.default_rng(i).uniform(0, 1, (n, 3, 64, 64)).astype(np.float32) for i, n in enumerate((2, 1))]
    responses = model.execute([pb_utils.InferenceRequest(images=x) for x in xs])
    import onnxruntime as ort

    sess = ort.InferenceSession(str(contract_onnx), providers=["CPUExecutionProvider"])
    for x, r in zip(xs, responses):
        np.testing.assert_allclose(r.output("output0"), sess.run(None, {"images": x})[0], rtol=1e-5, atol=1e-6)


def test_bad_image_error_is_invalid_argument(pb_utils):
    """A bad image is the client's fault: status INVALID_ARG (HTTP 400), not INTERNAL, so no retry."""
    from generator.runtime import preprocess

    model = preprocess.TritonPythonModel()
    model.initialize({"model_config": json.dumps({"parameters": {
        "height": {"string_value": "64"}, "width": {"string_value": "64"}}})})
    response = model.execute([pb_utils.InferenceRequest(IMAGE=np.array([[b"not an image"]], dtype=object))])[0]
    assert response.has_error() and response.error().code() == pb_utils.TritonError.INVALID_ARG
    assert response.error().message().startswith("IMAGE[0]: ")
