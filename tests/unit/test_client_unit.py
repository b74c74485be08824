"""SDK pieces that need no server: input encoding, result types, settings, error
mapping, model-info parsing, shared-memory bookkeeping."""

import os
import socket
import ssl

import cv2
import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from client import (
    AsyncDetectionClient, ClientConfigError, Detection, DetectionClient, DetectionClientError, InferenceError,
    InvalidImageError, ModelNotFoundError, PermissionDeniedError, RequestTimeoutError, ServerUnavailableError,
    TLSError, encode_png, to_bytes,
)
from client.connect import ssl_context
from client.detection import from_arrays
from client.errors import RegistrationLostError, translate
from client.info import TensorSpec, model_info
from client.options import TLSOptions, _split_url, make_options
from client.shm import SharedMemoryPool, output_layout
from client.steps import Sleep, advance


@pytest.mark.parametrize("shape", [(5, 7, 3), (1, 1, 3), (33, 17), (480, 640, 3)])
def test_png_encoder_is_lossless(shape):
    arr = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    decoded = cv2.imdecode(np.frombuffer(encode_png(arr), np.uint8), cv2.IMREAD_UNCHANGED)
    expected = arr[:, :, ::-1] if arr.ndim == 3 else arr  # OpenCV decodes to BGR
    np.testing.assert_array_equal(decoded, expected)


