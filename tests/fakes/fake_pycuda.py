"""A stand-in for ``pycuda`` whose "device" is host memory and whose kernels are the host
reference of ``letterbox.cu`` (the same arithmetic), so the engine in
``generator/runtime/cuda_letterbox.py`` (staging, upload, launch arguments, pool, events,
DLPack, close) runs without a GPU. Install with :func:`install` (monkeypatch)."""

import ctypes
import types

import numpy as np

HOST_SYMBOLS = {"letterbox_f32": "letterbox_host_f32", "letterbox_f16": "letterbox_host_f16"}


class Allocation:
    """Device memory: a host buffer; ``int()`` is its address, as pycuda's is."""

    def __init__(self, nbytes):
        self.array = np.zeros(max(1, int(nbytes)), np.uint8)
        self.freed = False

    def __int__(self):
        return self.array.ctypes.data

    def free(self):
        self.freed = True


class Function:
    """A prepared kernel: each launch calls the host reference with the same arguments."""

    def __init__(self, host_fn):
        self.host_fn = host_fn
        self.format = None
        self.launches = []

    def prepare(self, fmt):
        self.format = fmt
        return self

    def prepared_async_call(self, grid, block, stream, src, out, *args):
        self.launches.append((grid, block, args))
        if self.host_fn(int(src), int(out), *args) != 0:
            raise RuntimeError(f"launch refused: {args}")


def driver_module(library_path):
    """A ``pycuda.driver`` stand-in over the host reference built at ``library_path``."""
    lib = ctypes.CDLL(str(library_path))
    d = types.ModuleType("pycuda.driver")
    d.contexts = []

    class Context:
        def push(self):
            d.contexts.append(self)

        @staticmethod
        def pop():
            d.contexts.pop()

        def detach(self):
            pass

    class Device:
        def __init__(self, index):
            self.index = index

        @staticmethod
        def count():
            return 1

        def name(self):
            return "host stand-in"

        def retain_primary_context(self):
            return Context()

    class Module:
        def get_function(self, symbol):
            fn = getattr(lib, HOST_SYMBOLS[symbol])
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_double, ctypes.c_double] + [ctypes.c_int] * 10
            return Function(fn)

    class Stream:
        handle = 0

        def synchronize(self):
            pass

    class Event:
        def record(self, stream=None):
            return self

        def synchronize(self):
            pass

        def time_since(self, other):
            return 0.0

    d.Context, d.Device, d.Stream, d.Event = Context, Device, Stream, Event
    d.init = lambda: None
    d.mem_alloc = Allocation
    d.pagelocked_empty = lambda n, dtype: np.empty(n, dtype)
    d.module_from_file = lambda path: Module()
    d.memcpy_htod_async = lambda dst, src, stream: ctypes.memmove(int(dst), src.ctypes.data, src.nbytes)
    d.memcpy_dtoh = lambda dst, src: ctypes.memmove(dst.ctypes.data, int(src), dst.nbytes)
    return d


def install(monkeypatch, library_path):
    """Make ``import pycuda.driver`` / ``pycuda.tools`` return the stand-ins; returns the driver."""
    import sys

    driver = driver_module(library_path)
    tools = types.ModuleType("pycuda.tools")

    class DeviceMemoryPool:
        def allocate(self, nbytes):
            return Allocation(nbytes)

        def stop_holding(self):
            pass

    tools.DeviceMemoryPool = DeviceMemoryPool
    package = types.ModuleType("pycuda")
    package.driver, package.tools = driver, tools
    for name, module in (("pycuda", package), ("pycuda.driver", driver), ("pycuda.tools", tools)):
        monkeypatch.setitem(sys.modules, name, module)
    return driver
