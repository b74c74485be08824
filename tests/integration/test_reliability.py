"""Bad input to the served ensemble, on the real bundled server: each bad request fails
alone with a message naming the problem, the good requests batched with it are answered
correctly, odd-but-valid images are converted, and the server keeps serving."""

import concurrent.futures as cf
import threading

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import image_bytes as ib
from generator.runtime import imaging

from .conftest import MAX_BATCH, OPTIONS
from .reference import ENSEMBLE, assert_matches_offline
LIMIT = f"over the limit of {imaging.DEFAULT_MAX_PIXELS:,} (max_pixels of the preprocess model)"

GOOD = [ib.jpeg(40 + 3 * i, 56 - 2 * i, seed=i) for i in range(4)] + [ib.png(ib.noise(33, 47, seed=9))]

# name -> (items of one request, what its error must say)
BAD = {
    "truncated JPEG": ([ib.jpeg(64, 64, seed=3)[:400]], "IMAGE[0]: cannot decode 400 bytes as JPEG (corrupt, truncated"),
    "JPEG cut inside its header": ([ib.jpeg(64, 64)[:90]], "IMAGE[0]: cannot decode 90 bytes as JPEG: the header is corrupt"),
    "truncated PNG": ([ib.png(ib.noise(64, 64))[:-30]], "as PNG (corrupt, truncated"),
    "non-image bytes": ([b"GET / HTTP/1.1\r\n\r\n"], "IMAGE[0]: cannot decode 18 bytes as an image: not JPEG, PNG, BMP, GIF or WebP"),
    "empty bytes": ([b""], "IMAGE[0]: empty input (0 bytes)"),
    "PNG bomb 20000x20000": ([ib.png_bomb()], f"IMAGE[0]: PNG header says 20000x20000 = 400,000,000 pixels, {LIMIT}"),
    "JPEG header 20000x20000": ([ib.jpeg_claiming()], f"IMAGE[0]: JPEG header says 20000x20000 = 400,000,000 pixels, {LIMIT}"),
    "WebP canvas 20000x20000": ([ib.webp_claiming()], "IMAGE[0]: WebP header says 20000x20000"),
    "TIFF (size unreadable before decoding)": ([ib.pil(ib.noise(8, 8), "TIFF")], "not JPEG, PNG, BMP, GIF or WebP"),
    "bad second item": ([GOOD[0], b"\x89PNG\r\n\x1a\n broken"], "IMAGE[1]: cannot decode 15 bytes as PNG: the header is corrupt"),
}

# converted and answered, not refused
ODD = {
    "1x1 PNG": ib.png(np.full((1, 1, 3), 180, np.uint8)),
    "1x1 JPEG": ib.jpeg(1, 1),
    "grayscale PNG": ib.png(ib.noise(30, 40, 1)),
    "RGBA PNG": ib.png(ib.noise(30, 40, 4)),
    "16-bit PNG": ib.png(ib.noise(30, 40, 3, dtype=np.uint16)),
    "16-bit grayscale PNG": ib.png(ib.noise(30, 40, 1, dtype=np.uint16)),
    "palette PNG": ib.every_format(30, 40)["png-palette"],
    "grayscale JPEG": ib.every_format(30, 40)["jpeg-gray"],
    "progressive JPEG": ib.every_format(30, 40)["jpeg-progressive"],
    "BMP": ib.every_format(30, 40)["bmp"],
    "WebP with alpha": ib.every_format(30, 40)["webp-alpha"],
    "1000x4 strip": ib.png(ib.noise(4, 1000)),
}


def _array(items):
    arr = np.empty((len(items), 1), dtype=object)
    arr[:, 0] = items
    return arr


def _stats(client, model):
    s = client.get_inference_statistics(model).model_stats[0]
    return s.inference_count, s.execution_count


