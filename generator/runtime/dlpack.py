"""A minimal DLPack producer over a raw pointer (CPU or CUDA memory), with ctypes only.

What the GPU preprocess hands Triton (``pb_utils.Tensor.from_dlpack``) without a torch
or cupy dependency in the server: the ``dlpack.h`` structs, a ``"dltensor"`` PyCapsule
(:func:`make_capsule`) and :class:`DLPackTensor`, a producer that keeps an owner alive
until the consumer calls the deleter (or the capsule dies unconsumed).
"""

from __future__ import annotations

import ctypes
import itertools
from typing import Callable, NamedTuple, Optional, Sequence, Tuple

import numpy as np

# DLPack device types and type codes (dlpack.h)
KDL_CPU = 1
KDL_CUDA = 2
KDL_CUDA_HOST = 3
KDL_INT, KDL_UINT, KDL_FLOAT, KDL_BOOL = 0, 1, 2, 6


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
