"""The embedded target with ``--runtime openvino`` on the real (bundled) Triton: its detector
stage opens OpenVINO inside the Python backend, and the served detections equal the
offline pipeline run on OpenVINO (and ONNX Runtime's, within INT8-free float noise)."""

import numpy as np
import pytest

from client import DetectionClient
from generator.repository.generate import generate
from generator.repository.targets import options_for
from generator.runtime import boxes, imaging
from generator.runtime.runners import open_runner
from generator.samples import write_samples
from generator.serve.server import TritonServer, free_port

from .conftest import MAX_BATCH, OPTIONS

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def openvino_server(tiny_yolo_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("served_openvino") / "repo"
    generate(tiny_yolo_onnx, "embedded", out, options_for("embedded", runtime="openvino", **OPTIONS))
    srv = TritonServer(out, free_port(), free_port(), free_port())
    srv.start().wait_ready(timeout=180)
    yield srv
    assert srv.stop() == 0, "Triton did not shut down cleanly"


def offline(runtime, onnx_path, items):
    """The same preprocess, ``runtime`` on the same ONNX, the same postprocess."""
    pre = [imaging.preprocess_bytes(b, 128, 128) for b in items]
    raw = open_runner(runtime, onnx_path, threads=1)(np.stack([p[0] for p in pre]))[0]
    return boxes.postprocess(raw, np.stack([p[1] for p in pre]), OPTIONS["score_threshold"],
                             OPTIONS["iou_threshold"], OPTIONS["max_detections"])


def test_served_openvino_detections_equal_offline(openvino_server, tiny_yolo_onnx, tmp_path):
    data = [p.read_bytes() for p in write_samples(tmp_path, MAX_BATCH)]
    num, bxs, scores, classes = offline("openvino", tiny_yolo_onnx, data)
    with DetectionClient(openvino_server.endpoints.grpc, model="shapes_ensemble") as c:
        served = c.detect_batch(data)
    assert [len(s) for s in served] == num.tolist() and sum(num) > 0
    for i, dets in enumerate(served):
        for j, d in enumerate(dets):
            np.testing.assert_allclose([d.x1, d.y1, d.x2, d.y2], bxs[i, j], atol=1e-3)
            assert d.score == pytest.approx(float(scores[i, j]), abs=1e-5)
            assert d.class_id == classes[i, j]
    ort_num = offline("onnxruntime", tiny_yolo_onnx, data)[0]
    assert np.abs(ort_num - num).max() <= 1  # another float engine: at most a borderline box apart
