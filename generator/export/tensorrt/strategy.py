"""The pure decision: how to build for one TensorRT version (network typing, builder
flags, FP16 conversion, calibration), or a clear error for what that version cannot do.

- TensorRT 8.6-10: FP16 through the weakly typed ``BuilderFlag.FP16``; implicit INT8 through
  the legacy calibrators (``calibrators``) or a calibration cache.
- TensorRT 11 removed those flags and the calibrators: FP16 is built strongly typed from an
  FP16 copy of the ONNX (``compress.quantize.convert_fp16``); INT8 needs a Q/DQ ONNX from
  ``tritonforge quantize``.
- A Q/DQ ONNX is explicit INT8 on any version: built strongly typed (TensorRT >= 9), scales
  from the graph.

Both builders follow it: ``tritonforge build`` (``build.build_plan``) and the trtexec
commands of a generated ``build_plans.sh`` (``trtexec``). Words: the *strategy* is this
decision, the *plan* is the engine bytes it produces.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from generator.errors import TritonForgeError, UsageError
from generator.export.tensorrt.options import BuildOptions

MIN_TENSORRT = (8, 6)
STRONG_TYPING_SINCE = 9  # NetworkDefinitionCreationFlag.STRONGLY_TYPED
WEAK_TYPING_REMOVED_IN = 11  # no BuilderFlag.FP16/INT8, no IInt8*Calibrator


@dataclass(frozen=True)
class BuildStrategy:
    """How to build for one TensorRT version; ``flags`` are ``trt.BuilderFlag`` member names."""

    tensorrt: str
    strongly_typed: bool
    flags: Tuple[str, ...] = ()
    convert_fp16: bool = False  # build from an FP16 copy of the ONNX (convert_fp16)
    calibrator: Optional[str] = None  # implicit INT8: calibrate with this legacy calibrator
    calib_cache: Optional[Path] = None  # implicit INT8: scales from this cache
    explicit_int8: bool = False  # Q/DQ ONNX
    device_type: str = "GPU"  # trt.DeviceType member name for config.default_device_type
    dla_core: Optional[int] = None
    notes: Tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items()}


@dataclass(frozen=True)
class TensorRTVersion:
    """What a TensorRT version can do."""

    text: str
    major: int
    minor: int

    @property
    def strong_typing(self) -> bool:
        return self.major >= STRONG_TYPING_SINCE

    @property
    def weak_typing(self) -> bool:
        return self.major < WEAK_TYPING_REMOVED_IN


def tensorrt_version(version: str) -> Tuple[int, int]:
    """(major, minor) of a TensorRT version string such as ``10.3.0.26``."""
    match = re.match(r"\s*(\d+)\.(\d+)", str(version))
    if not match:
        raise TritonForgeError(f"cannot read the TensorRT version {version!r}")
    return int(match.group(1)), int(match.group(2))


def plan_build(trt_version: str, has_qdq: bool, opts: BuildOptions, fp16_onnx: bool = False,
               onnx_name: str = "the ONNX") -> BuildStrategy:
    """Decide network typing, builder flags, FP16 conversion and calibration for ``opts``
    on TensorRT ``trt_version``; raise a clear error for what that version cannot do."""
    major, minor = tensorrt_version(trt_version)
    if (major, minor) < MIN_TENSORRT:
        raise TritonForgeError(f"TensorRT {trt_version} is too old; tritonforge build needs TensorRT >= "
                               f"{MIN_TENSORRT[0]}.{MIN_TENSORRT[1]}")
    version = TensorRTVersion(str(trt_version), major, minor)
    if has_qdq:
        strategy = _explicit_int8(version, opts, onnx_name)
    elif fp16_onnx:
        strategy = _fp16_onnx(version, opts, onnx_name)
    else:
        strategy = _FLOAT_ONNX[opts.precision](version, opts)
    return _on_device(strategy, opts)


def _explicit_int8(version: TensorRTVersion, opts: BuildOptions, onnx_name: str) -> BuildStrategy:
    if opts.precision != "int8":
        raise UsageError(f"{onnx_name} has Q/DQ nodes (explicit INT8): pass --precision int8 "
                         f"(got --precision {opts.precision}), or build the float ONNX")
    calibration_flag = _calibration_flag(opts)
    if calibration_flag:
        raise UsageError(f"{onnx_name} is already calibrated (Q/DQ nodes): {calibration_flag} applies "
                         "only to a float ONNX")
    if version.strong_typing:
        return BuildStrategy(version.text, True, explicit_int8=True, notes=(
            "explicit INT8: scales from the Q/DQ nodes, built strongly typed; layers without Q/DQ keep the "
            "ONNX's float types",))
    return BuildStrategy(version.text, False, ("INT8",), explicit_int8=True, notes=(
        "explicit INT8 from the Q/DQ nodes (weakly typed: TensorRT < 9 has no strong typing)",))


def _fp16_onnx(version: TensorRTVersion, opts: BuildOptions, onnx_name: str) -> BuildStrategy:
    if opts.precision != "fp16":
        raise UsageError(f"{onnx_name} is already FP16: pass --precision fp16 (got --precision "
                         f"{opts.precision}), or build the FP32 ONNX")
    if version.strong_typing:
        return BuildStrategy(version.text, True, notes=("FP16 from the ONNX's own types, built strongly typed",))
    return BuildStrategy(version.text, False, ("FP16",))


def _fp32(version: TensorRTVersion, opts: BuildOptions) -> BuildStrategy:
    return BuildStrategy(version.text, version.strong_typing, notes=("FP32 (TF32 where the GPU has it)",))


def _fp16(version: TensorRTVersion, opts: BuildOptions) -> BuildStrategy:
    if version.weak_typing:
        return BuildStrategy(version.text, False, ("FP16",), notes=(
            "FP16 through BuilderFlag.FP16 (TensorRT picks FP16 or FP32 per layer)",))
    return BuildStrategy(version.text, True, convert_fp16=True, notes=(
        f"TensorRT {version.major} has no FP16 builder flag: built strongly typed from an FP16 copy of the ONNX "
        "(box decode kept in FP32)",))


def _implicit_int8(version: TensorRTVersion, opts: BuildOptions) -> BuildStrategy:
    """INT8 on a float ONNX: the legacy calibrators, or the scales of a calibration cache."""
    if not version.weak_typing:
        raise TritonForgeError(
            f"TensorRT {version.text} removed implicit INT8 calibration (the IInt8*Calibrator classes and "
            "BuilderFlag.INT8): calibrate on the CPU with `tritonforge quantize --target tensorrt --data ...` "
            "and build the Q/DQ ONNX it writes with --precision int8")
    if not _calibration_flag(opts):
        raise UsageError(f"--precision int8 on a float ONNX needs --calibrator KIND --data D or --calib-cache F "
                         f"(TensorRT {version.major} implicit INT8), or a Q/DQ ONNX from `tritonforge quantize "
                         "--target tensorrt`")
    return BuildStrategy(
        version.text, False, ("INT8", "FP16"), calibrator=opts.calibrator,
        calib_cache=Path(opts.calib_cache) if opts.calib_cache else None,
        notes=("implicit INT8 (legacy calibrators, deprecated since TensorRT 10.1, removed in 11); "
               "layers without INT8 scales run in FP16",))


# precision -> strategy for a float (FP32) ONNX
_FLOAT_ONNX: Dict[str, Callable[[TensorRTVersion, BuildOptions], BuildStrategy]] = {
    "fp32": _fp32, "fp16": _fp16, "int8": _implicit_int8}


def _calibration_flag(opts: BuildOptions) -> str:
    return "--calibrator" if opts.calibrator else "--calib-cache" if opts.calib_cache else ""


def _on_device(strategy: BuildStrategy, opts: BuildOptions) -> BuildStrategy:
    """A DLA core: default device DLA, GPU fallback for what DLA cannot run."""
    if opts.dla_core is None:
        return strategy
    note = (f"DLA core {opts.dla_core}: DLA runs FP16/INT8 layers only; the rest (and EfficientNMS) falls back "
            "to the GPU (GPU_FALLBACK). Build on the Jetson that serves the plan")
    return replace(strategy, flags=strategy.flags + ("GPU_FALLBACK",), device_type="DLA", dla_core=opts.dla_core,
                   notes=strategy.notes + (note,))
