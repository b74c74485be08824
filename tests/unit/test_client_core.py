"""The SDK's logic (retries, batching, headers, timeouts, streams) driven by both clients
against a scripted stand-in for the tritonclient client: no server needed."""

import asyncio
import threading
import time
import types

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException, deserialize_bytes_tensor

from client import (
    AsyncDetectionClient, DetectionClient, FrameResult, InferenceError, InvalidImageError, ModelNotFoundError,
    PermissionDeniedError, RequestTimeoutError, ServerUnavailableError,
)

CONFIG = {"config": {"name": "m", "max_batch_size": 8, "parameters": {
    "class_names": {"string_value": '["a", "b"]'}, "input_height": {"string_value": "64"},
    "input_width": {"string_value": "96"}}}}
METADATA = {"name": "m", "versions": ["1"], "platform": "ensemble",
            "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": ["-1", "1"]}],
            "outputs": [{"name": "num_detections", "datatype": "INT32", "shape": ["-1", "1"]},
                        {"name": "boxes", "datatype": "FP32", "shape": ["-1", "3", "4"]},
                        {"name": "scores", "datatype": "FP32", "shape": ["-1", "3"]},
                        {"name": "classes", "datatype": "INT32", "shape": ["-1", "3"]}]}


REAL_SLEEP = time.sleep  # the fake server's own work, not patched by ``sleeps``


def unavailable():
    return InferenceServerException("connection reset", status="StatusCode.UNAVAILABLE")


def bad_image():
    return InferenceServerException("IMAGE[0]: cannot decode 3 bytes as an image", status="StatusCode.INTERNAL")


class FakeTriton:
    """Answers like tritonclient's gRPC client; ``fail[method]`` lists exceptions to raise first.

    An image ``b"img-K"`` gets one detection with x1 = K; ``b"bad"`` fails its request.
    """

    def __init__(self, delay=lambda k: 0.0):
        self.calls, self.fail, self.delay = [], {}, delay
        self.batches, self.active, self.most_active = [], 0, 0
        self.blocking = True  # the async stand-in sleeps with asyncio instead
        self._lock = threading.Lock()

    def _enter(self, method, kwargs):
        with self._lock:
            self.calls.append((method, kwargs))
            failures = self.fail.get(method)
            if failures:
                raise failures.pop(0)

    def is_server_live(self, **kw):
        self._enter("is_server_live", kw)
        return True

    def is_model_ready(self, model, version="", **kw):
        self._enter("is_model_ready", kw)
        return model == "m" and version in ("", "1")

    def get_model_config(self, model, version="", **kw):
        self._enter("get_model_config", kw)
        return CONFIG

    def get_model_metadata(self, model, version="", **kw):
        self._enter("get_model_metadata", kw)
        return METADATA

    def get_model_repository_index(self, **kw):
        self._enter("get_model_repository_index", kw)
        return {"models": [{"name": "m", "state": "READY"}, {"name": "x", "state": "UNAVAILABLE"}]}

    def infer(self, model, inputs, **kw):
        self._enter("infer", kw)
        images = list(deserialize_bytes_tensor(inputs[0]._raw_content))
        with self._lock:
            self.batches.append(len(images))
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            if b"bad" in images:
                raise bad_image()
            keys = [int(i.split(b"-")[1]) for i in images]
            if self.blocking:
                REAL_SLEEP(self.delay(keys[0]))
            return fake_result(keys)
        finally:
            with self._lock:
                self.active -= 1

    def close(self):
        self.calls.append(("close", {}))


def fake_result(keys):
    n = len(keys)
    arrays = {"num_detections": np.ones((n, 1), np.int32), "boxes": np.zeros((n, 3, 4), np.float32),
              "scores": np.full((n, 3), 0.5, np.float32), "classes": np.ones((n, 3), np.int32)}
    arrays["boxes"][:, 0] = [[k, 0, k + 1, 1] for k in keys]
    return types.SimpleNamespace(as_numpy=arrays.get)