def _send_concurrently(url, payloads):
    """Every payload its own request, all released together so the dynamic batchers combine them."""
    start = threading.Barrier(len(payloads))
    local = threading.local()

    def send(items):
        if not hasattr(local, "client"):
            local.client = grpcclient.InferenceServerClient(url)
        tensor = grpcclient.InferInput("IMAGE", [len(items), 1], "BYTES")
        tensor.set_data_from_numpy(_array(items))
        start.wait(timeout=60)
        try:
            return local.client.infer(ENSEMBLE, [tensor], client_timeout=120)
        except InferenceServerException as exc:
            return exc

    with cf.ThreadPoolExecutor(len(payloads)) as pool:
        return list(pool.map(send, payloads))


def test_bad_requests_fail_alone_while_batched_with_good_ones(server, tiny_yolo_onnx):
    names = list(BAD) + list(ODD)
    payloads = []
    for i, name in enumerate(names):  # a bad or odd request, then a good one
        payloads.append(BAD[name][0] if name in BAD else [ODD[name]])
        payloads.append([GOOD[i % len(GOOD)]])
    stats = grpcclient.InferenceServerClient(server.endpoints.grpc)
    before = _stats(stats, "shapes_preprocess")
    outcomes = _send_concurrently(server.endpoints.grpc, payloads)
    inferences, executions = (a - b for a, b in zip(_stats(stats, "shapes_preprocess"), before))

    for i, name in enumerate(names):
        outcome, good = outcomes[2 * i], outcomes[2 * i + 1]
        if name in BAD:
            assert isinstance(outcome, InferenceServerException), f"{name}: answered, should fail"
            assert BAD[name][1] in outcome.message(), f"{name}: {outcome.message()}"
        else:
            assert not isinstance(outcome, Exception), f"{name}: {outcome}"
            assert_matches_offline(outcome, tiny_yolo_onnx, [ODD[name]], name)
        assert not isinstance(good, Exception), f"good request next to {name!r} failed: {good}"
        assert_matches_offline(good, tiny_yolo_onnx, [GOOD[i % len(GOOD)]], f"good request next to {name!r}")
    # the preprocess stage ran fewer batches than requests: bad and good requests shared batches
    assert inferences >= len(payloads) - len(BAD) and executions < inferences, (inferences, executions)
    print(f"\npreprocess: {inferences} images in {executions} executions for {len(payloads)} concurrent requests")
    _still_serving(server, tiny_yolo_onnx)


def _still_serving(server, onnx_path):
    assert server.process.poll() is None
    client = httpclient.InferenceServerClient(server.endpoints.http)
    for model in (ENSEMBLE, "shapes_preprocess", "shapes", "shapes_postprocess"):
        assert client.is_model_ready(model), model
    tensor = httpclient.InferInput("IMAGE", [2, 1], "BYTES")
    tensor.set_data_from_numpy(_array(GOOD[:2]), binary_data=True)
    assert_matches_offline(client.infer(ENSEMBLE, [tensor]), onnx_path, GOOD[:2], "follow-up request")
    client.close()


def _grpc_input(name, array, datatype):
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


@pytest.mark.parametrize("inputs,message", [
    (lambda: [_grpc_input("IMAGE", np.zeros((1, 1), np.float32), "FP32")],
     "inference input 'IMAGE' data-type is 'FP32', but model 'shapes_ensemble' expects 'BYTES'"),
    (lambda: [_grpc_input("IMAGE", _array([GOOD[0]]).reshape(1, 1, 1), "BYTES")],
     "unexpected shape for input 'IMAGE' for model 'shapes_ensemble'. Expected [-1,1], got [1,1,1]"),
    (lambda: [_grpc_input("IMAGE", np.array([GOOD[0], GOOD[1]], dtype=object), "BYTES")],
     "unexpected shape for input 'IMAGE' for model 'shapes_ensemble'. Expected [-1,1], got [2]"),
    (lambda: [_grpc_input("IMAGE", _array([GOOD[0]] * (MAX_BATCH + 1)), "BYTES")],
     f"inference request batch-size must be <= {MAX_BATCH} for 'shapes_ensemble'"),
    (lambda: [_grpc_input("IMAGE", np.empty((0, 1), dtype=object), "BYTES")],
     "expected 1 string elements for inference input 'IMAGE' for model 'shapes_ensemble', got 0"),
    (lambda: [_grpc_input("PICTURE", _array([GOOD[0]]), "BYTES")],
     "unexpected inference input 'PICTURE' for model 'shapes_ensemble'"),
    (lambda: [], "missing required input(s) ['IMAGE']"),
], ids=["fp32", "extra-dim", "no-batch-dim", "batch-over-max", "empty-batch", "wrong-name", "no-input"])
def test_wrong_dtype_or_shape_from_a_raw_grpc_client(server, inputs, message, tiny_yolo_onnx):
    client = grpcclient.InferenceServerClient(server.endpoints.grpc)
    with pytest.raises(InferenceServerException) as info:
        client.infer(ENSEMBLE, inputs())
    assert message in info.value.message()
    assert_matches_offline(client.infer(ENSEMBLE, [_grpc_input("IMAGE", _array([GOOD[3]]), "BYTES")]),
                           tiny_yolo_onnx, [GOOD[3]], "request after a refused one")


