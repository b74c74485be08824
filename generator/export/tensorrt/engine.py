"""The TensorRT part of a build: parse, profile, builder flags, optional NMS, timing cache,
serialize. Every decision comes from the ``BuildStrategy``; this module only carries it out.
The ``tensorrt`` module is passed in (imported lazily by ``build``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

from generator.errors import TritonForgeError
from generator.export.tensorrt.network import io_entries, parse_onnx
from generator.export.tensorrt.nms import add_nms
from generator.export.tensorrt.options import BuildOptions
from generator.export.tensorrt.strategy import BuildStrategy, tensorrt_version


@dataclass
class EngineResult:
    """What a build produced: the plan (serialized engine bytes) and what to record about it."""

    plan_bytes: bytes
    timing_cache: bytes
    inputs: List[dict]
    outputs: List[dict]
    notes: List[str] = field(default_factory=list)


def build_engine(trt, onnx_path: Path, sig, opts: BuildOptions, strategy: BuildStrategy,
                 profile: Dict[str, List[int]], calibrator, timing_in: bytes) -> EngineResult:
    """Build the plan of ``onnx_path`` as ``strategy`` says; ``timing_in``: a previous timing
    cache (may be empty or from another GPU)."""
    major, _ = tensorrt_version(trt.__version__)
    logger = make_logger(trt)
    trt.init_libnvinfer_plugins(trt.Logger(trt.Logger.WARNING), "")  # registers EfficientNMS_TRT & co.
    builder = trt.Builder(logger)
    if builder is None:
        raise TritonForgeError("TensorRT could not create a builder (no CUDA device?): " + logger.last_errors())
    network, _parser = parse_onnx(trt, builder, logger, onnx_path, strategy, major)
    keep: list = []  # numpy buffers TensorRT reads at build time
    if opts.nms:
        add_nms(trt, network, sig, opts, keep)
    config = _builder_config(trt, builder, sig, opts, strategy, profile, calibrator)
    _cache, notes = _use_timing_cache(config, timing_in)  # kept alive: the config only points to it
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TritonForgeError(f"TensorRT failed to build {onnx_path.name}: {logger.last_errors() or 'no detail'}")
    inputs, outputs = io_entries(network)
    return EngineResult(bytes(serialized), bytes(config.get_timing_cache().serialize()), inputs, outputs, notes)


def _builder_config(trt, builder, sig, opts: BuildOptions, strategy: BuildStrategy, profile, calibrator):
    config = builder.create_builder_config()
    if opts.workspace:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace) << 20)
    for name in strategy.flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if strategy.device_type == "DLA":
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(strategy.dla_core)
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(sig.input_name, profile["min"], profile["opt"], profile["max"])
    config.add_optimization_profile(opt_profile)
    if calibrator is not None:
        shape = [calibrator.get_batch_size(), 3, sig.height, sig.width]
        calib_profile = builder.create_optimization_profile()
        calib_profile.set_shape(sig.input_name, shape, shape, shape)
        config.set_calibration_profile(calib_profile)
        config.int8_calibrator = calibrator
    return config


def _use_timing_cache(config, timing_in: bytes):
    """(cache, notes): start from ``timing_in`` where TensorRT accepts it, else from a fresh
    cache (noted)."""
    try:
        cache = config.create_timing_cache(timing_in)
    except Exception:  # noqa: BLE001 - a corrupt cache file only costs the reuse
        cache = None
    if cache is not None and config.set_timing_cache(cache, False):
        return cache, []
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, False)
    return cache, ["the timing cache was made for another GPU or TensorRT version: started a fresh one"]


def make_logger(trt):
    """A TensorRT logger that prints warnings and errors and remembers the errors."""

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: List[str] = []

        def log(self, severity, msg):
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                print(f"[TensorRT] {msg}", file=sys.stderr)
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(str(msg))

        def last_errors(self, n: int = 5) -> str:
            return "; ".join(self.errors[-n:])

    return Logger()
