"""Legacy TensorRT implicit-INT8 calibrators (TensorRT <= 10), for ``tritonforge build``.

TensorRT 10.1 deprecated implicit INT8 calibration and TensorRT 11 removed it; the
portable path is an explicit Q/DQ ONNX from ``tritonforge quantize``. These calibrators
remain for older TensorRT hosts. ``tensorrt`` and ``pycuda`` are imported only when a
calibrator is made.

Usage on a TensorRT <= 10 host::

    calib = make_calibrator("entropy2", images, Path("model.cache"), batch_size=8)
    config.set_flag(trt.BuilderFlag.INT8)
    config.int8_calibrator = calib
    config.set_calibration_profile(profile)   # a profile whose shapes include [batch_size, 3, H, W]

A cache written by ``tritonforge quantize --trt-cache`` is read instead of calibrating.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from generator._lazy import require
from generator.atomic import write_bytes
from generator.errors import TritonForgeError, UsageError

# kind -> TensorRT base class (the kinds are options.CALIBRATORS)
CALIBRATOR_CLASSES = {"entropy": "IInt8EntropyCalibrator", "entropy2": "IInt8EntropyCalibrator2",
                      "minmax": "IInt8MinMaxCalibrator"}


def make_calibrator(kind: str, batches: np.ndarray, cache: Path, batch_size: int = 8,
                    retag_cache: bool = True):
    """A TensorRT INT8 calibrator of ``kind`` (entropy, entropy2, minmax) over ``batches``
    (``[N, 3, H, W]`` float32, preprocessed like the server), caching to ``cache``.

    ``retag_cache``: when reading a cache whose header names another TensorRT version or
    algorithm (e.g. one written by ``tritonforge quantize``), rewrite the header to this
    TensorRT and calibrator so TensorRT uses the scales instead of ignoring the file.
    """
    if kind not in CALIBRATOR_CLASSES:
        raise UsageError(f"unknown TensorRT calibrator {kind!r}; choose one of: {', '.join(CALIBRATOR_CLASSES)}")
    batches = np.ascontiguousarray(batches, dtype=np.float32)
    if batches.ndim != 4:
        raise UsageError(f"calibration batches must be [N, 3, H, W], got shape {batches.shape}")
    if batch_size < 1 or len(batches) < batch_size:
        raise UsageError(f"calibration needs at least one full batch of {batch_size} images, got {len(batches)}")
    trt = require("tensorrt", "for TensorRT INT8 calibration")
    require("pycuda", "for TensorRT INT8 calibration")
    base = getattr(trt, CALIBRATOR_CLASSES[kind], None)
    if base is None:
        raise TritonForgeError(
            f"TensorRT {getattr(trt, '__version__', '?')} has no {CALIBRATOR_CLASSES[kind]} (implicit INT8 "
            "calibration was removed in TensorRT 11): quantize with `tritonforge quantize` and build the "
            "Q/DQ ONNX instead")
    import pycuda.autoinit  # noqa: F401 - creates the CUDA context
    import pycuda.driver as cuda

    from generator.export.tensorrt.calib_cache import trt_cache_header

    header = trt_cache_header(kind, getattr(trt, "__version__", "8.6.0"))
    calibrator_class = type(f"TritonForge{base.__name__[1:]}", (base,), {
        "__init__": _init, "get_batch_size": _get_batch_size, "get_batch": _get_batch,
        "read_calibration_cache": _read_calibration_cache, "write_calibration_cache": _write_calibration_cache,
    })
    return calibrator_class(base, cuda, batches, batch_size, Path(cache), header if retag_cache else None)


def _init(self, base, cuda, batches: np.ndarray, batch_size: int, cache: Path, header: Optional[str]) -> None:
    base.__init__(self)
    self.cuda = cuda
    self.batches = batches
    self.batch_size = batch_size
    self.cache = cache
    self.header = header
    self.index = 0
    self.device = cuda.mem_alloc(batches[:batch_size].nbytes)


def _get_batch_size(self) -> int:
    return self.batch_size


def _get_batch(self, names):
    """The next full batch on the device, or None when done (a partial last batch is dropped:
    the calibration profile has a fixed shape)."""
    if self.index + self.batch_size > len(self.batches):
        return None
    batch = self.batches[self.index:self.index + self.batch_size]
    self.cuda.memcpy_htod(self.device, np.ascontiguousarray(batch))
    self.index += self.batch_size
    return [int(self.device)]


def _read_calibration_cache(self):
    if not self.cache.is_file():
        return None
    data = self.cache.read_bytes()
    if self.header:
        first, sep, rest = data.partition(b"\n")
        if first.startswith(b"TRT-") and first.decode() != self.header:
            data = self.header.encode() + sep + rest
    return data


def _write_calibration_cache(self, cache) -> None:
    write_bytes(self.cache, bytes(cache))