def test_wrong_dtype_and_shape_over_http(server, tiny_yolo_onnx):
    client = httpclient.InferenceServerClient(server.endpoints.http)
    tensor = httpclient.InferInput("IMAGE", [1, 1], "INT64")
    tensor.set_data_from_numpy(np.zeros((1, 1), np.int64))
    with pytest.raises(InferenceServerException, match="data-type is 'INT64', but model 'shapes_ensemble' expects 'BYTES'"):
        client.infer(ENSEMBLE, [tensor])
    tensor = httpclient.InferInput("IMAGE", [1, 3, 128, 128], "FP32")  # an already preprocessed tensor, wrong model
    tensor.set_data_from_numpy(np.zeros((1, 3, 128, 128), np.float32))
    with pytest.raises(InferenceServerException, match="data-type is 'FP32'"):
        client.infer(ENSEMBLE, [tensor])
    # the inner detector checks its own input: uint8 pixels (the uint8 hand-off) of its size
    tensor = httpclient.InferInput("images", [1, 3, 128, 128], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3, 128, 128), np.float32))
    with pytest.raises(InferenceServerException, match="data-type is 'FP32', but model 'shapes' expects 'UINT8'"):
        client.infer("shapes", [tensor])
    tensor = httpclient.InferInput("images", [1, 3, 64, 64], "UINT8")
    tensor.set_data_from_numpy(np.zeros((1, 3, 64, 64), np.uint8))
    with pytest.raises(InferenceServerException, match=r"unexpected shape for input 'images' for model 'shapes'. "
                                                      r"Expected \[-1,3,128,128\], got \[1,3,64,64\]"):
        client.infer("shapes", [tensor])
    client.close()  # an open HTTP connection holds Triton's shutdown for its 30 s exit timeout
    _still_serving(server, tiny_yolo_onnx)


def test_non_finite_values_sent_straight_to_the_inner_models(server):
    """A client that talks to the postprocess directly: NaN and inf raw outputs give answers
    (no detections from NaN), never a crashed stub. (The detector takes uint8 pixels, which
    cannot be non-finite; its raw outputs give the shape.)"""
    client = grpcclient.InferenceServerClient(server.endpoints.grpc)
    out = client.infer("shapes", [_grpc_input("images", np.zeros((2, 3, 128, 128), np.uint8), "UINT8")])
    raw = out.as_numpy("output0")
    transform = np.array([[1, 0, 0, 128, 128], [0, 0, 0, 0, 0]], np.float32)
    for fill in (np.nan, np.inf, -np.inf):
        res = client.infer("shapes_postprocess", [_grpc_input("RAW", np.full_like(raw, fill), "FP32"),
                                                  _grpc_input("TRANSFORM", transform, "FP32")])
        num = res.as_numpy("num_detections")
        assert num.shape == (2, 1) and (num >= 0).all() and (num <= OPTIONS["max_detections"]).all()
        if np.isnan(fill):
            assert (num == 0).all()
    for model in ("shapes", "shapes_postprocess"):
        assert client.is_model_ready(model)
