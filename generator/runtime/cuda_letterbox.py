"""The CUDA letterbox of the GPU preprocess stage, and a minimal DLPack producer.

Copied verbatim into generated repositories beside ``model.py`` (with
``letterbox.cu`` and, when it was built, ``letterbox.fatbin``): only numpy and the
standard library are imported here; pycuda is imported when a :class:`CudaLetterbox`
is created.

- :class:`CudaLetterbox` loads the kernel of ``templates/cuda/letterbox.cu`` into the
  device's *primary* context (the one Triton's CUDA runtime uses, so the pointers it
  hands out are valid there), from a precompiled ``letterbox.fatbin``/``.cubin`` beside
  it if one loads, else from the source with pycuda's ``SourceModule`` (nvcc at run
  time). :meth:`CudaLetterbox.letterbox_batch` uploads a batch of BGR images in one
  copy, launches the kernel once per image into one ``[N, 3, H, W]`` device
  allocation and returns a :class:`DeviceBatch`, which is a DLPack producer
  (``__dlpack__``/``__dlpack_device__``) and can be copied back with ``to_host()``.
- :class:`HostReference` runs the same source compiled for the CPU
  (``-DTRITONFORGE_HOST_REFERENCE``), with the same interface: the reference the kernel
  is checked against, and a stand-in for the GPU in tests.
- :class:`DLPackTensor` / :func:`make_capsule`: a DLPack producer over any raw pointer
  (CPU or CUDA), keeping an owner alive until the consumer calls the deleter.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Callable, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

KERNEL_SOURCE = "letterbox.cu"
KERNEL_BINARIES = ("letterbox.fatbin", "letterbox.cubin")
ENTRY_POINTS = {"float32": "letterbox_f32", "float16": "letterbox_f16"}
HOST_ENTRY_POINTS = {"float32": "letterbox_host_f32", "float16": "letterbox_host_f16"}
# kernel arguments after the two pointers, in order; "PP" + this is pycuda's prepare() format
SCALAR_ARGS = ("scale_x", "scale_y", "src_h", "src_w", "src_stride", "batch_index",
               "out_h", "out_w", "new_h", "new_w", "top", "left")
PREPARE_FORMAT = "PPdd" + "i" * 10
BLOCK = (32, 8, 1)
PAD_VALUE = 114
# default architectures of a precompiled fatbin: Turing .. Hopper, Orin (87); PTX of the
# lowest one is added so newer GPUs JIT it. Xavier (72) needs JetPack's nvcc (CUDA 13 dropped it).
DEFAULT_ARCHS = (72, 75, 80, 86, 87, 89, 90)

# DLPack device types and type codes (dlpack.h)
KDL_CPU = 1
KDL_CUDA = 2
KDL_CUDA_HOST = 3
KDL_INT, KDL_UINT, KDL_FLOAT, KDL_BOOL = 0, 1, 2, 6


class GpuUnavailable(RuntimeError):
    """The CUDA path cannot run here; the message says why (pycuda, driver, device, kernel)."""


# ---------------------------------------------------------------------------------------------
# letterbox geometry (the same numbers as imaging.letterbox_params, which imports cv2)


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


def letterbox_geometry(h: int, w: int, out_h: int, out_w: int) -> Tuple[float, int, int, int, int]:
    """Scale, resized width and height, left and top padding: ``imaging.letterbox_params``."""
    scale = min(out_h / h, out_w / w)
    new_w, new_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    left = int(round((out_w - new_w) / 2 - 0.1))
    top = int(round((out_h - new_h) / 2 - 0.1))
    return scale, new_w, new_h, left, top


def transform_of(geometry: Sequence[float], h: int, w: int) -> np.ndarray:
    """The TRANSFORM row (scale, pad_x, pad_y, width, height) for an ``h x w`` image."""
    scale, _, _, left, top = geometry
    return np.array([scale, left, top, w, h], dtype=np.float32)


def kernel_args(h: int, w: int, out_h: int, out_w: int, batch_index: int = 0, src_stride: Optional[int] = None,
                geometry: Optional[Sequence[float]] = None) -> LetterboxArgs:
    """Launch arguments for an ``h x w`` BGR image into slot ``batch_index``.

    The source step is ``1 / (new / src)`` in double, as ``cv::resize`` computes it.
    """
    _, new_w, new_h, left, top = geometry if geometry is not None else letterbox_geometry(h, w, out_h, out_w)
    return LetterboxArgs(
        scale_x=1.0 / (new_w / w), scale_y=1.0 / (new_h / h), src_h=int(h), src_w=int(w),
        src_stride=int(src_stride if src_stride is not None else 3 * w), batch_index=int(batch_index),
        out_h=int(out_h), out_w=int(out_w), new_h=int(new_h), new_w=int(new_w), top=int(top), left=int(left))


def launch_grid(out_h: int, out_w: int) -> Tuple[int, int, int]:
    return ((out_w + BLOCK[0] - 1) // BLOCK[0], (out_h + BLOCK[1] - 1) // BLOCK[1], 1)


def _as_bgr(image) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"expected an HxWx3 uint8 BGR image, got shape {img.shape} dtype {img.dtype}")
    return np.ascontiguousarray(img)


def _output_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.name not in ENTRY_POINTS:
        raise ValueError(f"output dtype must be float32 or float16, not {dt}")
    return dt


# ---------------------------------------------------------------------------------------------
# where the kernel files are, and building them


def kernel_search_path(extra: Optional[os.PathLike] = None) -> List[Path]:
    """Folders searched for the kernel: ``extra``, this file's folder (a repository's
    version folder), then the package templates (installed, then a checkout)."""
    here = Path(__file__).resolve().parent
    dirs = [Path(extra)] if extra else []
    dirs += [here, here.parent / "templates" / "cuda", here.parent.parent / "templates" / "cuda"]
    return dirs


def find_kernel_source(extra: Optional[os.PathLike] = None) -> Path:
    for folder in kernel_search_path(extra):
        if (folder / KERNEL_SOURCE).is_file():
            return folder / KERNEL_SOURCE
    raise FileNotFoundError(f"{KERNEL_SOURCE} not found in " + ", ".join(map(str, kernel_search_path(extra))))


def find_nvcc() -> Optional[str]:
    found = shutil.which("nvcc")
    if found:
        return found
    for candidate in ("/usr/local/cuda/bin/nvcc", "/usr/local/bin/nvcc"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def nvcc_archs(nvcc: Optional[str] = None) -> List[int]:
    """Compute capabilities the nvcc compiles for (``nvcc --list-gpu-arch``), e.g. [75, 80, ...]."""
    nvcc = nvcc or find_nvcc()
    if not nvcc:
        return []
    out = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True, check=False).stdout
    archs = []
    for token in out.split():
        if token.startswith("compute_") and token[len("compute_"):].isdigit():
            archs.append(int(token[len("compute_"):]))
    return sorted(set(archs))


def _run(cmd: List[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr.strip()}")


def compile_fatbin(output: os.PathLike, archs: Iterable[int] = DEFAULT_ARCHS, source: Optional[os.PathLike] = None,
                   nvcc: Optional[str] = None) -> List[int]:
    """Precompile the kernel into a fatbin (SASS per arch + PTX of the lowest): put it beside
    ``letterbox.cu`` in a repository so no nvcc is needed at run time. Archs the nvcc does not
    list are left out; returns those compiled. Raises when none is left or nvcc is missing."""
    nvcc = nvcc or find_nvcc()
    if not nvcc:
        raise RuntimeError("nvcc not found: cannot precompile the letterbox kernel")
    available = set(nvcc_archs(nvcc))
    chosen = sorted(a for a in set(archs) if a in available)
    if not chosen:
        raise RuntimeError(f"nvcc supports none of the archs {sorted(set(archs))} (it lists {sorted(available)})")
    cmd = [nvcc, "-fatbin", "-O3", "-o", str(output)]
    for arch in chosen:
        cmd += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    cmd += ["-gencode", f"arch=compute_{chosen[0]},code=compute_{chosen[0]}"]
    _run(cmd + [str(source or find_kernel_source())])
    return chosen


def compile_host_reference(output: os.PathLike, source: Optional[os.PathLike] = None,
                           compiler: Optional[str] = None) -> Path:
    """Build the CPU reference of the kernel (a shared library) from the same ``.cu`` with
    g++ (``-x c++``) or, when ``compiler`` is an nvcc, with nvcc."""
    source = Path(source or find_kernel_source())
    compiler = compiler or shutil.which("g++") or shutil.which("c++") or find_nvcc()
    if not compiler:
        raise RuntimeError("no C++ compiler (g++) or nvcc to build the letterbox host reference")
    if Path(compiler).name.startswith("nvcc"):
        cmd = [compiler, "-O2", "-DTRITONFORGE_HOST_REFERENCE", "-shared", "-Xcompiler", "-fPIC,-ffp-contract=off"]
    else:
        cmd = [compiler, "-x", "c++", "-O2", "-ffp-contract=off", "-DTRITONFORGE_HOST_REFERENCE", "-shared", "-fPIC"]
    _run(cmd + ["-o", str(output), str(source)])
    return Path(output)


# ---------------------------------------------------------------------------------------------
# DLPack producer


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


_DELETER_T = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", _DELETER_T)]


class _Export(NamedTuple):
    managed: DLManagedTensor
    shape: ctypes.Array
    strides: ctypes.Array
    owner: object
    release: Optional[Callable[[object], None]]


# exported and not yet deleted, by manager_ctx: keeps the struct, the shape arrays and the owner alive
_LIVE = {}
_KEYS = itertools.count(1)
_CAPSULE_NAME = ctypes.create_string_buffer(b"dltensor")

# private prototypes (ctypes.pythonapi's are shared with every other user in the process)
_PyCapsule_New = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(
    ("PyCapsule_New", ctypes.pythonapi))
_PyCapsule_IsValid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(
    ("PyCapsule_IsValid", ctypes.pythonapi))
_PyCapsule_GetPointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))


def _dlpack_deleter(address):
    """``DLManagedTensor.deleter``: the consumer is done; drop (or hand back) the owner."""
    try:
        key = DLManagedTensor.from_address(address).manager_ctx
        entry = _LIVE.pop(key, None) if _LIVE is not None else None
        if entry is not None and entry.release is not None:
            entry.release(entry.owner)
    except Exception:  # never raise into the consumer's C code
        pass


def _capsule_destructor(capsule_address):
    """A capsule never consumed (still named "dltensor") deletes its tensor itself."""
    try:
        name = ctypes.addressof(_CAPSULE_NAME)
        if _PyCapsule_IsValid(capsule_address, name):
            managed = _PyCapsule_GetPointer(capsule_address, name)
            if managed:
                _dlpack_deleter(managed)
    except Exception:
        pass


_DELETER = _DELETER_T(_dlpack_deleter)
_DESTRUCTOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_capsule_destructor)


def dlpack_dtype(dtype) -> Tuple[int, int]:
    """numpy dtype -> DLPack (type code, bits)."""
    dt = np.dtype(dtype)
    codes = {"f": KDL_FLOAT, "i": KDL_INT, "u": KDL_UINT, "b": KDL_BOOL}
    if dt.kind not in codes:
        raise TypeError(f"no DLPack type for {dt}")
    return codes[dt.kind], dt.itemsize * 8


def live_exports() -> int:
    """How many exported tensors wait for their consumer's deleter (for tests)."""
    return len(_LIVE)