def test_to_bytes_accepts_paths_bytes_and_arrays(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    assert to_bytes(path) == b"abc" and to_bytes(str(path)) == b"abc" and to_bytes(b"xyz") == b"xyz"
    assert to_bytes(np.zeros((2, 2, 3), np.uint8)).startswith(b"\x89PNG")


@pytest.mark.parametrize("bad,message", [
    (b"", "empty image bytes"), (12, "unsupported image input of type int"),
    (np.zeros((2, 2, 3), np.float32), "must be uint8"), (np.zeros((2, 2, 4), np.uint8), "HxW or HxWx3"),
    ("/nonexistent/file.jpg", "cannot read image file /nonexistent/file.jpg"),
])
def test_to_bytes_errors(bad, message):
    with pytest.raises(InvalidImageError, match=message.replace("(", r"\(")):
        to_bytes(bad)


def test_from_arrays_builds_typed_detections():
    num = np.array([[2], [0]], np.int32)
    boxes = np.zeros((2, 3, 4), np.float32)
    boxes[0, 0] = [1, 2, 3, 4]
    boxes[0, 1] = [5, 6, 7, 9]
    scores = np.array([[0.9, 0.5, 0], [0, 0, 0]], np.float32)
    classes = np.array([[1, 0, -1], [-1, -1, -1]], np.int32)
    out = from_arrays(num, boxes, scores, classes, ["cat", "dog"])
    assert out[1] == []
    assert out[0][0] == Detection(1, 2, 3, 4, pytest.approx(0.9), 1, "dog")
    assert out[0][1].height == 3 and out[0][1].to_dict()["class_name"] == "cat"


@pytest.mark.parametrize("url,protocol,expected", [
    ("localhost", "grpc", ("localhost:8001", False)), ("http://h:9000/", "http", ("h:9000", False)),
    ("https://h", "http", ("h:8000", True)), ("127.0.0.1:8001", "grpc", ("127.0.0.1:8001", False)),
])
def test_url_forms(url, protocol, expected):
    assert _split_url(url, protocol) == expected


@pytest.mark.parametrize("url,protocol", [("grpcs://h", "grpc"), ("https://h:9", "http"), ("http://h", "http"),
                                          ("h:1", "grpc")])
def test_protocol_follows_the_url_scheme(url, protocol):
    options = make_options(url, None, "m", insecure=url.startswith(("https", "grpcs")))
    assert options.protocol == protocol and (options.tls is not None) == url.startswith(("https", "grpcs"))


@pytest.mark.parametrize("kwargs,message", [
    (dict(url="https://h", protocol="grpc"), "names the http protocol but protocol='grpc'"),
    (dict(url="h", protocol="ftp"), "protocol must be 'grpc' or 'http', got 'ftp'"),
    (dict(url="h", timeout=0), "timeout must be > 0, got 0"),
    (dict(url="h", retries=-1), "retries must be >= 0, got -1"),
    (dict(url="h", backoff=-0.5), "backoff must be >= 0, got -0.5"),
    (dict(url="h", root_certificates="ca.pem"), "root_certificates given but TLS is off"),
    (dict(url="h", insecure=True), "insecure given but TLS is off"),
    (dict(url="grpcs://h", ssl=False), "asks for TLS but ssl=False"),
    (dict(url="h", ssl=True, root_certificates="/no/such/ca.pem"), "root_certificates file not found: /no/such/ca.pem"),
    (dict(url="h", ssl=True, private_key=__file__), "needs both private_key and certificate_chain"),
    (dict(url="h", transport="carrier-pigeon"), "transport must be one of network, shm, cuda_shm"),
    (dict(url="h", backoff_max=-1), "backoff_max must be >= 0, got -1"),
    (dict(url="h", transport="shm", shared_memory=True), None),
])
def test_bad_settings_name_the_setting(kwargs, message):
    if message is None:  # consistent, accepted
        assert make_options(kwargs.pop("url"), None, "m", **kwargs).transport == "shm"
        return
    with pytest.raises(ClientConfigError) as info:  # a ValueError and a DetectionClientError
        make_options(kwargs.pop("url"), kwargs.pop("protocol", None), "m", **kwargs)
    assert message in str(info.value) and isinstance(info.value, ValueError)


def test_settings_reach_the_client():
    c = DetectionClient("grpcs://example.org", model="m", model_version=2, insecure=True, shared_memory=True,
                        headers={"X-Key": "v"}, retries=5)
    assert (c.url, c.protocol, c.model_version, c.transport) == ("example.org:8001", "grpc", "2", "shm")
    assert c.options.tls == TLSOptions(insecure=True) and c.options.retries == 5
    assert c.options.wire_headers() == {"x-key": "v"}  # gRPC metadata keys are lower case
    assert make_options("http://h", None, "m", headers={"X-Key": "v"}).wire_headers() == {"X-Key": "v"}
    assert "grpcs server at example.org:8001" in repr(c)
    c.close()


def test_cuda_shared_memory_without_a_gpu_is_a_clear_error():
    try:
        from cuda.bindings import runtime as cudart

        if cudart.cudaGetDeviceCount()[1] > 0:
            pytest.skip("a GPU is present: covered by the gpu-marked integration test")
    except ImportError:
        pass
    with pytest.raises(DetectionClientError, match="transport='cuda_shm' needs an NVIDIA GPU"):
        AsyncDetectionClient("h", transport="cuda_shm")


def _ise(message, status):
    return InferenceServerException(message, status=status)


@pytest.mark.parametrize("exc,kind,retryable", [
    (_ise("failed to connect to all addresses", "StatusCode.UNAVAILABLE"), ServerUnavailableError, True),
    (_ise("Service Unavailable", "503"), ServerUnavailableError, True),
    (ConnectionRefusedError(111, "Connection refused"), ServerUnavailableError, True),
    (ConnectionResetError(104, "reset"), ServerUnavailableError, True),
    (_ise("Unable to find shared memory region: 'r'", "StatusCode.NOT_FOUND"), RegistrationLostError, True),
    (_ise("Request for unknown model: 'x' is not found", "400"), ModelNotFoundError, False),
    (_ise("IMAGE[0]: cannot decode", "StatusCode.INTERNAL"), InferenceError, False),
    (_ise("bad shape", "StatusCode.INVALID_ARGUMENT"), InferenceError, False),
    (_ise("bad shape", "400"), InferenceError, False),
    (_ise("Deadline Exceeded", "StatusCode.DEADLINE_EXCEEDED"), RequestTimeoutError, False),
    (socket.timeout("timed out"), RequestTimeoutError, False),
    (_ise("denied", "StatusCode.PERMISSION_DENIED"), PermissionDeniedError, False),
    (_ise("This API is restricted, expecting header 'x-key'", "403"), PermissionDeniedError, False),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), TLSError, False),
    (_ise("Tls handshake failed: CERTIFICATE_VERIFY_FAILED", "StatusCode.UNAVAILABLE"), TLSError, False),
    (RuntimeError("odd"), InferenceError, False),
])
def test_error_mapping(exc, kind, retryable):
    error = translate(exc, "grpc server at h:1", "inference", "m")
    assert type(error) is kind and error.retryable is retryable
    assert "h:1" in str(error)


