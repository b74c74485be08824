"""``AsyncDetectionClient``: the asyncio form of :class:`DetectionClient`
(``tritonclient.grpc.aio`` / ``tritonclient.http.aio``), running the same plans."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, AsyncIterable, AsyncIterator, Deque, Iterable, List, Optional, Sequence, Tuple, Union

from client.base import BaseClient, check_in_flight, settle
from client.connect import grpc_kwargs, http_aio_kwargs
from client.detection import Detection, FrameResult
from client.images import ImageInput
from client.info import ModelInfo
from client.steps import Outcome, Plan, Sleep, Step, T, advance

Frames = Union[Iterable[ImageInput], AsyncIterable[ImageInput]]


class AsyncDetectionClient(BaseClient):
    """Asyncio client of a tritonforge ensemble; same arguments and methods as
    :class:`DetectionClient`, awaited. Use it from one event loop.

        async with AsyncDetectionClient("localhost:8001", model="detector_ensemble") as c:
            detections = await c.detect("street.jpg")
    """

    # -- driver: perform the core's plans with awaited calls -------------------------
    async def _run(self, plan: Plan[T]) -> T:
        done, value = advance(plan, (None, None))
        while not done:
            done, value = advance(plan, await self._attempt(value))
        return value

    async def _attempt(self, step: Step) -> Outcome:
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            return None, None
        try:
            client = await self._connection()
            call = getattr(client, step.method)(*step.args, **self._core.call_kwargs(step))
            return await asyncio.wait_for(call, self._core.timeout(step)), None
        except Exception as exc:  # every failure becomes an SDK error, thrown into the plan
            return None, self._core.error(exc, step)

    def _init_connections(self) -> None:
        self._client: Optional[Any] = None  # one aio client: it multiplexes concurrent calls

    async def _connection(self) -> Any:
        if self._client is None:
            # in a thread: insecure gRPC TLS first fetches the server's certificate
            module, kwargs = await asyncio.get_running_loop().run_in_executor(None, self._client_kwargs)
            if self._client is None:
                self._client = module.InferenceServerClient(**kwargs)
        return self._client

    def _client_kwargs(self) -> Tuple[Any, dict]:
        if self.protocol == "grpc":
            import tritonclient.grpc.aio as grpcaio

            return grpcaio, grpc_kwargs(self.options)
        import tritonclient.http.aio as httpaio

        return httpaio, http_aio_kwargs(self.options)

    # -- public API -----------------------------------------------------------------
    async def info(self) -> ModelInfo:
        """Model facts from the server (asked once, cached); see :meth:`DetectionClient.info`."""
        return await self._run(self._core.info())

    async def is_ready(self, timeout: Optional[float] = None) -> bool:
        """True when the server is up and the model (version) is ready; never raises."""
        return await self._run(self._core.is_ready(timeout))

    async def wait_until_ready(self, timeout: float = 60.0, poll: float = 0.2) -> None:
        """Wait until :meth:`is_ready`; :class:`ServerUnavailableError` after ``timeout`` seconds."""
        await self._run(self._core.wait_until_ready(timeout, poll))

    async def detect(self, image: ImageInput, timeout: Optional[float] = None) -> List[Detection]:
        """Detections for one image."""
        return (await self.detect_batch([image], timeout))[0]

    async def detect_batch(self, images: Sequence[ImageInput],
                           timeout: Optional[float] = None) -> List[List[Detection]]:
        """Detections for each image, sent in requests of at most the model's max batch size."""
        return await self._run(self._core.detect_batch(images, timeout))

    async def stream(self, frames: Frames, in_flight: int = 4, raise_errors: bool = False,
                     timeout: Optional[float] = None) -> AsyncIterator[FrameResult]:
        """Detect frames (an iterable or async iterable) with ``in_flight`` requests
        outstanding; yields one :class:`FrameResult` per frame in frame order (see
        :meth:`DetectionClient.stream`)."""
        check_in_flight(in_flight)
        window: Deque[asyncio.Future] = deque()
        try:
            async for index, frame in _enumerate(frames):
                window.append(asyncio.ensure_future(self._run(self._core.detect_frame(index, frame, timeout))))
                if len(window) >= in_flight:
                    yield settle(await window.popleft(), raise_errors)
            while window:
                yield settle(await window.popleft(), raise_errors)
        finally:
            for task in window:
                task.cancel()

    async def close(self) -> None:
        """Release shared memory (unregistered, unlinked) and close the connection."""
        try:
            await self._run(self._core.close())
        finally:
            client, self._client = self._client, None
            if client is not None:
                await client.close()

    async def __aenter__(self) -> "AsyncDetectionClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


async def _enumerate(frames: Frames) -> AsyncIterator[Tuple[int, ImageInput]]:
    index = 0
    if isinstance(frames, AsyncIterable):
        async for frame in frames:
            yield index, frame
            index += 1
    else:
        for index, frame in enumerate(frames):
            yield index, frame