def make_capsule(ptr: int, shape: Sequence[int], dtype, device_type: int = KDL_CPU, device_id: int = 0,
                 owner: object = None, strides: Optional[Sequence[int]] = None, byte_offset: int = 0,
                 release: Optional[Callable[[object], None]] = None):
    """A ``"dltensor"`` PyCapsule over memory at ``ptr`` (``strides`` in elements, C order
    when omitted). ``owner`` is kept alive until the consumer calls the deleter (or the
    capsule dies unconsumed); then ``release(owner)`` runs when given."""
    shape = [int(s) for s in shape]
    if strides is None:
        strides, step = [], 1
        for dim in reversed(shape):
            strides.insert(0, step)
            step *= max(dim, 1)
    ndim = len(shape)
    shape_arr = (ctypes.c_int64 * max(ndim, 1))(*shape)
    strides_arr = (ctypes.c_int64 * max(ndim, 1))(*[int(s) for s in strides])
    code, bits = dlpack_dtype(dtype)
    key = next(_KEYS)
    managed = DLManagedTensor()
    t = managed.dl_tensor
    t.data = ctypes.c_void_p(int(ptr))
    t.device = DLDevice(int(device_type), int(device_id))
    t.ndim = ndim
    t.dtype = DLDataType(code, bits, 1)
    t.shape = ctypes.cast(shape_arr, ctypes.POINTER(ctypes.c_int64))
    t.strides = ctypes.cast(strides_arr, ctypes.POINTER(ctypes.c_int64))
    t.byte_offset = int(byte_offset)
    managed.manager_ctx = key
    managed.deleter = _DELETER
    _LIVE[key] = _Export(managed, shape_arr, strides_arr, owner, release)
    try:
        return _PyCapsule_New(ctypes.addressof(managed), ctypes.addressof(_CAPSULE_NAME),
                              ctypes.cast(_DESTRUCTOR, ctypes.c_void_p))
    except Exception:
        _LIVE.pop(key, None)
        raise


