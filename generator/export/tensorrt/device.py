"""Which GPU a build runs on, asked of the CUDA driver (libcuda) through ctypes: no CUDA
toolkit, pycuda or TensorRT needed, so the question is answered before a long build."""

from __future__ import annotations

import ctypes

from generator.errors import TritonForgeError

CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
DRIVER_LIBRARIES = ("libcuda.so.1", "libcuda.so", "nvcuda.dll")
HINT = ("`tritonforge build` needs an NVIDIA GPU with its driver, on the machine (or the same GPU model and "
        "TensorRT version) that will serve the plan")


def cuda_device(index: int = 0) -> dict:
    """Name and compute capability of CUDA device ``index``, from the driver (libcuda) via ctypes.

    Raises TritonForgeError when there is no driver or no device: plans are built on the
    GPU that will run them.
    """
    lib = _driver()
    rc = lib.cuInit(0)
    count = ctypes.c_int(0)
    if rc != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        raise TritonForgeError(f"no usable CUDA GPU (cuInit returned {rc}; check the driver and "
                               f"CUDA_VISIBLE_DEVICES): {HINT}")
    device = ctypes.c_int(0)
    if lib.cuDeviceGet(ctypes.byref(device), index) != 0:
        raise TritonForgeError(f"CUDA device {index} not found ({count.value} visible)")
    buf = ctypes.create_string_buffer(256)
    lib.cuDeviceGetName(buf, 256, device)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    lib.cuDeviceGetAttribute(ctypes.byref(major), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device)
    lib.cuDeviceGetAttribute(ctypes.byref(minor), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device)
    return {"name": buf.value.decode("utf-8", "replace"), "compute_capability": f"{major.value}.{minor.value}"}


def _driver():
    for name in DRIVER_LIBRARIES:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise TritonForgeError(f"no CUDA driver found (libcuda.so.1): {HINT}")
