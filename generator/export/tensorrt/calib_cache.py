"""TensorRT's text calibration cache: one format, written by quantize, read by build.

A cache is a header line naming the TensorRT version and calibrator
(``TRT-8600-EntropyCalibration2``), then one ``tensor name: scale`` line per tensor,
the scale being amax/127 as float32 bits in big-endian hex. TensorRT's legacy (implicit
INT8) path reads it instead of calibrating; tritonforge writes it from the CPU
calibration's statistics so a JetPack build needs no calibration images.

Pure numpy: importable without TensorRT.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

import numpy as np

from generator.atomic import write_text
from generator.errors import UsageError

# the algorithm names TensorRT writes in a calibration cache header, by calibrator kind
TRT_CACHE_ALGORITHMS = {"entropy": "EntropyCalibration", "entropy2": "EntropyCalibration2",
                        "minmax": "MinMaxCalibration"}
DEFAULT_HEADER = "TRT-8600-EntropyCalibration2"


def trt_version_code(version: str) -> str:
    """TensorRT's version as its cache headers spell it: 8.6.1 -> 8601, 10.3.0 -> 100300."""
    major, minor, patch = [int(p) for p in (version.split(".") + ["0", "0"])[:3]]
    return str(major * (10000 if major >= 10 else 1000) + minor * 100 + patch)


def trt_cache_header(kind: str = "entropy2", trt_version: str = "8.6.0") -> str:
    """The header line of a cache for calibrator ``kind`` and TensorRT ``trt_version``."""
    if kind not in TRT_CACHE_ALGORITHMS:
        raise UsageError(f"unknown TensorRT calibrator {kind!r}; choose one of: {', '.join(TRT_CACHE_ALGORITHMS)}")
    return f"TRT-{trt_version_code(trt_version)}-{TRT_CACHE_ALGORITHMS[kind]}"


def trt_cache_header_for(method: str) -> str:
    """Header matching the legacy calibrator a cache from ``method`` pairs with."""
    return trt_cache_header("minmax" if method == "minmax" else "entropy2")


def tensor_amax(ranges, order: Optional[Iterable[str]] = None) -> Dict[str, float]:
    """max(|min|, |max|) per tensor from ORT's ``TensorsData`` (or a name -> (min, max) dict),
    in ``order`` (tensors not in ``order`` are dropped) or the ranges' own order."""
    items = ranges.items() if hasattr(ranges, "items") else ranges
    amax: Dict[str, float] = {}
    for name, value in items:
        lo, hi = value.range_value if hasattr(value, "range_value") else value[:2]
        amax[name] = float(max(abs(np.asarray(lo, np.float64).min()), abs(np.asarray(hi, np.float64).max())))
    if order is None:
        return amax
    return {name: amax[name] for name in order if name in amax}


def trt_scale_hex(amax: float) -> str:
    """The cache's encoding of a tensor's scale amax/127: float32 bits, big-endian hex."""
    return struct.pack(">f", np.float32(amax / 127.0)).hex()


def write_trt_cache(path: Path, ranges: Dict[str, float], header: str = DEFAULT_HEADER) -> int:
    """TensorRT's text calibration cache: ``header`` then ``name: 3c010a14`` per tensor.

    ``ranges`` maps ONNX tensor names (TensorRT's parser keeps them) to amax; tensors with
    a non-positive or non-finite amax (never non-zero during calibration) are left out,
    so TensorRT keeps them in higher precision. Written atomically. Returns the number of
    tensors written.
    """
    lines = [header]
    for name, amax in ranges.items():
        if "\n" in name or not name:
            raise ValueError(f"tensor name cannot go in a calibration cache: {name!r}")
        if np.isfinite(amax) and amax > 0:
            lines.append(f"{name}: {trt_scale_hex(float(amax))}")
    write_text(path, "\n".join(lines) + "\n")
    return len(lines) - 1


def read_trt_cache(path: Path) -> Tuple[str, Dict[str, float]]:
    """(header, tensor name -> scale) from a TensorRT text calibration cache."""
    text = Path(path).read_text().splitlines()
    if not text or not text[0].startswith("TRT-"):
        raise UsageError(f"{path}: not a TensorRT calibration cache (first line {text[:1]})")
    scales = {}
    for line in text[1:]:
        if line.strip():
            name, _, value = line.rpartition(": ")
            scales[name] = struct.unpack(">f", bytes.fromhex(value.strip()))[0]
    return text[0], scales