class DLPackTensor:
    """A DLPack producer over a raw pointer: ``np.from_dlpack(t)``, ``torch.from_dlpack(t)``,
    ``pb_utils.Tensor.from_dlpack(name, t)``. Each ``__dlpack__`` call exports one capsule
    that holds ``owner`` until its consumer is done with it."""

    def __init__(self, ptr: int, shape: Sequence[int], dtype, device_type: int = KDL_CPU, device_id: int = 0,
                 owner: object = None, strides: Optional[Sequence[int]] = None, byte_offset: int = 0,
                 before_export: Optional[Callable[[object], None]] = None,
                 release: Optional[Callable[[object], None]] = None):
        self.ptr = int(ptr)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.device = (int(device_type), int(device_id))
        self.owner = owner
        self.strides = None if strides is None else tuple(int(s) for s in strides)
        self.byte_offset = int(byte_offset)
        self._before_export = before_export
        self._release = release

    @classmethod
    def from_numpy(cls, array: np.ndarray) -> "DLPackTensor":
        """Over a numpy array's memory (kDLCPU); the array is the owner."""
        if array.dtype.itemsize == 0 or any(s % array.dtype.itemsize for s in array.strides):
            raise ValueError("strides must be whole elements")
        strides = [s // array.dtype.itemsize for s in array.strides]
        return cls(array.ctypes.data, array.shape, array.dtype, KDL_CPU, 0, owner=array, strides=strides)

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        if copy:
            raise BufferError("this producer cannot copy (copy=True)")
        if dl_device is not None and tuple(int(v) for v in dl_device) != self.device:
            raise BufferError(f"tensor lives on {self.device}, not {tuple(dl_device)}")
        if self._before_export is not None:
            self._before_export(stream)
        return make_capsule(self.ptr, self.shape, self.dtype, self.device[0], self.device[1], owner=self.owner,
                            strides=self.strides, byte_offset=self.byte_offset, release=self._release)

    def __dlpack_device__(self) -> Tuple[int, int]:
        return self.device


# ---------------------------------------------------------------------------------------------
# CPU reference (the same .cu compiled for the host)


class HostBatch:
    """A letterboxed batch in host memory ([N, 3, H, W]); the same surface as DeviceBatch."""

    def __init__(self, array: np.ndarray, transforms: np.ndarray):
        self.array = array
        self.transforms = transforms
        self.shape = array.shape
        self.dtype = array.dtype
        self.device_id = 0

    def synchronize(self) -> None:
        pass

    def to_host(self) -> np.ndarray:
        return self.array.copy()

    def dlpack(self) -> DLPackTensor:
        return DLPackTensor.from_numpy(self.array)

    def __dlpack__(self, stream=None, **kwargs):
        return self.dlpack().__dlpack__(stream, **kwargs)

    def __dlpack_device__(self) -> Tuple[int, int]:
        return (KDL_CPU, 0)


class HostReference:
    """The kernel's arithmetic on the CPU: ``letterbox.cu`` built with
    ``-DTRITONFORGE_HOST_REFERENCE`` (see :func:`compile_host_reference`), through ctypes."""

    loaded_from = "host reference"

    def __init__(self, library: os.PathLike):
        self.library = Path(library)
        lib = ctypes.CDLL(str(self.library))
        self._functions = {}
        for name, symbol in HOST_ENTRY_POINTS.items():
            fn = getattr(lib, symbol)
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_double, ctypes.c_double] + [ctypes.c_int] * 10
            self._functions[np.dtype(name)] = fn
        self._lib = lib

    def letterbox_into(self, out: np.ndarray, index: int, image: np.ndarray, geometry=None) -> np.ndarray:
        """Letterbox one BGR image into ``out[index]`` (``out``: C-contiguous [N, 3, H, W])."""
        img = _as_bgr(image)
        dt = _output_dtype(out.dtype)
        if out.ndim != 4 or out.shape[1] != 3 or not out.flags.c_contiguous or not 0 <= index < out.shape[0]:
            raise ValueError(f"bad output array {out.shape} for slot {index}")
        h, w = img.shape[:2]
        geometry = geometry if geometry is not None else letterbox_geometry(h, w, out.shape[2], out.shape[3])
        args = kernel_args(h, w, out.shape[2], out.shape[3], index, img.strides[0], geometry)
        rc = self._functions[dt](img.ctypes.data, out.ctypes.data, *args)
        if rc != 0:
            raise ValueError(f"host reference refused the arguments {args}")
        return out

    def letterbox(self, image: np.ndarray, out_h: int, out_w: int, dtype=np.float32) -> Tuple[np.ndarray, np.ndarray]:
        """One BGR image -> (``3 x out_h x out_w``, transform[5]), like ``imaging.letterbox``."""
        out = np.empty((1, 3, out_h, out_w), dtype=_output_dtype(dtype))
        self.letterbox_into(out, 0, image)
        h, w = image.shape[:2]
        return out[0], transform_of(letterbox_geometry(h, w, out_h, out_w), h, w)

    def letterbox_batch(self, images: Sequence[np.ndarray], out_h: int, out_w: int, dtype=np.float32,
                        geometry: Optional[Sequence[Sequence[float]]] = None) -> HostBatch:
        images = [_as_bgr(img) for img in images]
        geoms = list(geometry) if geometry is not None else [
            letterbox_geometry(img.shape[0], img.shape[1], out_h, out_w) for img in images]
        out = np.empty((len(images), 3, out_h, out_w), dtype=_output_dtype(dtype))
        for index, (img, geo) in enumerate(zip(images, geoms)):
            self.letterbox_into(out, index, img, geo)
        transforms = np.stack([transform_of(g, img.shape[0], img.shape[1]) for g, img in zip(geoms, images)]) \
            if images else np.zeros((0, 5), np.float32)
        return HostBatch(out, transforms)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# the GPU path (pycuda)


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
        self.cuda = cuda
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
            module, self.loaded_from = self._load_module(cuda, kernel_dir, nvcc)
            self._module = module
            self._functions = {}
            for name, symbol in ENTRY_POINTS.items():
                fn = module.get_function(symbol)
                fn.prepare(PREPARE_FORMAT)
                self._functions[np.dtype(name)] = fn
            self._stream = cuda.Stream()
            # outputs come from a pool: cuMemFree per request would synchronise the whole
            # context (the detector's work included); pooled blocks are whole cuMemAlloc
            # allocations, so Triton can still share them with CUDA IPC
            try:
                from pycuda.tools import DeviceMemoryPool

                self._pool = DeviceMemoryPool()
            except Exception:
                self._pool = None
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
        return CudaLetterbox._Active(self)

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
        copy back; ``geometry`` (per image, as ``letterbox_geometry`` returns) may be given
        so the caller's transform and the kernel agree by construction. ``timing`` records
        CUDA events around the upload and the launches (``DeviceBatch.timings_ms()``).
        """
        dt = _output_dtype(dtype)
        images = [_as_bgr(img) for img in images]
        geoms = list(geometry) if geometry is not None else [
            letterbox_geometry(img.shape[0], img.shape[1], out_h, out_w) for img in images]
        if len(geoms) != len(images):
            raise ValueError(f"{len(images)} images but {len(geoms)} geometries")
        offsets, total = [], 0
        for img in images:
            offsets.append(total)
            total += (img.nbytes + 255) // 256 * 256
        shape = (len(images), 3, int(out_h), int(out_w))
        nbytes = int(np.prod(shape)) * dt.itemsize
        cuda = self.cuda
        fn = self._functions[dt]
        grid = launch_grid(out_h, out_w)
        with self.activated():
            self._drain_releases()
            size = max(nbytes, dt.itemsize)
            output = self._pool.allocate(size) if self._pool is not None else cuda.mem_alloc(size)
            if images:
                self._stream.synchronize()  # the previous batch's upload has left the staging buffer
                staging, device_input = self._buffers(total)
                for img, off in zip(images, offsets):
                    staging[off:off + img.nbytes] = img.reshape(-1)
                marks = [cuda.Event().record(self._stream)] if timing else []
                cuda.memcpy_htod_async(device_input, staging[:total], self._stream)
                if timing:
                    marks.append(cuda.Event().record(self._stream))
                base = int(device_input)
                for index, (img, geo, off) in enumerate(zip(images, geoms, offsets)):
                    h, w = img.shape[:2]
                    args = kernel_args(h, w, out_h, out_w, index, img.strides[0], geo)
                    fn.prepared_async_call(grid, BLOCK, self._stream, base + off, int(output), *args)
            else:
                marks = []
            event = cuda.Event()
            event.record(self._stream)
        transforms = np.stack([transform_of(g, img.shape[0], img.shape[1]) for g, img in zip(geoms, images)]) \
            if images else np.zeros((0, 5), np.float32)
        batch = DeviceBatch(self, output, shape, dt, event, transforms)
        batch._marks = marks
        return batch

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