class AsyncFake:
    """The same stand-in with coroutine methods (like tritonclient.grpc.aio)."""

    def __init__(self, fake):
        self.fake = fake
        fake.blocking = False

    def __getattr__(self, name):
        method = getattr(self.fake, name)

        async def call(*args, **kwargs):
            result = method(*args, **kwargs)
            if name == "infer":  # let other requests run while this one "computes"
                first = deserialize_bytes_tensor(args[1][0]._raw_content)[0]
                await asyncio.sleep(self.fake.delay(int(first.split(b"-")[1])))
            return result

        return call


@pytest.fixture
def sleeps(monkeypatch):
    """Backoff sleeps, recorded instead of slept."""
    recorded = []
    monkeypatch.setattr(time, "sleep", lambda s: recorded.append(s))
    return recorded


def sync_client(fake, monkeypatch, **kwargs):
    monkeypatch.setattr(DetectionClient, "_new_connection", lambda self, timeout: fake)
    return DetectionClient("h:1", model="m", **kwargs)


def async_client(fake, monkeypatch, **kwargs):
    module = types.SimpleNamespace(InferenceServerClient=lambda **kw: AsyncFake(fake))
    monkeypatch.setattr(AsyncDetectionClient, "_client_kwargs", lambda self: (module, {}))
    return AsyncDetectionClient("h:1", model="m", **kwargs)


def run_both(fake, monkeypatch, action, **kwargs):
    """``action(client)`` with the sync client, and awaited with the async client."""
    with sync_client(fake, monkeypatch, **kwargs) as c:
        sync = action(c)

    async def main():
        async with async_client(fake, monkeypatch, **kwargs) as c:
            return await action(c)

    return sync, asyncio.run(main())


def images(n):
    return [f"img-{k}".encode() for k in range(n)]


def test_info_and_batches_split_to_the_max_batch_size(monkeypatch):
    fake = FakeTriton()
    with sync_client(fake, monkeypatch) as c:
        info = c.info()
        results = c.detect_batch(images(20))
    assert info.max_batch_size == 8 and info.class_names == ("a", "b") and info.input_size == (64, 96)
    assert info.max_detections == 3 and info.versions == ("1",) and info.input_name == "IMAGE"
    assert fake.batches == [8, 8, 4]
    assert [r[0].x1 for r in results] == list(range(20)) and results[3][0].class_name == "b"


@pytest.mark.parametrize("failure,retried", [
    (unavailable, True), (lambda: InferenceServerException("busy", status="503"), True),
    (lambda: ConnectionRefusedError(111, "Connection refused"), True),
    (lambda: ConnectionResetError(104, "Connection reset by peer"), True),
    (bad_image, False), (lambda: InferenceServerException("bad", status="400"), False),
    (lambda: InferenceServerException("bad", status="StatusCode.INVALID_ARGUMENT"), False),
    (lambda: InferenceServerException("slow", status="StatusCode.DEADLINE_EXCEEDED"), False),
])
def test_retries_only_when_the_server_was_unavailable(monkeypatch, sleeps, failure, retried):
    fake = FakeTriton()
    with sync_client(fake, monkeypatch, retries=3) as c:
        c.info()
        fake.fail["infer"] = [failure(), failure()]
        if retried:
            assert c.detect(b"img-5")[0].x1 == 5
        else:
            with pytest.raises((InferenceError, RequestTimeoutError)):
                c.detect(b"img-5")
    infers = sum(1 for method, _ in fake.calls if method == "infer")
    assert infers == (3 if retried else 1)
    assert len(sleeps) == (2 if retried else 0)