def test_tls_errors_say_how_to_fix_them():
    error = translate(ssl.SSLCertVerificationError(1, "certificate verify failed"), "http server at h:1", "x", "m")
    assert "root_certificates=" in str(error) and "insecure=True" in str(error)


GRPC_CONFIG = {"config": {"name": "e", "platform": "ensemble", "max_batch_size": 4, "parameters": {
    "class_names": {"string_value": '["cat", "dog"]'}, "input_height": {"string_value": "320"},
    "input_width": {"string_value": "256"}}}}
HTTP_CONFIG = dict(GRPC_CONFIG["config"])
GRPC_META = {"name": "e", "versions": ["1", "2"], "platform": "ensemble",
             "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": ["-1", "1"]}],
             "outputs": [{"name": n, "datatype": t, "shape": ["-1"] + s} for n, t, s in (
                 ("num_detections", "INT32", ["1"]), ("boxes", "FP32", ["20", "4"]), ("scores", "FP32", ["20"]),
                 ("classes", "INT32", ["20"]))]}
HTTP_META = {**GRPC_META, "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [-1, 1]}],
             "outputs": [{**o, "shape": [int(d) for d in o["shape"]]} for o in GRPC_META["outputs"]]}


def test_model_info_is_the_same_from_both_protocols():
    a, b = model_info("e", "2", GRPC_CONFIG, GRPC_META), model_info("e", "2", HTTP_CONFIG, HTTP_META)
    assert a == b
    assert (a.max_batch_size, a.class_names, a.input_size, a.versions) == (4, ("cat", "dog"), (320, 256), ("1", "2"))
    assert a.max_detections == 20 and a.input_name == "IMAGE"
    assert a.output("boxes") == TensorSpec("boxes", "FP32", (20, 4)) and a.output("boxes").item_bytes == 320
    with pytest.raises(DetectionClientError, match="has no output 'masks'"):
        a.output("masks")


def test_variable_size_outputs_cannot_use_shared_memory():
    with pytest.raises(DetectionClientError, match="no fixed size"):
        TensorSpec("boxes", "FP32", (-1, 4)).item_bytes


def _perform(plan, answer=lambda call: True):
    """Drive a plan, answering every call with ``answer(call)``; the calls (and sleeps) made."""
    calls, outcome = [], (None, None)
    while True:
        done, step = advance(plan, outcome)
        if done:
            return calls
        calls.append(step)
        if isinstance(step, Sleep):
            outcome = (None, None)
            continue
        try:
            outcome = (answer(step), None)
        except DetectionClientError as exc:
            outcome = (None, exc)


def _info():
    return model_info("e", "", GRPC_CONFIG, GRPC_META)


def test_output_layout_is_aligned_and_big_enough_for_a_full_batch():
    layout, size = output_layout(_info())
    assert [o % 64 for o, _ in layout.values()] == [0, 0, 0, 0]
    assert layout["boxes"][1] == 4 * 20 * 4 * 4 and size >= sum(c for _, c in layout.values())


def test_shared_memory_regions_are_registered_once_reregistered_after_a_loss_and_cleaned_on_close():
    pool = SharedMemoryPool("shm")
    slot = pool.acquire()
    calls = _perform(pool.prepare(slot, 1000, _info()))
    assert [c.method for c in calls] == ["register_system_shared_memory"] * 2
    names = pool.region_names
    assert all(os.path.exists(f"/dev/shm/{n}") for n in names)
    assert _perform(pool.prepare(slot, 1000, _info())) == []  # registered already
    pool.invalidate()  # the server was lost
    again = [c.method for c in _perform(pool.prepare(slot, 1000, _info()))]
    assert again == ["unregister_system_shared_memory", "register_system_shared_memory"] * 2
    bigger = _perform(pool.prepare(slot, 1 << 20, _info()))  # the input region grows
    assert [c.method for c in bigger] == ["unregister_system_shared_memory", "register_system_shared_memory"]
    assert slot.input.size >= 1 << 20
    pool.release(slot)
    closing = _perform(pool.close())
    assert sorted(c.method for c in closing) == ["unregister_system_shared_memory"] * 2
    assert not any(os.path.exists(f"/dev/shm/{n}") for n in names + pool.region_names)


