"""Shared-memory transport: the encoded images go to the server, and the detections
come back, through memory regions registered with Triton instead of over the socket.

``system`` regions (POSIX shared memory, ``tritonclient.utils.shared_memory``) need the
client on the server's host; ``cuda`` regions (``tritonclient.utils.cuda_shared_memory``,
imported only when asked for) need a GPU and ``cuda-python`` too.

A pool hands each in-flight request its own *slot* (an input and an output region).
Regions are registered on first use and re-registered after the server was lost
(it forgets them when it restarts); :meth:`SharedMemoryPool.close` unregisters and
unlinks them all, and a finalizer unlinks them if the client is never closed.
"""

from __future__ import annotations

import itertools
import os
import secrets
import threading
import weakref
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from client.errors import DetectionClientError
from client.info import OUTPUTS, ModelInfo
from client.steps import Call, Plan, Sleep

_MIN_INPUT_BYTES = 1 << 16
_IN_USE_TRIES, _IN_USE_WAIT = 20, 0.05


def load_cuda_shm() -> Any:
    """``tritonclient.utils.cuda_shared_memory``, or a clear error when CUDA is missing."""
    try:
        import tritonclient.utils.cuda_shared_memory as cudashm
        from cuda.bindings import runtime as cudart
    except (ImportError, RuntimeError) as exc:
        raise DetectionClientError(
            "transport='cuda_shm' needs an NVIDIA GPU and cuda-python (pip install 'tritonclient[cuda]'); "
            f"use transport='shm' (system shared memory) or the network instead ({exc})") from exc
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count < 1:
        raise DetectionClientError(f"transport='cuda_shm' needs an NVIDIA GPU; CUDA reports none ({err})")
    return cudashm


class SystemRegion:
    """A POSIX shared-memory region."""

    def __init__(self, name: str, size: int, device: int = 0):
        self.name, self.size, self.device, self.key = name, size, device, "/" + name
        self.generation: Optional[int] = None  # pool generation it was registered in
        self._shm, self.handle = self._create()

    def _create(self) -> Tuple[Any, Any]:
        import tritonclient.utils.shared_memory as shm

        return shm, shm.create_shared_memory_region(self.name, self.key, self.size, create_only=True)

    def write(self, payload: np.ndarray) -> None:
        self._shm.set_shared_memory_region(self.handle, [payload])

    def read(self, offset: int, nbytes: int) -> np.ndarray:
        return np.array(self._shm.get_contents_as_numpy(self.handle, np.uint8, [nbytes], offset=offset))

    def register(self) -> Call:
        return Call("shared-memory registration", "register_system_shared_memory", (self.name, self.key, self.size))

    def unregister(self) -> Call:
        return Call("shared-memory unregistration", "unregister_system_shared_memory", (self.name,), timeout=5.0)

    def destroy(self) -> None:
        self._shm.destroy_shared_memory_region(self.handle)


class CudaRegion(SystemRegion):
    """A CUDA device-memory region shared through a CUDA IPC handle."""

    def _create(self) -> Tuple[Any, Any]:
        cudashm = load_cuda_shm()
        return cudashm, cudashm.create_shared_memory_region(self.name, self.size, self.device)

    def read(self, offset: int, nbytes: int) -> np.ndarray:
        return np.array(self._shm.get_contents_as_numpy(self.handle, np.uint8, [self.size])[offset:offset + nbytes])

    def register(self) -> Call:
        raw = self._shm.get_raw_handle(self.handle)
        return Call("CUDA shared-memory registration", "register_cuda_shared_memory",
                    (self.name, raw, self.device, self.size))

    def unregister(self) -> Call:
        return Call("CUDA shared-memory unregistration", "unregister_cuda_shared_memory", (self.name,), timeout=5.0)


_REGIONS = {"shm": SystemRegion, "cuda_shm": CudaRegion}


