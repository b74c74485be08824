"""What the served ensemble must answer, computed without a server: the same
preprocess, ONNX Runtime on the same ONNX, the same postprocess."""

from functools import lru_cache

import numpy as np
import onnxruntime as ort

from generator.runtime import boxes, imaging

from .conftest import OPTIONS

ENSEMBLE = "shapes_ensemble"


@lru_cache(maxsize=4)
def _session(path: str) -> ort.InferenceSession:
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def offline(onnx_path, items):
    """What the ensemble must answer: the same preprocess, ONNX Runtime, the same postprocess."""
    pre = [imaging.preprocess_bytes(b, 128, 128) for b in items]
    raw = _session(str(onnx_path)).run(None, {"images": np.stack([p[0] for p in pre])})[0]
    return boxes.postprocess(raw, np.stack([p[1] for p in pre]), OPTIONS["score_threshold"],
                             OPTIONS["iou_threshold"], OPTIONS["max_detections"])


def assert_matches_offline(result, onnx_path, items, what):
    num, bxs, scores, classes = offline(onnx_path, items)
    got_num = result.as_numpy("num_detections")[:, 0]
    assert got_num.tolist() == num.tolist(), what
    for i, n in enumerate(num):
        np.testing.assert_allclose(result.as_numpy("boxes")[i, :n], bxs[i, :n], atol=2e-3, err_msg=what)
        np.testing.assert_allclose(result.as_numpy("scores")[i, :n], scores[i, :n], atol=1e-4, err_msg=what)