def test_backoff_grows_exponentially_with_jitter_and_gives_up(monkeypatch, sleeps):
    fake = FakeTriton()
    fake.fail["is_server_live"] = [unavailable() for _ in range(10)]
    with sync_client(fake, monkeypatch, retries=4, backoff=0.1, backoff_max=0.5) as c:
        with pytest.raises(ServerUnavailableError, match="gave up after 5 attempts"):
            c.info()
    assert len(sleeps) == 4
    for attempt, slept in enumerate(sleeps):
        cap = min(0.5, 0.1 * 2 ** attempt)
        assert cap / 2 <= slept <= cap


def test_no_retries_when_retries_is_zero(monkeypatch, sleeps):
    fake = FakeTriton()
    fake.fail["is_server_live"] = [unavailable()]
    with pytest.raises(ServerUnavailableError) as info:
        sync_client(fake, monkeypatch, retries=0).info()
    assert "gave up" not in str(info.value) and sleeps == []


def test_invalid_input_is_refused_before_any_request(monkeypatch):
    fake = FakeTriton()
    with pytest.raises(InvalidImageError):
        sync_client(fake, monkeypatch).detect_batch([b"img-1", 3.5])
    assert not [m for m, _ in fake.calls if m == "infer"]


def test_headers_and_timeouts_go_with_every_call(monkeypatch):
    fake = FakeTriton()
    with sync_client(fake, monkeypatch, timeout=7.0, headers={"Authorization": "Bearer t"}) as c:
        c.detect(b"img-1")
        c.detect(b"img-2", timeout=0.5)
    assert {m for m, _ in fake.calls} >= {"is_server_live", "is_model_ready", "get_model_config", "infer"}
    for method, kwargs in fake.calls:
        if method != "close":
            assert kwargs["headers"] == {"authorization": "Bearer t"}, method  # gRPC metadata: lower case
    timeouts = [kw["client_timeout"] for m, kw in fake.calls if m == "infer"]
    assert timeouts == [7.0, 0.5]
    assert all(kw.get("as_json") for m, kw in fake.calls if m in ("get_model_config", "get_model_metadata"))


def test_unknown_model_lists_ready_models(monkeypatch):
    fake = FakeTriton()
    with pytest.raises(ModelNotFoundError, match=r"'m' version '7' is not served or not ready; ready models: \['m'\]"):
        sync_client(fake, monkeypatch, model_version="7").info()


def test_permission_denied_is_not_retried(monkeypatch, sleeps):
    fake = FakeTriton()
    fake.fail["is_server_live"] = [InferenceServerException(
        "This protocol is restricted, expecting header 'triton-grpc-protocol-authorization'",
        status="StatusCode.UNAVAILABLE")]
    with pytest.raises(PermissionDeniedError, match="expecting header"):
        sync_client(fake, monkeypatch).info()
    assert sleeps == []


def test_is_ready_and_wait_until_ready(monkeypatch, sleeps):
    fake = FakeTriton()
    fake.fail["is_model_ready"] = [unavailable(), unavailable()]
    c = sync_client(fake, monkeypatch)
    assert c.is_ready() is False  # never raises
    c.wait_until_ready(timeout=5, poll=0.01)  # second poll fails, third succeeds
    assert sleeps == [0.01]
    assert c.is_ready() is True
    monkeypatch.setattr(time, "sleep", REAL_SLEEP)
    monkeypatch.setattr(fake, "is_model_ready", lambda *a, **kw: False)
    start = time.monotonic()
    with pytest.raises(ServerUnavailableError, match="not ready after 0.05 s"):
        c.wait_until_ready(timeout=0.05, poll=0.001)
    assert time.monotonic() - start < 5


def delays(k):
    return 0.002 * (7 - k % 7)  # later frames often finish first


