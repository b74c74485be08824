"""The client logic, written once as plans (see :mod:`client.steps`) that the sync and
the async client both run: model discovery, readiness, request building, batching,
retries with backoff, shared memory, and response parsing."""

from __future__ import annotations

import itertools
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from client.detection import Detection, FrameResult, from_arrays
from client.errors import (
    DetectionClientError, ModelNotFoundError, ModelUnavailableError, PermissionDeniedError, RequestTimeoutError,
    ServerUnavailableError, translate,
)
from client.images import ImageInput, to_bytes
from client.info import OUTPUTS, ModelInfo, model_info
from client.options import ClientOptions
from client.request import build_request, bytes_tensor
from client.shm import SharedMemoryPool, Slot
from client.steps import Call, Plan, Sleep

Detections = List[List[Detection]]


class Core:
    """State and plans shared by :class:`DetectionClient` and :class:`AsyncDetectionClient`."""

    def __init__(self, options: ClientOptions):
        self.options = options
        self.info_cache: Optional[ModelInfo] = None
        self.shm = SharedMemoryPool(options.transport, options.cuda_device) if options.transport != "network" else None
        # gRPC answers config/metadata requests with protobuf unless asked for JSON
        self._as_json: Dict[str, Any] = {"as_json": True} if options.protocol == "grpc" else {}
        self._index_listed = True  # False after a protected server refused its repository index

    # -- what the drivers need to perform a Call -------------------------------------
    def timeout(self, call: Call) -> float:
        return call.timeout if call.timeout is not None else self.options.timeout

    def call_kwargs(self, call: Call) -> Dict[str, Any]:
        """``call.kwargs`` plus the headers (and, over gRPC, the deadline) sent with every call."""
        kwargs = dict(call.kwargs, headers=self.options.wire_headers() or None)
        if self.options.protocol == "grpc":
            kwargs["client_timeout"] = self.timeout(call)
        return kwargs

    def error(self, exc: BaseException, call: Call) -> DetectionClientError:
        """The SDK error for a failed call, chained to the original exception."""
        translated = translate(exc, self.options.where, call.what, self.options.model)
        if translated is not exc:
            translated.__cause__ = exc
        return translated

    @property
    def request_module(self) -> Any:
        """The module whose InferInput/InferRequestedOutput the protocol uses (sync and aio share them)."""
        if self.options.protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        return module

    # -- retries ----------------------------------------------------------------------
    def retrying(self, make_plan: Callable[[], Plan[Any]]) -> Plan[Any]:
        """Plan: run ``make_plan()`` again after a retryable error, with backoff, up to ``retries`` times."""
        for attempt in itertools.count():
            try:
                return (yield from make_plan())
            except DetectionClientError as exc:
                if not exc.retryable:
                    raise
                if attempt >= self.options.retries:
                    if attempt:
                        raise type(exc)(f"{exc} (gave up after {attempt + 1} attempts)") from exc
                    raise
                yield Sleep(self.options.delay(attempt))
        raise AssertionError("unreachable")

    # -- discovery and readiness ------------------------------------------------------
    def info(self) -> Plan[ModelInfo]:
        """Plan: the model's :class:`ModelInfo`, asked once and cached."""
        if self.info_cache is None:
            self.info_cache = yield from self.retrying(self._discover)
        return self.info_cache

    def _discover(self) -> Plan[ModelInfo]:
        o = self.options
        if not (yield Call("liveness check", "is_server_live")):
            raise ServerUnavailableError(f"{o.where} is not live")
        if not (yield Call("readiness check", "is_model_ready", (o.model, o.model_version))):
            states = yield from self.model_states()
            version = f" version {o.model_version!r}" if o.model_version else ""
            if states.get(o.model) in ("LOADING", "UNLOADING"):
                raise ModelUnavailableError(f"{o.where}: model {o.model!r} is {states[o.model].lower()}")
            ready = sorted(name for name, state in states.items() if state == "READY")
            listing = f"ready models: {ready}" if states or self._index_listed else (
                "the ready models are not listed: the repository index is an admin API (pass admin_key=)")
            raise ModelNotFoundError(f"{o.where}: model {o.model!r}{version} is not served or not ready; {listing}")
        config = yield Call("config request", "get_model_config", (o.model, o.model_version), self._as_json)
        metadata = yield Call("metadata request", "get_model_metadata", (o.model, o.model_version), self._as_json)
        return model_info(o.model, o.model_version, config, metadata)

    def model_states(self) -> Plan[Dict[str, str]]:
        """Plan: model name -> state (READY, LOADING, UNAVAILABLE...) from the repository index."""
        try:
            index = yield Call("repository index", "get_model_repository_index", (), self._as_json)
        except DetectionClientError as exc:
            self._index_listed = not isinstance(exc, PermissionDeniedError)
            return {}
        self._index_listed = True
        entries = index.get("models", []) if isinstance(index, dict) else index
        states: Dict[str, str] = {}
        for entry in entries:  # several versions: READY wins
            name, state = entry.get("name", "?"), entry.get("state", "")
            if states.get(name) != "READY":
                states[name] = state
        return states

    def is_ready(self, timeout: Optional[float] = None) -> Plan[bool]:
        """Plan: whether the server is up and the model (version) ready; never raises."""
        try:
            o = self.options
            return bool((yield Call("readiness check", "is_model_ready", (o.model, o.model_version), timeout=timeout)))
        except DetectionClientError:
            return False

    def wait_until_ready(self, timeout: float, poll: float = 0.2) -> Plan[None]:
        """Plan: poll readiness until it is true; :class:`ServerUnavailableError` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not (yield from self.is_ready(timeout=max(0.1, min(self.options.timeout, timeout)))):
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerUnavailableError(
                    f"{self.options.where}: model {self.options.model!r} not ready after {timeout:g} s")
            yield Sleep(min(poll, left))

    # -- inference --------------------------------------------------------------------
    def detect_batch(self, images: Sequence[ImageInput], timeout: Optional[float] = None) -> Plan[Detections]:
        """Plan: detections per image, in requests of at most the max batch size, each retried."""
        encoded = [to_bytes(image) for image in images]
        info = yield from self.info()
        step = max(1, info.max_batch_size)
        results: Detections = []
        for start in range(0, len(encoded), step):
            chunk = encoded[start:start + step]
            results.extend((yield from self.retrying(lambda: self._infer(chunk, info, timeout))))
        return results

    def detect_frame(self, index: int, frame: ImageInput, timeout: Optional[float] = None) -> Plan[FrameResult]:
        """Plan: one stream frame; its error is kept in the result, not raised."""
        try:
            detections = (yield from self.detect_batch([frame], timeout))[0]
        except DetectionClientError as exc:
            return FrameResult(index, [], exc)
        return FrameResult(index, detections)

    def _infer(self, encoded: List[bytes], info: ModelInfo, timeout: Optional[float]) -> Plan[Detections]:
        if self.shm is None:
            inputs, outputs = build_request(self.request_module, self.options.protocol, info, encoded)
            result = yield self._infer_call(inputs, outputs, timeout)
            return from_arrays(*(result.as_numpy(name) for name in OUTPUTS), names=info.class_names)
        slot, answered = self.shm.acquire(), False
        try:
            result = yield from self._infer_shm(slot, encoded, info, timeout)
            answered = True
            return result
        except ServerUnavailableError:
            self.shm.invalidate()  # a restarted server has forgotten every region
            raise
        except DetectionClientError as exc:
            answered = not isinstance(exc, RequestTimeoutError)
            raise
        finally:
            # without an answer the server may still write into the slot: never reuse it
            (self.shm.release if answered else self.shm.retire)(slot)

    def _infer_shm(self, slot: Slot, encoded: List[bytes], info: ModelInfo,
                   timeout: Optional[float]) -> Plan[Detections]:
        from tritonclient.utils import serialize_byte_tensor

        payload = serialize_byte_tensor(bytes_tensor(encoded))
        size = len(payload.item())
        assert self.shm is not None
        yield from self.shm.prepare(slot, size, info)
        assert slot.input is not None
        slot.input.write(payload)
        inputs, outputs = build_request(self.request_module, self.options.protocol, info, encoded, slot, size)
        yield self._infer_call(inputs, outputs, timeout)
        return from_arrays(*slot.read_outputs(len(encoded), info), names=info.class_names)

    def _infer_call(self, inputs: list, outputs: list, timeout: Optional[float]) -> Call:
        o = self.options
        return Call(f"inference on {o.model!r}", "infer", (o.model, inputs),
                    {"model_version": o.model_version, "outputs": outputs}, timeout)

    def close(self) -> Plan[None]:
        """Plan: release shared memory (unregister, unlink)."""
        if self.shm is not None:
            yield from self.shm.close()

