"""trtexec command lines from the build strategy, for ``build_plans.sh``.

A generated repository is built later, on the serving machine, whose TensorRT version is
unknown at generation. So the strategy is decided here for every band of versions that
``plan_build`` tells apart, and the script only picks the precomputed flags (or refusal)
by the major version it finds: one decision, two builders.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from generator.errors import TritonForgeError
from generator.export.tensorrt.options import PRECISIONS, BuildOptions
from generator.export.tensorrt.record import CALIBRATION_CACHE_NAME
from generator.export.tensorrt.strategy import (
    MIN_TENSORRT, STRONG_TYPING_SINCE, WEAK_TYPING_REMOVED_IN, BuildStrategy, plan_build, tensorrt_version,
)

# BuilderFlag member name -> trtexec flag
TRTEXEC_BUILDER_FLAGS = {"FP16": "--fp16", "INT8": "--int8", "GPU_FALLBACK": "--allowGPUFallback"}
DEVICES = ("gpu", "dla")


@dataclass(frozen=True)
class MajorBand:
    """TensorRT major versions that build alike: ``patterns`` for a bash ``case``, one
    ``version`` to decide for, ``label`` for messages."""

    patterns: Tuple[str, ...]
    version: str
    label: str


@dataclass(frozen=True)
class TrtexecCase:
    """One ``case`` branch of ``build_plans.sh``: trtexec flags, or why it cannot build."""

    precision: str
    device: str  # gpu | dla
    band: MajorBand
    flags: Tuple[str, ...] = ()  # may name the script's $calib_cache and $dla_core
    refusal: Optional[str] = None

    @property
    def pattern(self) -> str:
        """``precision/device/major`` alternatives, e.g. ``fp16/gpu/9|fp16/gpu/10``."""
        return "|".join(f"{self.precision}/{self.device}/{p}" for p in self.band.patterns)

    @property
    def shell_flags(self) -> str:
        """The flags as words of a bash array; double quotes so ``$calib_cache`` expands."""
        return " ".join(f'"{flag}"' for flag in self.flags)

    @property
    def shell_refusal(self) -> str:
        return shlex.quote(self.refusal or "")


def major_bands() -> List[MajorBand]:
    """Too old, weak typing only (8), both typings (9-10), strong typing only (11 and later)."""
    oldest, strong, weak_gone = MIN_TENSORRT[0], STRONG_TYPING_SINCE, WEAK_TYPING_REMOVED_IN
    return [
        MajorBand((f"[0-{oldest - 1}]",), f"{oldest - 1}.0", f"TensorRT < {oldest}"),
        MajorBand(tuple(str(m) for m in range(oldest, strong)), f"{oldest}.{MIN_TENSORRT[1]}",
                  f"TensorRT {oldest}"),
        MajorBand(tuple(str(m) for m in range(strong, weak_gone)), f"{weak_gone - 1}.0",
                  f"TensorRT {strong}-{weak_gone - 1}"),
        MajorBand(("*",), f"{weak_gone}.0", f"TensorRT >= {weak_gone}"),
    ]


def trtexec_flags(strategy: BuildStrategy, calib_cache: Optional[str] = None,
                  dla_core: Optional[str] = None) -> List[str]:
    """trtexec's flags for ``strategy`` (beside --onnx, shapes, workspace, caches).

    ``calib_cache``/``dla_core`` spell those values on the command line (default: the
    strategy's). Raises TritonForgeError for what only ``tritonforge build`` can do.
    """
    if strategy.convert_fp16:
        major = tensorrt_version(strategy.tensorrt)[0]
        raise TritonForgeError(f"this TensorRT has no --fp16 flag (TensorRT {major}): use 'tritonforge build', which "
                               "converts the ONNX to FP16 and builds it strongly typed (or PRECISION=fp32)")
    if strategy.calibrator:
        raise TritonForgeError("trtexec cannot calibrate on images: use `tritonforge build --calibrator`, or "
                               "a calibration cache")
    flags = ["--stronglyTyped"] if strategy.strongly_typed else []
    flags += [TRTEXEC_BUILDER_FLAGS[name] for name in strategy.flags if name != "GPU_FALLBACK"]
    if strategy.calib_cache is not None:
        flags.append(f"--calib={calib_cache or strategy.calib_cache}")
    if strategy.device_type == "DLA":
        flags.append(f"--useDLACore={dla_core or strategy.dla_core}")
    if "GPU_FALLBACK" in strategy.flags:
        flags.append(TRTEXEC_BUILDER_FLAGS["GPU_FALLBACK"])
    return flags


def trtexec_cases(has_qdq: bool, calib_cache: bool, precisions: Sequence[str] = PRECISIONS) -> List[TrtexecCase]:
    """Every (precision, device, TensorRT band) a generated ``build_plans.sh`` may meet, with
    the trtexec flags of its strategy or the refusal. ``calib_cache``: the repository ships
    ``calibration.cache`` (used for implicit INT8)."""
    if has_qdq:
        precisions = ("int8",)  # the script refuses other precisions of a Q/DQ ONNX before this point
    return [_case(has_qdq, calib_cache, precision, device, band)
            for precision in precisions for device in DEVICES for band in major_bands()]


def _case(has_qdq: bool, calib_cache: bool, precision: str, device: str, band: MajorBand) -> TrtexecCase:
    opts = BuildOptions(precision=precision, dla_core=0 if device == "dla" else None,
                        calib_cache=Path(CALIBRATION_CACHE_NAME) if calib_cache and precision == "int8" else None)
    try:
        strategy = plan_build(band.version, has_qdq, opts.validate(files=False), onnx_name="model.onnx")
        flags = trtexec_flags(strategy, calib_cache="$calib_cache", dla_core="$dla_core")
    except TritonForgeError as exc:  # UsageError included
        where = " on a DLA core" if device == "dla" else ""
        return TrtexecCase(precision, device, band, refusal=f"{precision}{where} with {band.label}: {exc}")
    return TrtexecCase(precision, device, band, tuple(flags))
