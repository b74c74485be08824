"""Requests against the real server: SDK over gRPC and HTTP, plain tritonclient,
served == offline, and a corrupt image inside a concurrent burst."""

import concurrent.futures as cf

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from client import DetectionClient, InferenceError, ModelNotFoundError, ServerUnavailableError
from generator.runtime import boxes, imaging
from generator.samples import write_samples

from .conftest import MAX_BATCH, OPTIONS


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return write_samples(tmp_path_factory.mktemp("samples"), 12)


def offline(onnx_path, image_bytes):
    """ONNX Runtime + the same postprocess, no server."""
    pre = [imaging.preprocess_bytes(b, 128, 128) for b in image_bytes]
    x = np.stack([p[0] for p in pre])
    t = np.stack([p[1] for p in pre])
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    raw = sess.run(None, {"images": x})[0]
    return boxes.postprocess(raw, t, OPTIONS["score_threshold"], OPTIONS["iou_threshold"], OPTIONS["max_detections"])


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sdk_detects_over_both_protocols(server, samples, protocol, tiny_yolo_onnx):
    url = server.endpoints.grpc if protocol == "grpc" else server.endpoints.http
    with DetectionClient(url, protocol=protocol, model="shapes_ensemble") as c:
        info = c.info()
        assert info.max_batch_size == MAX_BATCH and info.class_names == ("circle", "rectangle", "triangle")
        assert info.input_size == (128, 128)
        results = c.detect_batch(samples)  # 12 images: split into requests of <= 8
        single = c.detect(samples[3])
        from_array = c.detect(imaging.decode_image(samples[1].read_bytes()))  # RGB array, sent as PNG
    assert len(results) == len(samples)
    assert sum(len(r) for r in results) > 0, "the test model is built to give detections"
    assert single == results[3]
    for dets, path in zip(results, samples):
        h, w = imaging.decode_image(path.read_bytes()).shape[:2]
        for d in dets:
            assert 0 <= d.x1 <= d.x2 <= w and 0 <= d.y1 <= d.y2 <= h
            assert d.score > OPTIONS["score_threshold"] and d.class_name in info.class_names
    # PNG sample decoded and re-encoded losslessly as PNG: the same detections
    assert [(d.class_id, round(d.score, 4)) for d in from_array] == [(d.class_id, round(d.score, 4)) for d in results[1]]


def test_served_detections_equal_offline_onnx_runtime(server, samples, tiny_yolo_onnx):
    data = [p.read_bytes() for p in samples[:MAX_BATCH]]
    num, bxs, scores, classes = offline(tiny_yolo_onnx, data)
    with DetectionClient(server.endpoints.grpc, model="shapes_ensemble") as c:
        served = c.detect_batch(data)
    assert [len(s) for s in served] == num.tolist()
    for i, dets in enumerate(served):
        for j, d in enumerate(dets):
            np.testing.assert_allclose([d.x1, d.y1, d.x2, d.y2], bxs[i, j], atol=1e-3)
            assert d.score == pytest.approx(float(scores[i, j]), abs=1e-5)
            assert d.class_id == classes[i, j]


def test_plain_tritonclient_grpc_and_http(server, samples):
    data = np.array([[samples[0].read_bytes()], [samples[1].read_bytes()]], dtype=object)
    g = grpcclient.InferenceServerClient(server.endpoints.grpc)
    gi = grpcclient.InferInput("IMAGE", list(data.shape), "BYTES")
    gi.set_data_from_numpy(data)
    gr = g.infer("shapes_ensemble", [gi])
    h = httpclient.InferenceServerClient(server.endpoints.http)
    hi = httpclient.InferInput("IMAGE", list(data.shape), "BYTES")
    hi.set_data_from_numpy(data, binary_data=True)
    hr = h.infer("shapes_ensemble", [hi])
    for name, shape in (("num_detections", (2, 1)), ("boxes", (2, 50, 4)), ("scores", (2, 50)), ("classes", (2, 50))):
        assert gr.as_numpy(name).shape == shape
        np.testing.assert_array_equal(gr.as_numpy(name), hr.as_numpy(name))


def test_corrupt_image_in_a_concurrent_burst_fails_alone(server, samples):
    good = [p.read_bytes() for p in samples]
    corrupt = good[0][: len(good[0]) // 3]  # truncated JPEG
    payloads = [[good[i % len(good)]] for i in range(24)]
    payloads[7] = [good[1], b"this is not an image"]
    payloads[15] = [corrupt]

    def send(items):
        c = DetectionClient(server.endpoints.grpc, model="shapes_ensemble")
        try:
            return c.detect_batch(items)
        finally:
            c.close()

    with cf.ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(send, p) for p in payloads]
        outcomes = []
        for f in futures:
            try:
                outcomes.append(f.result())
            except InferenceError as exc:
                outcomes.append(exc)
    failed = [i for i, o in enumerate(outcomes) if isinstance(o, Exception)]
    assert failed == [7, 15]
    assert "IMAGE[1]" in str(outcomes[7]) and "cannot decode" in str(outcomes[7])
    # the bad items failed alone and the instance keeps serving
    assert "IMAGE[0]" in str(outcomes[15])
    with DetectionClient(server.endpoints.http, protocol="http", model="shapes_ensemble") as c:
        assert len(c.detect(good[2])) == len(outcomes[2][0])


def test_unknown_model_and_unreachable_server(server):
    with pytest.raises(ModelNotFoundError, match="'nope' is not served or not ready; ready models: .*shapes_ensemble"):
        DetectionClient(server.endpoints.grpc, model="nope").info()
    with pytest.raises(ModelNotFoundError):
        DetectionClient(server.endpoints.http, protocol="http", model="nope").info()
    from generator.serve.server import free_port

    for protocol in ("grpc", "http"):
        with pytest.raises(ServerUnavailableError):
            DetectionClient(f"127.0.0.1:{free_port()}", protocol=protocol, timeout=5).detect(b"x")


def test_eval_of_the_endpoint_equals_offline_at_the_same_thresholds(server, tiny_yolo_onnx, tmp_path):
    import json

    from click.testing import CliRunner

    from generator.cli import cli
    from generator.data.synth import synthesize

    data = synthesize(tmp_path / "shapes", 24, seed=5, imgsz=128, classes=3, progress=False)
    served = CliRunner().invoke(cli, ["eval", "--data", str(data), "--url", server.endpoints.grpc,
                                      "--ensemble", "shapes_ensemble", "--json"])
    assert served.exit_code == 0, served.output
    thresholds = ["--score-threshold", str(OPTIONS["score_threshold"]), "--iou-threshold",
                  str(OPTIONS["iou_threshold"]), "--max-detections", str(OPTIONS["max_detections"])]
    offline = CliRunner().invoke(cli, ["eval", "--data", str(data), "--onnx", str(tiny_yolo_onnx), "--json", *thresholds])
    assert offline.exit_code == 0, offline.output
    a, b = json.loads(served.output), json.loads(offline.output)
    assert a["detections"] == b["detections"] > 0
    assert a["map50_95"] == pytest.approx(b["map50_95"], abs=1e-6) and a["map50"] == pytest.approx(b["map50"], abs=1e-6)
