"""Building the CUDA letterbox kernel, outside the server: nvcc, fatbins, the CPU reference.

- :func:`compile_fatbin` precompiles ``templates/cuda/letterbox.cu`` (SASS per arch + PTX)
  so a repository needs no nvcc at run time;
- :func:`compile_host_reference` builds the same source for the CPU
  (``-DTRITONFORGE_HOST_REFERENCE``) and :class:`HostReference` runs it through ctypes
  with the engine's interface: the reference the kernel is checked against, and a
  stand-in for the GPU in tests and benchmarks.

The engine the server runs is ``generator/runtime/cuda_letterbox.py``; nothing here is
shipped in a repository.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from generator.resources import templates_dir
from generator.runtime.cuda_letterbox import (KERNEL_SOURCE, as_bgr, batch_geometry, batch_transforms, find_nvcc,
                                              kernel_args, output_dtype)
from generator.runtime.dlpack import KDL_CPU, DLPackTensor
from generator.runtime.letterbox import letterbox_params, transform_row

__all__ = ["DEFAULT_ARCHS", "HOST_ENTRY_POINTS", "HostBatch", "HostReference", "compile_fatbin",
           "compile_host_reference", "find_nvcc", "kernel_source", "nvcc_archs"]

HOST_ENTRY_POINTS = {"float32": "letterbox_host_f32", "float16": "letterbox_host_f16"}
# default architectures of a precompiled fatbin: Turing .. Hopper, Orin (87); PTX of the
# lowest one is added so newer GPUs JIT it. Xavier (72) needs JetPack's nvcc (CUDA 13 dropped it).
DEFAULT_ARCHS = (72, 75, 80, 86, 87, 89, 90)


def kernel_source() -> Path:
    """The kernel source the package ships: ``templates/cuda/letterbox.cu``."""
    return templates_dir() / "cuda" / KERNEL_SOURCE


# ---------------------------------------------------------------------------------------------
# nvcc


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
    _run(cmd + [str(source or kernel_source())])
    return chosen


def compile_host_reference(output: os.PathLike, source: Optional[os.PathLike] = None,
                           compiler: Optional[str] = None) -> Path:
    """Build the CPU reference of the kernel (a shared library) from the same ``.cu`` with
    g++ (``-x c++``) or, when ``compiler`` is an nvcc, with nvcc."""
    source = Path(source or kernel_source())
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
        img = as_bgr(image)
        dt = output_dtype(out.dtype)
        if out.ndim != 4 or out.shape[1] != 3 or not out.flags.c_contiguous or not 0 <= index < out.shape[0]:
            raise ValueError(f"bad output array {out.shape} for slot {index}")
        h, w = img.shape[:2]
        geometry = geometry if geometry is not None else letterbox_params(h, w, out.shape[2], out.shape[3])
        args = kernel_args(h, w, out.shape[2], out.shape[3], index, img.strides[0], geometry)
        rc = self._functions[dt](img.ctypes.data, out.ctypes.data, *args)
        if rc != 0:
            raise ValueError(f"host reference refused the arguments {args}")
        return out

    def letterbox(self, image: np.ndarray, out_h: int, out_w: int, dtype=np.float32) -> Tuple[np.ndarray, np.ndarray]:
        """One BGR image -> (``3 x out_h x out_w``, transform[5]), like ``imaging.letterbox``."""
        out = np.empty((1, 3, out_h, out_w), dtype=output_dtype(dtype))
        self.letterbox_into(out, 0, image)
        h, w = image.shape[:2]
        return out[0], transform_row(letterbox_params(h, w, out_h, out_w), h, w)

    def letterbox_batch(self, images: Sequence[np.ndarray], out_h: int, out_w: int, dtype=np.float32,
                        geometry: Optional[Sequence[Sequence[float]]] = None) -> HostBatch:
        """BGR uint8 HWC images -> ``HostBatch`` [N, 3, out_h, out_w], like ``CudaLetterbox.letterbox_batch``."""
        images = [as_bgr(img) for img in images]
        geoms = batch_geometry(images, out_h, out_w, geometry)
        out = np.empty((len(images), 3, out_h, out_w), dtype=output_dtype(dtype))
        for index, (img, geo) in enumerate(zip(images, geoms)):
            self.letterbox_into(out, index, img, geo)
        return HostBatch(out, batch_transforms(images, geoms))

    def close(self) -> None:
        pass