def test_sync_and_async_streams_keep_frame_order_and_report_errors_per_frame(monkeypatch):
    frames = images(30)
    frames[4] = b"bad"
    frames[9] = 12  # not an image at all

    def collect(c):
        if isinstance(c, AsyncDetectionClient):
            async def gather():
                return [r async for r in c.stream(iter(frames), in_flight=5)]
            return gather()
        return list(c.stream(iter(frames), in_flight=5))

    fake = FakeTriton(delays)
    sync, aio = run_both(fake, monkeypatch, collect)
    for results in (sync, aio):
        assert [r.index for r in results] == list(range(30))
        assert [r.index for r in results if not r.ok] == [4, 9]
        assert isinstance(results[4].error, InferenceError) and "cannot decode" in str(results[4].error)
        assert isinstance(results[9].error, InvalidImageError)
        assert [r.detections[0].x1 for r in results if r.ok] == [k for k in range(30) if k not in (4, 9)]
    assert 1 < fake.most_active <= 5


def test_stream_raise_errors_stops_at_the_failing_frame(monkeypatch):
    frames = images(10)
    frames[3] = b"bad"
    fake = FakeTriton(delays)
    seen = []
    with sync_client(fake, monkeypatch) as c:
        with pytest.raises(InferenceError, match="cannot decode"):
            for r in c.stream(frames, in_flight=3, raise_errors=True):
                seen.append(r.index)
    assert seen == [0, 1, 2]


def test_async_stream_accepts_async_iterables_and_raise_errors(monkeypatch):
    fake = FakeTriton(delays)

    async def frames():
        for k in range(6):
            yield b"bad" if k == 4 else f"img-{k}".encode()

    async def main():
        seen = []
        async with async_client(fake, monkeypatch) as c:
            with pytest.raises(InferenceError):
                async for r in c.stream(frames(), in_flight=2, raise_errors=True):
                    seen.append(r.index)
        return seen

    assert asyncio.run(main()) == [0, 1, 2, 3]


def test_stream_retries_each_frame_and_yields_it_once(monkeypatch, sleeps):
    fake = FakeTriton()
    fake.fail["infer"] = [unavailable() for _ in range(6)]  # a restart: several frames fail once or twice
    with sync_client(fake, monkeypatch, retries=10) as c:
        results = list(c.stream(images(12), in_flight=4))
    assert [r.index for r in results] == list(range(12)) and all(r.ok for r in results)
    assert [r.detections[0].x1 for r in results] == list(range(12))
    assert sum(1 for m, _ in fake.calls if m == "infer") == 12 + 6


def test_async_client_retries_and_times_out(monkeypatch):
    fake = FakeTriton(delay=lambda k: 0.5 if k == 99 else 0.0)
    fake.fail["infer"] = [unavailable()]

    async def main():
        async with async_client(fake, monkeypatch, backoff=0.001) as c:
            first = await c.detect(b"img-3")
            with pytest.raises(RequestTimeoutError, match="timed out"):
                await c.detect(b"img-99", timeout=0.05)
            return first, await c.info(), await c.is_ready()

    first, info, ready = asyncio.run(main())
    assert first[0].x1 == 3 and info.max_batch_size == 8 and ready is True
    assert sum(1 for m, _ in fake.calls if m == "infer") == 3  # 1 failed + 1 retried + 1 timed out (not retried)


def test_in_flight_must_be_positive(monkeypatch):
    with pytest.raises(ValueError, match="in_flight must be >= 1, got 0"):
        next(sync_client(FakeTriton(), monkeypatch).stream([b"img-1"], in_flight=0))


def test_frame_result_conversions():
    from client import Detection

    r = FrameResult(4, [Detection(1, 2, 4, 6, 0.5, 0, "a")])
    assert r.ok and r.to_dict() == {"index": 4, "detections": [{"x1": 1, "y1": 2, "x2": 4, "y2": 6, "score": 0.5,
                                                                 "class_id": 0, "class_name": "a"}], "error": None}
    assert r.to_coco() == [{"image_id": 5, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}]
    failed = FrameResult(2, [], InferenceError("boom"))
    assert not failed.ok and failed.to_dict()["error"] == "InferenceError: boom"
