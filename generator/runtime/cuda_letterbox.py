"""The CUDA letterbox engine of the GPU preprocess stage (what the server runs).

Copied verbatim into generated repositories beside ``model.py`` (with ``letterbox.py``,
``dlpack.py``, ``letterbox.cu`` and, when it was built, ``letterbox.fatbin``): only
numpy and the standard library are imported here; pycuda is imported when a
:class:`CudaLetterbox` is created.

:class:`CudaLetterbox` loads the kernel of ``templates/cuda/letterbox.cu`` into the
device's *primary* context (the one Triton's CUDA runtime uses, so the pointers it
hands out are valid there), from a precompiled ``letterbox.fatbin``/``.cubin`` beside
it if one loads, else from the source with pycuda's ``SourceModule`` (nvcc at load
time). :meth:`CudaLetterbox.letterbox_batch` uploads a batch of BGR images in one copy,
launches the kernel once per image into one ``[N, 3, H, W]`` device allocation and
returns a :class:`DeviceBatch`, which is a DLPack producer and can be copied back with
``to_host()``. Building the kernel (fatbin, CPU reference) is
``generator/export/cuda_tools.py``'s job.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

try:  # as part of the generator package (tests, offline use)
    from .dlpack import KDL_CUDA, DLPackTensor
    from .letterbox import letterbox_params, transform_rows
except ImportError:  # inside Triton: the modules are copied beside this file
    from dlpack import KDL_CUDA, DLPackTensor
    from letterbox import letterbox_params, transform_rows

KERNEL_SOURCE = "letterbox.cu"
KERNEL_BINARIES = ("letterbox.fatbin", "letterbox.cubin")
ENTRY_POINTS = {"float32": "letterbox_f32", "float16": "letterbox_f16"}
# kernel arguments after the two pointers, in order; "PP" + this is pycuda's prepare() format
SCALAR_ARGS = ("scale_x", "scale_y", "src_h", "src_w", "src_stride", "batch_index",
               "out_h", "out_w", "new_h", "new_w", "top", "left")
PREPARE_FORMAT = "PPdd" + "i" * 10
BLOCK = (32, 8, 1)


class GpuUnavailable(RuntimeError):
    """The CUDA path cannot run here; the message says why (pycuda, driver, device, kernel)."""


# ---------------------------------------------------------------------------------------------
# launch arguments


class LetterboxArgs(NamedTuple):
    """The scalar arguments of one kernel launch (see ``SCALAR_ARGS``)."""

    scale_x: float
    scale_y: float
    src_h: int
    src_w: int
    src_stride: int
    batch_index: int
    out_h: int
    out_w: int
    new_h: int
    new_w: int
    top: int
    left: int


def kernel_args(h: int, w: int, out_h: int, out_w: int, batch_index: int = 0, src_stride: Optional[int] = None,
                geometry: Optional[Sequence[float]] = None) -> LetterboxArgs:
    """Launch arguments for an ``h x w`` BGR image into slot ``batch_index``.

    The source step is ``1 / (new / src)`` in double, as ``cv::resize`` computes it.
    """
    _, new_w, new_h, left, top = geometry if geometry is not None else letterbox_params(h, w, out_h, out_w)
    return LetterboxArgs(
        scale_x=1.0 / (new_w / w), scale_y=1.0 / (new_h / h), src_h=int(h), src_w=int(w),
        src_stride=int(src_stride if src_stride is not None else 3 * w), batch_index=int(batch_index),
        out_h=int(out_h), out_w=int(out_w), new_h=int(new_h), new_w=int(new_w), top=int(top), left=int(left))


def launch_grid(out_h: int, out_w: int) -> Tuple[int, int, int]:
    """Blocks covering an ``out_h x out_w`` output, one thread per output pixel."""
    return ((out_w + BLOCK[0] - 1) // BLOCK[0], (out_h + BLOCK[1] - 1) // BLOCK[1], 1)


def as_bgr(image) -> np.ndarray:
    """``image`` as a C-contiguous HxWx3 uint8 array; ValueError naming its shape otherwise."""
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"expected an HxWx3 uint8 BGR image, got shape {img.shape} dtype {img.dtype}")
    return np.ascontiguousarray(img)


def output_dtype(dtype) -> np.dtype:
    """float32 or float16 (the kernel's two outputs); ValueError otherwise."""
    dt = np.dtype(dtype)
    if dt.name not in ENTRY_POINTS:
        raise ValueError(f"output dtype must be float32 or float16, not {dt}")
    return dt


def batch_geometry(images: Sequence[np.ndarray], out_h: int, out_w: int,
                   geometry: Optional[Sequence[Sequence[float]]] = None) -> List[Sequence[float]]:
    """Per image, the given geometry or ``letterbox_params``; ValueError when the counts differ."""
    geoms = list(geometry) if geometry is not None else [
        letterbox_params(img.shape[0], img.shape[1], out_h, out_w) for img in images]
    if len(geoms) != len(images):
        raise ValueError(f"{len(images)} images but {len(geoms)} geometries")
    return geoms


def batch_transforms(images: Sequence[np.ndarray], geoms: Sequence[Sequence[float]]) -> np.ndarray:
    """The TRANSFORM rows of a batch, ``[N, 5]``."""
    return transform_rows(geoms, [img.shape[:2] for img in images])


def _offsets(images: Sequence[np.ndarray]) -> Tuple[List[int], int]:
    """Each image's byte offset in the staging buffer (256-byte aligned) and the total size."""
    offsets, total = [], 0
    for img in images:
        offsets.append(total)
        total += (img.nbytes + 255) // 256 * 256
    return offsets, total


# ---------------------------------------------------------------------------------------------
# where the kernel is at load time


def kernel_search_path(extra: Optional[os.PathLike] = None) -> List[Path]:
    """Folders searched for the kernel: ``extra``, this file's folder (a repository's
    version folder), then the package templates (installed, then a checkout)."""
    here = Path(__file__).resolve().parent
    dirs = [Path(extra)] if extra else []
    dirs += [here, here.parent / "templates" / "cuda", here.parent.parent / "templates" / "cuda"]
    return dirs


def find_kernel_source(extra: Optional[os.PathLike] = None) -> Path:
    """``letterbox.cu`` in the first folder of :func:`kernel_search_path` that has it."""
    for folder in kernel_search_path(extra):
        if (folder / KERNEL_SOURCE).is_file():
            return folder / KERNEL_SOURCE
    raise FileNotFoundError(f"{KERNEL_SOURCE} not found in " + ", ".join(map(str, kernel_search_path(extra))))


def find_nvcc() -> Optional[str]:
    """The nvcc that compiles the kernel source when no precompiled binary loads (PATH, then
    the CUDA install folders, where Triton's containers keep it off the PATH)."""
    found = shutil.which("nvcc")
    if found:
        return found
    for candidate in ("/usr/local/cuda/bin/nvcc", "/usr/local/bin/nvcc"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


# ---------------------------------------------------------------------------------------------
# the GPU path (pycuda)


def _driver(device_id: int):
    """``pycuda.driver``, initialised, with ``device_id`` visible; GpuUnavailable saying why not."""
    try:
        import pycuda.driver as cuda
    except Exception as exc:  # ImportError, or a pycuda built for another CUDA
        raise GpuUnavailable(f"pycuda is not importable ({type(exc).__name__}: {exc})") from exc
    try:
        cuda.init()
        count = cuda.Device.count()
    except Exception as exc:
        raise GpuUnavailable(f"the CUDA driver cannot be initialised ({exc})") from exc
    if count == 0:
        raise GpuUnavailable("no CUDA device is visible")
    if not 0 <= int(device_id) < count:
        raise GpuUnavailable(f"CUDA device {device_id} does not exist ({count} visible)")
    return cuda


def _prepared(module, symbol: str):
    """A kernel function of ``module`` with its argument format prepared."""
    fn = module.get_function(symbol)
    fn.prepare(PREPARE_FORMAT)
    return fn


def _memory_pool():
    """A pycuda device memory pool, or None. Outputs come from a pool: cuMemFree per request
    would synchronise the whole context (the detector's work included); pooled blocks are
    whole cuMemAlloc allocations, so Triton can still share them with CUDA IPC."""
    try:
        from pycuda.tools import DeviceMemoryPool

        return DeviceMemoryPool()
    except Exception:
        return None


class DeviceBatch:
    """A letterboxed batch in device memory ([N, 3, H, W], C order) on ``device_id``.

    A DLPack producer (kDLCUDA): ``pb_utils.Tensor.from_dlpack("PREPROCESSED", batch)``;
    the allocation lives until every consumer has called its deleter.
    """

    def __init__(self, engine: "CudaLetterbox", allocation, shape, dtype, event, transforms: np.ndarray):
        self._engine = engine
        self.allocation = allocation
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.device_id = engine.device_id
        self.transforms = transforms
        self._event = event
        self._marks: list = []

    @property
    def ptr(self) -> int:
        return int(self.allocation)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def synchronize(self) -> None:
        """Wait until the kernels that write this batch are done."""
        with self._engine.activated():
            self._event.synchronize()

    def timings_ms(self) -> dict:
        """With ``letterbox_batch(..., timing=True)``: upload and kernel time from CUDA events."""
        marks = getattr(self, "_marks", [])
        if len(marks) != 2:
            raise RuntimeError("no timing events: call letterbox_batch(..., timing=True) on a non-empty batch")
        with self._engine.activated():
            self._event.synchronize()
            return {"upload": marks[1].time_since(marks[0]), "kernel": self._event.time_since(marks[1]),
                    "total": self._event.time_since(marks[0])}

    def to_host(self) -> np.ndarray:
        out = np.empty(self.shape, dtype=self.dtype)
        if out.size:
            with self._engine.activated():
                self._event.synchronize()
                self._engine.cuda.memcpy_dtoh(out, self.allocation)
        return out

    def dlpack(self) -> DLPackTensor:
        # the consumer's stream is not ours: wait for the kernels before handing the pointer on
        return DLPackTensor(self.ptr, self.shape, self.dtype, KDL_CUDA, self.device_id, owner=self,
                            before_export=lambda stream: self.synchronize(), release=self._engine._release)

    def __dlpack__(self, stream=None, **kwargs):
        return self.dlpack().__dlpack__(stream, **kwargs)

    def __dlpack_device__(self) -> Tuple[int, int]:
        return (KDL_CUDA, self.device_id)


class CudaLetterbox:
    """The letterbox kernel on one GPU, in that device's primary context.

    Raises :class:`GpuUnavailable` (with the reason) when pycuda, the driver, the device
    or the kernel is missing; callers fall back to the CPU path.
    """

    def __init__(self, device_id: int = 0, kernel_dir: Optional[os.PathLike] = None, nvcc: Optional[str] = None):
        self.cuda = cuda = _driver(device_id)
        self.device_id = int(device_id)
        try:
            self.device = cuda.Device(self.device_id)
            self.device_name = self.device.name()
            self.context = self.device.retain_primary_context()
        except Exception as exc:
            raise GpuUnavailable(f"cannot use the primary context of CUDA device {device_id} ({exc})") from exc
        self._thread = threading.get_ident()
        self._pending: List[object] = []
        self._staging = None
        self._device_input = None
        self._device_input_size = 0
        self._pool = None
        self.context.push()
        try:
            self._setup(kernel_dir, nvcc)
        except GpuUnavailable:
            self._detach()
            raise
        except Exception as exc:
            self._detach()
            raise GpuUnavailable(f"cannot load the letterbox kernel ({type(exc).__name__}: {exc})") from exc
        finally:
            if self.context is not None:
                cuda.Context.pop()

    # -- setup ---------------------------------------------------------------------------------

    def _setup(self, kernel_dir, nvcc) -> None:
        """Kernel functions, stream and output pool, with the context current."""
        module, self.loaded_from = self._load_module(self.cuda, kernel_dir, nvcc)
        self._module = module
        self._functions = {np.dtype(name): _prepared(module, symbol) for name, symbol in ENTRY_POINTS.items()}
        self._stream = self.cuda.Stream()
        self._pool = _memory_pool()

    def _load_module(self, cuda, kernel_dir, nvcc):
        errors = []
        for folder in kernel_search_path(kernel_dir):
            for name in KERNEL_BINARIES:
                path = folder / name
                if path.is_file():
                    try:
                        return cuda.module_from_file(str(path)), str(path)
                    except Exception as exc:  # e.g. no SASS/PTX for this GPU
                        errors.append(f"{path}: {exc}")
        try:
            source = find_kernel_source(kernel_dir)
        except FileNotFoundError as exc:
            raise GpuUnavailable("; ".join(errors + [str(exc)])) from exc
        nvcc = nvcc or find_nvcc()
        if not nvcc:
            raise GpuUnavailable("; ".join(errors + [f"no precompiled kernel and no nvcc to compile {source}"]))
        from pycuda.compiler import SourceModule

        text = source.read_text()
        try:
            return SourceModule(text, nvcc=nvcc, no_extern_c=True), f"{source} (nvcc {nvcc})"
        except Exception as exc:
            cache_error = exc
        try:  # a read-only cache folder is the usual cause: retry without the cache
            return SourceModule(text, nvcc=nvcc, no_extern_c=True, cache_dir=False), f"{source} (nvcc {nvcc})"
        except Exception as exc:
            raise GpuUnavailable("; ".join(errors + [f"nvcc could not build {source}: {exc}",
                                                     f"(first try: {cache_error})"])) from exc

    def _detach(self):
        if self.context is not None:
            try:
                self.cuda.Context.pop()
            except Exception:
                pass
            try:
                self.context.detach()
            except Exception:
                pass
            self.context = None

    # -- context handling ----------------------------------------------------------------------

    class _Active:
        def __init__(self, engine):
            self.engine = engine

        def __enter__(self):
            if self.engine.context is None:
                raise RuntimeError("CudaLetterbox is closed")
            self.engine.context.push()
            return self.engine

        def __exit__(self, *exc):
            self.engine.cuda.Context.pop()
            return False

    def activated(self) -> "CudaLetterbox._Active":
        """``with engine.activated():`` runs with this device's primary context current."""
        return self._Active(self)

    def _release(self, owner) -> None:
        # DLPack deleter: pycuda frees memory only from the thread that set the context up
        if threading.get_ident() != self._thread:
            self._pending.append(owner)

    def _drain_releases(self) -> None:
        while self._pending:
            self._pending.pop()

    def _buffers(self, total: int):
        cuda = self.cuda
        if self._staging is None or self._staging.size < total:
            cap = 1 << max(16, (total - 1).bit_length())
            self._staging = cuda.pagelocked_empty(cap, np.uint8)
        if self._device_input is None or self._device_input_size < total:
            cap = 1 << max(16, (total - 1).bit_length())
            if self._device_input is not None:
                self._device_input.free()
            self._device_input = cuda.mem_alloc(cap)
            self._device_input_size = cap
        return self._staging, self._device_input

    # -- work ----------------------------------------------------------------------------------

    def letterbox_batch(self, images: Sequence[np.ndarray], out_h: int, out_w: int, dtype=np.float32,
                        geometry: Optional[Sequence[Sequence[float]]] = None, timing: bool = False) -> DeviceBatch:
        """BGR uint8 HWC images -> one device tensor [N, 3, out_h, out_w] (RGB, /255).

        One pinned staging copy and one upload for the batch, one launch per image, no
        copy back; ``geometry`` (per image, as ``letterbox_params`` returns) may be given
        so the caller's transform and the kernel agree by construction. ``timing`` records
        CUDA events around the upload and the launches (``DeviceBatch.timings_ms()``).
        """
        dt = output_dtype(dtype)
        images = [as_bgr(img) for img in images]
        geoms = batch_geometry(images, out_h, out_w, geometry)
        shape = (len(images), 3, int(out_h), int(out_w))
        size = max(int(np.prod(shape)) * dt.itemsize, dt.itemsize)
        with self.activated():
            self._drain_releases()
            output = self._pool.allocate(size) if self._pool is not None else self.cuda.mem_alloc(size)
            marks = self._launch(images, geoms, output, shape, dt, timing) if images else []
            event = self.cuda.Event()
            event.record(self._stream)
        batch = DeviceBatch(self, output, shape, dt, event, batch_transforms(images, geoms))
        batch._marks = marks
        return batch

    def _launch(self, images: List[np.ndarray], geoms, output, shape: Tuple[int, int, int, int], dt: np.dtype,
                timing: bool) -> list:
        """Upload ``images`` in one copy and launch the kernel once per image into ``output``
        (``shape``, with this context current); returns the timing events (none without ``timing``)."""
        cuda, (_, _, out_h, out_w) = self.cuda, shape
        offsets, total = _offsets(images)
        self._stream.synchronize()  # the previous batch's upload has left the staging buffer
        staging, device_input = self._buffers(total)
        for img, off in zip(images, offsets):
            staging[off:off + img.nbytes] = img.reshape(-1)
        marks = [cuda.Event().record(self._stream)] if timing else []
        cuda.memcpy_htod_async(device_input, staging[:total], self._stream)
        if timing:
            marks.append(cuda.Event().record(self._stream))
        fn, grid, base = self._functions[dt], launch_grid(out_h, out_w), int(device_input)
        for index, (img, geo, off) in enumerate(zip(images, geoms, offsets)):
            h, w = img.shape[:2]
            args = kernel_args(h, w, out_h, out_w, index, img.strides[0], geo)
            fn.prepared_async_call(grid, BLOCK, self._stream, base + off, int(output), *args)
        return marks

    def close(self) -> None:
        if self.context is None:
            return
        with self.activated():
            self._stream.synchronize()
            self._drain_releases()
            if self._device_input is not None:
                self._device_input.free()
                self._device_input = None
            self._staging = None
            if self._pool is not None:
                self._pool.stop_holding()  # blocks still exported are freed when their consumers finish
        try:
            self.context.detach()
        finally:
            self.context = None