def output_layout(info: ModelInfo) -> Tuple[Dict[str, Tuple[int, int]], int]:
    """Offset and capacity (bytes, for a full batch) of each output in one region, and its size."""
    layout, offset = {}, 0
    batch = max(1, info.max_batch_size)
    for name in OUTPUTS:
        capacity = info.output(name).item_bytes * batch
        layout[name] = (offset, capacity)
        offset += -(-capacity // 64) * 64  # keep every output 64-byte aligned
    return layout, offset


class Slot:
    """The regions one request uses: serialized images in, padded detections out."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.input: Optional[SystemRegion] = None
        self.output: Optional[SystemRegion] = None
        self.layout: Dict[str, Tuple[int, int]] = {}
        self._serial = 0

    def regions(self) -> List[SystemRegion]:
        return [r for r in (self.input, self.output) if r is not None]

    def next_name(self, what: str) -> str:
        self._serial += 1
        return f"{self.prefix}_{what}{self._serial}"

    def read_outputs(self, batch: int, info: ModelInfo) -> List[np.ndarray]:
        """The outputs of a ``batch``-image request, copied out of the output region."""
        arrays = []
        assert self.output is not None
        for name in OUTPUTS:
            spec, (offset, _) = info.output(name), self.layout[name]
            raw = self.output.read(offset, spec.item_bytes * batch)
            arrays.append(raw.view(spec.numpy_dtype).reshape((batch,) + spec.shape))
        return arrays


def _destroy(regions: List[SystemRegion]) -> None:
    while regions:
        try:
            regions.pop().destroy()
        except Exception:  # already gone: nothing left to free
            pass


class SharedMemoryPool:
    """Slots for concurrent requests, created on demand and reused."""

    def __init__(self, kind: str, device: int = 0):
        if kind not in _REGIONS:
            raise ValueError(f"shared memory kind must be one of {sorted(_REGIONS)}, got {kind!r}")
        if kind == "cuda_shm":
            load_cuda_shm()  # fail now, clearly, rather than on the first request
        self.kind, self.device = kind, device
        self.generation = 0
        self._prefix = f"tritonforge_{os.getpid()}_{secrets.token_hex(4)}"
        self._lock = threading.Lock()
        self._free: List[Slot] = []
        self._slots: List[Slot] = []
        self._retired: List[Slot] = []  # slots a request left without an answer
        self._numbers = itertools.count()  # names are never reused
        self._local: List[SystemRegion] = []  # every region still mapped, for the finalizer
        self._finalizer = weakref.finalize(self, _destroy, self._local)

    @property
    def region_names(self) -> List[str]:
        return [r.name for r in self._local]

    def acquire(self) -> Slot:
        with self._lock:
            if self._free:
                return self._free.pop()
            slot = Slot(f"{self._prefix}_{next(self._numbers)}")
            self._slots.append(slot)
            return slot

    def release(self, slot: Slot) -> None:
        with self._lock:
            self._free.append(slot)

    def retire(self, slot: Slot) -> None:
        """Take ``slot`` out of use: its request got no answer (timeout, lost connection), so
        the server may still hold its regions. They are freed later by :meth:`prepare` or :meth:`close`."""
        with self._lock:
            self._retired.append(slot)

    def _reap(self) -> Plan[None]:
        """Plan: free the retired slots the server lets go of (one try each)."""
        with self._lock:
            retired, self._retired = self._retired, []
        for slot in retired:
            try:
                for region in slot.regions():
                    if region.generation is not None:
                        yield region.unregister()
                        region.generation = None
            except DetectionClientError:
                with self._lock:
                    self._retired.append(slot)
                continue
            with self._lock:
                self._slots.remove(slot)
            for region in slot.regions():
                self._local.remove(region)
            _destroy(slot.regions())

    def invalidate(self) -> None:
        """The server was lost: register every region again before its next use."""
        with self._lock:
            self.generation += 1

    def _new_region(self, slot: Slot, what: str, size: int) -> SystemRegion:
        name = slot.next_name(what)
        try:
            region = _REGIONS[self.kind](name, size, self.device)
        except DetectionClientError:
            raise
        except Exception as exc:  # SharedMemoryException, CudaSharedMemoryException
            raise DetectionClientError(f"cannot create the {self.kind} region {name} of {size} bytes: {exc}") from exc
        self._local.append(region)
        return region

    @staticmethod
    def _unregister(region: SystemRegion) -> Plan[None]:
        """Plan: unregister, best effort. Triton refuses ("currently in use") while a request
        that just answered still holds the region, so that case is tried again shortly."""
        for _ in range(_IN_USE_TRIES):
            try:
                yield region.unregister()
                return
            except DetectionClientError as exc:
                if "in use" not in str(exc):
                    return
            yield Sleep(_IN_USE_WAIT)

    def _drop(self, region: SystemRegion) -> Plan[None]:
        if region.generation is not None:
            yield from self._unregister(region)
        self._local.remove(region)
        _destroy([region])

    def _register(self, region: SystemRegion) -> Plan[None]:
        if region.generation == self.generation:
            return
        if region.generation is not None:  # registered before the server was lost: it may still know it
            yield from self._unregister(region)
            region.generation = None
        generation = self.generation
        yield region.register()
        region.generation = generation

    def prepare(self, slot: Slot, input_bytes: int, info: ModelInfo) -> Plan[None]:
        """Plan: make ``slot`` ready for a request of ``input_bytes`` serialized input."""
        if self._retired:
            yield from self._reap()
        if slot.output is None:
            slot.layout, size = output_layout(info)
            slot.output = self._new_region(slot, "out", size)
        if slot.input is None or slot.input.size < input_bytes:
            if slot.input is not None:
                yield from self._drop(slot.input)
            size = max(_MIN_INPUT_BYTES, input_bytes, 2 * (slot.input.size if slot.input else 0))
            slot.input = self._new_region(slot, "in", size)
        for region in slot.regions():
            yield from self._register(region)

    def close(self) -> Plan[None]:
        """Plan: unregister every region from the server (best effort) and unlink them."""
        with self._lock:
            regions = [r for slot in self._slots for r in slot.regions()]
            self._slots.clear()
            self._free.clear()
            self._retired.clear()
        for region in regions:
            if region.generation is not None:
                yield from self._unregister(region)
        _destroy(self._local)
