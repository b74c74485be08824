"""``DetectionClient``: send images to a tritonforge ensemble over gRPC or HTTP (blocking)."""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Deque, Iterable, Iterator, List, Optional, Sequence

from client.base import BaseClient, check_in_flight, settle
from client.connect import grpc_kwargs, http_kwargs
from client.connections import Connections
from client.detection import Detection, FrameResult
from client.images import ImageInput
from client.info import ModelInfo
from client.steps import Outcome, Plan, Sleep, Step, T, advance

__all__ = ["DetectionClient", "ModelInfo"]


class DetectionClient(BaseClient):
    """Blocking client of a tritonforge ensemble; safe to share between threads.

    Images may be file paths, encoded bytes (JPEG/PNG), or RGB uint8 arrays. See
    :class:`client.base.BaseClient` for the constructor's arguments.

        with DetectionClient("localhost:8001", model="detector_ensemble") as c:
            detections = c.detect("street.jpg")
    """

    # -- driver: perform the core's plans with blocking calls -----------------------
    def _run(self, plan: Plan[T]) -> T:
        done, value = advance(plan, (None, None))
        while not done:
            done, value = advance(plan, self._attempt(value))
        return value

    def _attempt(self, step: Step) -> Outcome:
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            return None, None
        try:
            client = self._connections.get(self._core.timeout(step))
            return getattr(client, step.method)(*step.args, **self._core.call_kwargs(step)), None
        except Exception as exc:  # every failure becomes an SDK error, thrown into the plan
            return None, self._core.error(exc, step)

    def _init_connections(self) -> None:
        self._connections = Connections(self._new_connection, per_thread=self.protocol == "http")

    def _new_connection(self, timeout: float) -> Any:
        if self.protocol == "grpc":
            import tritonclient.grpc as grpcclient

            return grpcclient.InferenceServerClient(**grpc_kwargs(self.options))
        import tritonclient.http as httpclient

        return httpclient.InferenceServerClient(**http_kwargs(self.options, timeout))

    # -- public API -----------------------------------------------------------------
    def info(self) -> ModelInfo:
        """Model facts from the server (asked once, cached): max batch size, class names,
        input size, tensor specs, loaded versions. Raises :class:`ModelNotFoundError`
        (listing the ready models) when the model or pinned version is not served."""
        return self._run(self._core.info())

    def is_ready(self, timeout: Optional[float] = None) -> bool:
        """True when the server is up and the model (version) is ready; never raises."""
        return self._run(self._core.is_ready(timeout))

    def wait_until_ready(self, timeout: float = 60.0, poll: float = 0.2) -> None:
        """Block until :meth:`is_ready`; :class:`ServerUnavailableError` after ``timeout`` seconds."""
        self._run(self._core.wait_until_ready(timeout, poll))

    def detect(self, image: ImageInput, timeout: Optional[float] = None) -> List[Detection]:
        """Detections for one image."""
        return self.detect_batch([image], timeout)[0]

    def detect_batch(self, images: Sequence[ImageInput], timeout: Optional[float] = None) -> List[List[Detection]]:
        """Detections for each image, sent in requests of at most the model's max batch size."""
        return self._run(self._core.detect_batch(images, timeout))

    def stream(self, frames: Iterable[ImageInput], in_flight: int = 4, raise_errors: bool = False,
               timeout: Optional[float] = None) -> Iterator[FrameResult]:
        """Detect a sequence of frames with ``in_flight`` requests outstanding (a thread pool).

        Yields one :class:`FrameResult` per frame, in frame order, tagged with its index.
        A frame that fails (after its own retries) yields a result with ``.error`` set,
        and the stream goes on, unless ``raise_errors`` is true: then that error is raised
        when the frame's turn comes. ``frames`` is consumed lazily (a camera generator works).
        """
        check_in_flight(in_flight)
        pool = ThreadPoolExecutor(in_flight, thread_name_prefix="tritonforge-stream")
        window: Deque[Future] = deque()
        try:
            for index, frame in enumerate(frames):
                window.append(pool.submit(self._run_frame, index, frame, timeout))
                if len(window) >= in_flight:
                    yield settle(window.popleft().result(), raise_errors)
            while window:
                yield settle(window.popleft().result(), raise_errors)
        finally:
            for future in window:
                future.cancel()
            pool.shutdown(wait=True)
            self._connections.prune()  # the workers' HTTP clients

    def _run_frame(self, index: int, frame: ImageInput, timeout: Optional[float]) -> FrameResult:
        return self._run(self._core.detect_frame(index, frame, timeout))

    def close(self) -> None:
        """Release shared memory (unregistered, unlinked) and close the connections."""
        try:
            self._run(self._core.close())
        finally:
            self._connections.close()

    def __enter__(self) -> "DetectionClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