def test_close_waits_for_regions_the_server_still_holds():
    pool = SharedMemoryPool("shm")
    slot = pool.acquire()
    _perform(pool.prepare(slot, 10, _info()))
    refusals = [InferenceError("Cannot unregister shared memory region 'r', it is currently in use.")] * 2

    def busy(call):
        if refusals:
            raise refusals.pop()
        return True

    steps = _perform(pool.close(), busy)
    assert [type(s).__name__ for s in steps] == ["Call", "Sleep", "Call", "Sleep", "Call", "Call"]
    assert not any(os.path.exists(f"/dev/shm/{n}") for n in pool.region_names)


def test_a_slot_left_without_an_answer_is_not_reused_and_freed_later():
    pool = SharedMemoryPool("shm")
    slot = pool.acquire()
    _perform(pool.prepare(slot, 10, _info()))
    pool.retire(slot)  # e.g. the request timed out: the server may still write its outputs
    fresh = pool.acquire()
    assert fresh is not slot
    old_names = [r.name for r in slot.regions()]
    refusals = [InferenceError("Cannot unregister shared memory region, it is currently in use.")]

    def busy(call):
        if refusals and call.method.startswith("unregister"):
            raise refusals.pop()
        return True

    first = _perform(pool.prepare(fresh, 10, _info()), busy)  # the server still holds it: kept for later
    assert all(os.path.exists(f"/dev/shm/{n}") for n in old_names)
    assert [c.method for c in first].count("register_system_shared_memory") == 2
    pool.release(fresh)
    second = _perform(pool.prepare(fresh, 10, _info()))
    assert [c.method for c in second] == ["unregister_system_shared_memory"] * 2
    assert not any(os.path.exists(f"/dev/shm/{n}") for n in old_names)
    again, another = pool.acquire(), pool.acquire()
    _perform(pool.prepare(another, 10, _info()))  # a new slot: names never collide with live ones
    assert again is fresh and len(set(pool.region_names)) == len(pool.region_names) == 4
    _perform(pool.close())


def test_failed_registration_is_retried_on_next_use_and_finalizer_unlinks():
    pool = SharedMemoryPool("shm")
    slot = pool.acquire()

    def refuse(call):
        raise ServerUnavailableError("down")

    with pytest.raises(ServerUnavailableError):
        _perform(pool.prepare(slot, 10, _info()), refuse)
    assert [c.method for c in _perform(pool.prepare(slot, 10, _info()))] == ["register_system_shared_memory"] * 2
    names = pool.region_names
    del pool, slot  # never closed: the finalizer unlinks the regions
    import gc

    gc.collect()
    assert not any(os.path.exists(f"/dev/shm/{n}") for n in names)


def test_ssl_context_verification_settings(tmp_path):
    strict = ssl_context(TLSOptions())
    assert strict.verify_mode == ssl.CERT_REQUIRED and strict.check_hostname
    loose = ssl_context(TLSOptions(insecure=True))
    assert loose.verify_mode == ssl.CERT_NONE and not loose.check_hostname


class _Closable:
    def __init__(self, timeout):
        self.timeout, self.closed = timeout, False

    def close(self):
        self.closed = True


def test_http_connections_are_per_thread_bounded_and_pruned():
    import threading

    from client.connections import Connections

    made = []
    conns = Connections(lambda t: made.append(_Closable(t)) or made[-1], per_thread=True)
    main = conns.get(1.0)
    assert conns.get(2.0) is not main and conns.get(1.0) is main  # 1.0 is now the most recent
    for timeout in (3.0, 4.0, 5.0):  # a fifth timeout on this thread evicts the least recent
        conns.get(timeout)
    assert main.closed is False and made[1].closed is True
    other = []
    worker = threading.Thread(target=lambda: other.append(conns.get(1.0)))
    worker.start()
    worker.join()
    assert other[0] is not main and not other[0].closed
    conns.prune()  # the worker has finished
    assert other[0].closed and not main.closed
    conns.close()
    assert all(c.closed for c in made)


def test_grpc_connection_is_shared_by_threads():
    import threading

    from client.connections import Connections

    made = []
    conns = Connections(lambda t: made.append(_Closable(t)) or made[-1], per_thread=False)
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(conns.get(1.0))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in seen}) == 1 and conns.get(9.0) is seen[0]
    assert [c.closed for c in made].count(False) == 1  # racing extras were closed
