"""What ``tritonforge build`` is asked for, and the checks that name the offending flag.

The choices (precisions, legacy calibrators) and defaults are defined once here; the CLI
and the ``gpu``/``jetson`` targets import them. Pure Python: no TensorRT, no ONNX.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from generator.errors import UsageError

PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATORS = ("entropy", "entropy2", "minmax")  # TensorRT's legacy implicit-INT8 calibrators
CALIBRATION_IMAGES = 256  # images the implicit INT8 calibrators see (TensorRT suggests a few hundred)


@dataclass
class BuildOptions:
    """What ``tritonforge build`` was asked for; ``validate`` names the offending flag."""

    precision: str = "fp16"
    min_batch: int = 1
    opt_batch: int = 4
    max_batch: int = 8
    workspace: Optional[int] = None  # MiB; None: TensorRT's default (the device's memory)
    timing_cache: Optional[Path] = None
    dla_core: Optional[int] = None
    calibrator: Optional[str] = None  # entropy | entropy2 | minmax (implicit INT8, TensorRT <= 10)
    data: Optional[Path] = None  # calibration images: dataset spec or image folder
    calib_cache: Optional[Path] = None  # TensorRT calibration cache instead of calibrating
    calibration_images: int = CALIBRATION_IMAGES
    nms: bool = False
    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 100

    def validate(self, files: bool = True) -> "BuildOptions":
        """Check every option; ``files=False`` checks the combination only, not the paths
        (for a build that runs on another machine, e.g. ``build_plans.sh``)."""
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        self._validate_batches()
        self._validate_device()
        self._validate_calibration(files)
        if self.nms:
            self._validate_nms()
        if files and self.timing_cache is not None and not Path(self.timing_cache).parent.is_dir():
            raise UsageError(f"--timing-cache: folder does not exist: {Path(self.timing_cache).parent}")
        return self

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    def _validate_batches(self) -> None:
        for flag, value in (("--min-batch", self.min_batch), ("--opt-batch", self.opt_batch),
                            ("--max-batch", self.max_batch)):
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"{flag} must be an integer >= 1, got {value!r}")
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise UsageError(f"batch sizes must satisfy --min-batch <= --opt-batch <= --max-batch, got "
                             f"{self.min_batch} <= {self.opt_batch} <= {self.max_batch}")
        if self.workspace is not None and self.workspace < 1:
            raise UsageError(f"--workspace must be >= 1 (MiB), got {self.workspace}")

    def _validate_device(self) -> None:
        if self.dla_core is None:
            return
        if self.dla_core < 0:
            raise UsageError(f"--dla-core must be >= 0, got {self.dla_core}")
        if self.precision == "fp32":
            raise UsageError("--dla-core needs --precision fp16 or int8: DLA has no FP32 "
                             "(every layer would fall back to the GPU)")

    def _validate_calibration(self, files: bool) -> None:
        if self.calibrator is not None and self.calib_cache is not None:
            raise UsageError("--calibrator and --calib-cache are exclusive: calibrate on --data, "
                             "or reuse the scales of a cache")
        if self.calibrator is not None:
            self._validate_calibrator(files)
        elif self.data is not None:
            raise UsageError("--data is only used with --calibrator (implicit INT8 calibration)")
        if self.calib_cache is not None:
            if self.precision != "int8":
                raise UsageError(f"--calib-cache applies only to --precision int8 (got --precision {self.precision})")
            if files:
                calibrator_of_cache(self.calib_cache)  # exists and has a known header

    def _validate_calibrator(self, files: bool) -> None:
        if self.calibrator not in CALIBRATORS:
            raise UsageError(f"--calibrator must be one of {', '.join(CALIBRATORS)}, got {self.calibrator!r}")
        if self.precision != "int8":
            raise UsageError(f"--calibrator applies only to --precision int8 (got --precision {self.precision})")
        if self.data is None:
            raise UsageError("--calibrator needs --data: calibration images (dataset: data YAML, "
                             "dataset folder, COCO JSON; or a folder of images)")
        if files and not Path(self.data).exists():
            raise UsageError(f"--data not found: {self.data}")
        if self.calibration_images < 1:
            raise UsageError(f"calibration needs at least one image, asked for {self.calibration_images}")

    def _validate_nms(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise UsageError(f"--score-threshold must be in [0, 1], got {self.score_threshold}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise UsageError(f"--iou-threshold must be in (0, 1], got {self.iou_threshold}")
        if self.max_detections < 1:
            raise UsageError(f"--max-detections must be >= 1, got {self.max_detections}")


def calibrator_of_cache(path: Path) -> str:
    """The calibrator kind (entropy, entropy2, minmax) named by a TensorRT cache's header.

    The file is read by ``calib_cache.read_trt_cache``, the one parser of the format.
    """
    from generator.export.tensorrt.calib_cache import TRT_CACHE_ALGORITHMS, read_trt_cache

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--calib-cache not found: {path}")
    expected = f"expected TRT-<version>-<{'|'.join(TRT_CACHE_ALGORITHMS.values())}>"
    try:
        header, _ = read_trt_cache(path)
    except UsageError as exc:  # no TRT- header: the message names the file and its first line
        raise UsageError(f"--calib-cache {exc}; {expected}") from exc
    except (ValueError, struct.error) as exc:  # a binary file, or a line that is not ``name: hex``
        raise UsageError(f"--calib-cache {path}: not a TensorRT calibration cache ({exc}; {expected})") from exc
    code, _, algorithm = header[len("TRT-"):].partition("-")
    kinds = [kind for kind, name in TRT_CACHE_ALGORITHMS.items() if name == algorithm]
    if not code.isdigit() or not kinds:
        raise UsageError(f"--calib-cache {path}: not a TensorRT calibration cache (first line {header[:60]!r}; "
                         f"{expected})")
    return kinds[0]
