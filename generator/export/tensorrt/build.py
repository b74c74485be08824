"""``tritonforge build``: a TensorRT plan from a detector ONNX, with the TensorRT Python API.

The orchestration: check the options and the ONNX, decide the strategy for the installed
TensorRT (``strategy``), calibrate if asked (``calibrators``), build (``engine``), then
write the plan, its ``build.json`` (``record``) and the caches together, atomically.
TensorRT (``tritonforge[gpu]``) is imported only here, when a build starts.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from generator._lazy import require
from generator.atomic import atomic_paths
from generator.errors import UsageError
from generator.export.tensorrt.device import cuda_device
from generator.export.tensorrt.engine import EngineResult, build_engine
from generator.export.tensorrt.network import profile_shapes
from generator.export.tensorrt.onnx_facts import check_batch_range, onnx_facts
from generator.export.tensorrt.options import BuildOptions, calibrator_of_cache
from generator.export.tensorrt.record import (
    CALIBRATION_CACHE_NAME, build_info_path, canonical_command, file_sha256, make_build_info,
)
from generator.export.tensorrt.strategy import BuildStrategy, plan_build
from generator.reproducer import format_command

WORK_CACHE = "calib.cache"  # the calibrators' cache inside the build's scratch folder


def build_plan(onnx: Path, out: Path, opts: BuildOptions, command: Optional[Sequence[str]] = None,
               echo: Callable[[str], None] = lambda _: None) -> dict:
    """Build a TensorRT plan from ``onnx`` into ``out``; returns the build record, also
    written to ``build_info_path(out)``.

    ``command``: the command line to record (default: the equivalent ``tritonforge build``
    command). Atomic: on any error nothing new is left at ``out`` or beside it.
    """
    from generator.export.signature import read_signature

    started = time.perf_counter()
    opts.validate()
    onnx, out = Path(onnx), Path(out)
    sig = read_signature(onnx)
    facts = onnx_facts(onnx)
    _check_out(onnx, out)
    check_batch_range(facts.batch, opts, onnx.name)

    trt = require("tensorrt", "to build TensorRT plans")
    strategy = plan_build(trt.__version__, facts.has_qdq, opts, fp16_onnx=facts.fp16, onnx_name=onnx.name)
    gpu = cuda_device()
    for note in strategy.notes:
        echo(f"  {note}")
    profile = profile_shapes(opts, sig.height, sig.width)
    building = (f"building on {gpu['name']} (compute {gpu['compute_capability']}) with TensorRT {trt.__version__}; "
                "this takes a while")
    result, calibration, calib_bytes = _build(trt, onnx, sig, opts, strategy, profile, building, echo)

    info = make_build_info(
        onnx_path=onnx, onnx_sha256=file_sha256(onnx), plan_path=out, plan_bytes=result.plan_bytes, opts=opts,
        strategy=strategy, gpu=gpu, sig=sig, profile=profile, inputs=result.inputs, outputs=result.outputs,
        command=format_command(command) or canonical_command(onnx, out, opts),
        seconds=time.perf_counter() - started, calibration=calibration, notes=list(strategy.notes) + result.notes)
    write_files(_outputs(out, opts, result, info, calib_bytes))
    return info


def _check_out(onnx: Path, out: Path) -> None:
    if out.is_dir():
        raise UsageError(f"--out must be a file (e.g. model.plan), got the folder {out}")
    if not out.parent.is_dir():
        raise UsageError(f"output folder does not exist: {out.parent}")
    if out.resolve() == onnx.resolve():
        raise UsageError(f"--out must differ from the input model ({onnx})")


def _build(trt, onnx: Path, sig, opts: BuildOptions, strategy: BuildStrategy, profile, building: str,
           echo) -> Tuple[EngineResult, Optional[dict], Optional[bytes]]:
    """Build in a scratch folder (FP16 copy, calibration cache); returns the result, the
    calibration record and the cache the calibrators wrote (None when they did not)."""
    timing = Path(opts.timing_cache) if opts.timing_cache else None
    timing_in = timing.read_bytes() if timing is not None and timing.is_file() else b""
    with tempfile.TemporaryDirectory(prefix="tritonforge-build-") as work_dir:
        work = Path(work_dir)
        source = onnx
        if strategy.convert_fp16:
            from generator.compress.quantize import convert_fp16

            echo("converting the ONNX to FP16 (strongly typed build)")
            source = convert_fp16(onnx, work / "fp16.onnx")
        calibrator, calibration = _calibrator(strategy, opts, sig, work, echo)
        echo(building)
        result = build_engine(trt, source, sig, opts, strategy, profile, calibrator, timing_in)
        calib_bytes = None
        if calibration is not None and strategy.calibrator and (work / WORK_CACHE).is_file():
            calibration["cache_file"] = CALIBRATION_CACHE_NAME
            calib_bytes = (work / WORK_CACHE).read_bytes()
    return result, calibration, calib_bytes


def _calibrator(strategy: BuildStrategy, opts: BuildOptions, sig, work: Path, echo):
    """The legacy INT8 calibrator for implicit INT8 (None otherwise) and its record."""
    if strategy.calibrator:
        return _calibrate_on_images(strategy.calibrator, opts, sig, work, echo)
    if strategy.calib_cache:
        return _scales_from_cache(strategy.calib_cache, sig, work, echo)
    return None, None


def _calibrate_on_images(kind: str, opts: BuildOptions, sig, work: Path, echo):
    from generator.compress.calibration import calibration_images
    from generator.export.tensorrt.calibrators import make_calibrator

    images = calibration_images(Path(opts.data), sig.height, sig.width, opts.calibration_images)
    batch = min(opts.opt_batch, len(images))
    echo(f"calibrating ({kind}) on {len(images)} images from {opts.data}, batch {batch}")
    calib = make_calibrator(kind, images, work / WORK_CACHE, batch_size=batch)
    return calib, {"calibrator": kind, "images": int(len(images)), "batch": batch, "data": str(opts.data)}


def _scales_from_cache(cache_file: Path, sig, work: Path, echo):
    from generator.export.tensorrt.calibrators import make_calibrator

    kind = calibrator_of_cache(cache_file)
    cache = work / WORK_CACHE  # a copy: TensorRT may rewrite it, the user's file stays as is
    shutil.copyfile(cache_file, cache)
    placeholder = np.zeros((1, 3, sig.height, sig.width), np.float32)
    calib = make_calibrator(kind, placeholder, cache, batch_size=1)
    calib.index = len(placeholder)  # no batches: if TensorRT rejects the cache it fails instead of calibrating on zeros
    echo(f"INT8 scales from {cache_file} ({kind})")
    return calib, {"calibrator": kind, "cache": str(cache_file), "cache_sha256": file_sha256(cache_file), "batch": 1}


def _outputs(out: Path, opts: BuildOptions, result: EngineResult, info: dict,
             calib_bytes: Optional[bytes]) -> Dict[Path, bytes]:
    # the plan is the raw serialized engine, no header: Triton's tensorrt_plan refuses plans with one
    files = {out: result.plan_bytes, build_info_path(out): (json.dumps(info, indent=2) + "\n").encode()}
    if calib_bytes is not None:
        files[out.with_name(CALIBRATION_CACHE_NAME)] = calib_bytes  # reuse with --calib-cache
    if opts.timing_cache and result.timing_cache:
        files[Path(opts.timing_cache)] = result.timing_cache
    return files


def write_files(files: Mapping[Path, bytes]) -> None:
    """Write all ``files`` or none: each to a temporary sibling, then all renamed together."""
    with atomic_paths(*files) as tmps:
        for tmp, data in zip(tmps, files.values()):
            tmp.write_bytes(data)
