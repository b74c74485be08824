"""Validated options of the compression steps: prune, distill, quantize.

Defaults and choices are defined once, here; the CLI takes its defaults and choices
from these objects. Errors name the CLI flag, as users meet them there. No heavy
imports: ``tritonforge --help`` reads this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, NamedTuple, Optional, Tuple, Union

from generator.compress.prune.importance import check_importance
from generator.errors import UsageError

# CLI/API name -> onnxruntime.quantization.CalibrationMethod member
METHODS: Dict[str, str] = {"entropy": "Entropy", "minmax": "MinMax", "percentile": "Percentile"}
# CLI/API name -> onnxruntime.quantization.QuantType member
QUANT_TYPES: Dict[str, str] = {"uint8": "QUInt8", "int8": "QInt8"}
CALIBRATION_SAMPLES = 64  # images calibrated on by default
# --select of `tritonforge quantize`: what is quantized besides the head (kept float either way)
SELECTIONS: Dict[str, str] = {
    "measured": "time each group of quantizable nodes (op type; Conv per block) on --runtime and keep in float "
                "what does not get faster when quantized",
    "op-type": "quantize every op type ONNX Runtime can (only the head and decode tail stay float)",
}
DEFAULT_SELECTION = "measured"  # the CLI's default; the library's is "op-type" (no timing unless asked)
QUANTIZE_RUNTIMES = ("onnxruntime", "openvino")  # runtimes measured selection times on


class QuantTarget(NamedTuple):
    """What a deployment target needs from the Q/DQ model."""

    activation_type: str
    per_channel: bool
    help: str


# --target of `tritonforge quantize`
QUANTIZE_TARGETS: Dict[str, QuantTarget] = {
    "cpu": QuantTarget("uint8", False, "uint8 activations (fastest on x86 ONNX Runtime)"),
    # TensorRT's explicit quantization takes int8 with zero point 0, per-channel weights
    "tensorrt": QuantTarget("int8", True, "symmetric int8 activations"),
}
DEFAULT_QUANTIZE_TARGET = "cpu"


def _check_choice(value: str, table: Dict[str, str], what: str) -> None:
    if str(value).lower() not in table:
        raise UsageError(f"unknown {what} {value!r}; choose one of: {', '.join(table)}")


def check_prune_args(ratio: float, steps: int, round_to: Optional[int]) -> None:
    """The pruning schedule's checks, shared by ``PruneConfig`` and ``prune_model``."""
    if not isinstance(ratio, (int, float)) or not 0.0 < float(ratio) < 1.0:
        raise UsageError(f"--ratio is the fraction of channels to remove and must be in (0, 1), got {ratio}")
    if int(steps) < 1:
        raise UsageError(f"--steps must be >= 1, got {steps}")
    if round_to is not None and int(round_to) < 1:
        raise UsageError(f"--round-to must be >= 1, got {round_to}")


@dataclass
class PruneConfig:
    """``tritonforge prune``: prune ``checkpoint``, fine-tune on ``data``, write ``out``.

    Pruning runs in ``steps`` steps with ``step_iters`` recovery batches between them,
    then ``finetune_epochs`` epochs of training (0: none). ``teacher`` adds distillation
    while recovering and fine-tuning. ``evaluate``: mAP before and right after pruning too.
    ``grad_batches``: batches of gradients accumulated for gradient-based importances.
    """

    checkpoint: Path
    data: Path
    ratio: float
    importance: str = "magnitude"
    global_pruning: bool = False
    round_to: Optional[int] = None
    steps: int = 1
    finetune_epochs: int = 10
    out: Path = Path("pruned.pt")
    teacher: Optional[Path] = None
    imgsz: Optional[int] = None
    batch: int = 8
    lr: float = 0.002
    step_iters: int = 0
    grad_batches: int = 4
    evaluate: bool = True
    seed: int = 0
    workers: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        check_prune_args(self.ratio, self.steps, self.round_to)
        check_importance(self.importance)
        if self.finetune_epochs < 0 or self.step_iters < 0 or self.grad_batches < 1 or self.batch < 1:
            raise UsageError("--finetune-epochs and the recovery iterations must be >= 0, --batch >= 1")
        self.checkpoint, self.data, self.out = Path(self.checkpoint), Path(self.data), Path(self.out)
        self.teacher = Path(self.teacher) if self.teacher is not None else None


@dataclass(frozen=True)
class KDWeights:
    """Weights of the distillation terms; ``nms_kernel``: the feature-map NMS window."""

    obj: float = 1.0
    cls: float = 1.0
    box: float = 1.0
    feat: float = 1.0
    nms_kernel: int = 3


ONNX_SUFFIX = ".onnx"


@dataclass
class DistillConfig:
    """``tritonforge distill``: train ``student`` (family name or checkpoint) on ``data``
    with knowledge distillation from ``teacher``: a checkpoint, or a detector ONNX in any
    supported output layout (run by ONNX Runtime). ``imgsz`` defaults to the teacher's; for
    an ONNX teacher it may be ``(height, width)`` and only fixes a dynamic input size, and
    ``layout`` / ``scores`` say what its outputs do not. ``unlabelled``: extra images seen
    with teacher targets only."""

    teacher: Path
    student: str
    data: str
    out: Path
    epochs: int = 30
    imgsz: Optional[Union[int, Tuple[int, int]]] = None
    batch: int = 8
    lr: float = 0.01
    weights: KDWeights = KDWeights()
    unlabelled: Optional[Path] = None
    seed: int = 0
    layout: Optional[str] = None
    scores: Optional[str] = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch < 1:
            raise UsageError("--epochs and --batch must be >= 1")
        self.teacher, self.out = Path(self.teacher), Path(self.out)
        if self.imgsz is None:
            return
        sizes = (self.imgsz, self.imgsz) if isinstance(self.imgsz, int) else tuple(int(v) for v in self.imgsz)
        if not self.onnx_teacher and any(v % 32 for v in sizes):
            raise UsageError(f"--imgsz must be a multiple of 32, got {self.imgsz}")
        self.imgsz = sizes[0] if sizes[0] == sizes[1] else sizes

    @property
    def onnx_teacher(self) -> bool:
        return self.teacher.suffix.lower() == ONNX_SUFFIX

    def read_options(self) -> dict:
        """``read_signature`` keywords for an ONNX teacher (only what was given)."""
        size = (self.imgsz, self.imgsz) if isinstance(self.imgsz, int) else self.imgsz
        given = {"layout": self.layout, "imgsz": size, "scores": self.scores}
        return {key: value for key, value in given.items() if value is not None}


@dataclass
class QuantizeConfig:
    """``tritonforge quantize`` (INT8 Q/DQ).

    ``method``: a calibration method of ``METHODS``. ``activation_type``/``weight_type``:
    uint8 or int8; int8 activations are quantized symmetrically (zero point 0), which
    TensorRT requires. ``exclude``: node names or globs kept float besides the head
    (``keep_head_float``). ``op_types``: the op types to quantize (default: all ONNX
    Runtime knows). ``trt_cache``: also write a TensorRT calibration cache, with
    ``trt_cache_header`` (default: the one matching ``method``).

    ``select``: a name of ``SELECTIONS``; ``measured`` times groups of nodes on
    ``runtime`` with ``threads`` at batch ``measure_batch`` for about ``measure_seconds``
    and keeps float what is not faster by more than ``margin`` when quantized.
    ``max_drop``: accuracy control, the absolute mAP50-95 drop allowed on the validation
    split (None: off); the most sensitive layers return to float until it holds.
    """

    method: str = "entropy"
    per_channel: bool = False
    exclude: Tuple[str, ...] = ()
    keep_head_float: bool = True
    activation_type: str = "uint8"
    weight_type: str = "int8"
    trt_cache: Optional[Path] = None
    op_types: Optional[Tuple[str, ...]] = None
    trt_cache_header: Optional[str] = None
    select: str = "op-type"
    runtime: str = "onnxruntime"
    max_drop: Optional[float] = None
    threads: int = 0
    measure_batch: int = 8
    measure_seconds: float = 30.0
    margin: float = 0.02

    def __post_init__(self) -> None:
        _check_choice(self.select, SELECTIONS, "--select")
        if self.runtime not in QUANTIZE_RUNTIMES:
            raise UsageError(f"unknown --runtime {self.runtime!r}; choose one of: {', '.join(QUANTIZE_RUNTIMES)}")
        if self.max_drop is not None and not 0.0 <= float(self.max_drop) < 1.0:
            raise UsageError(f"--max-drop is an absolute mAP50-95 drop in [0, 1), got {self.max_drop}")
        if int(self.threads) < 0 or int(self.measure_batch) < 1 or float(self.measure_seconds) <= 0:
            raise UsageError("--threads must be >= 0, the measurement batch >= 1 and its seconds > 0")
        if not 0.0 <= float(self.margin) < 1.0:
            raise UsageError(f"the timing margin must be in [0, 1), got {self.margin}")
        _check_choice(self.method, METHODS, "calibration method")
        _check_choice(self.activation_type, QUANT_TYPES, "activation type")
        _check_choice(self.weight_type, QUANT_TYPES, "weight type")
        self.exclude = tuple(self.exclude)
        self.op_types = tuple(self.op_types) if self.op_types else None
        self.trt_cache = Path(self.trt_cache) if self.trt_cache is not None else None

    @classmethod
    def for_target(cls, target: str = DEFAULT_QUANTIZE_TARGET, per_channel: bool = False,
                   **options) -> "QuantizeConfig":
        """Options for a deployment ``target`` of ``QUANTIZE_TARGETS`` (its activation type;
        per-channel weights where it needs them or ``per_channel`` asks)."""
        if target not in QUANTIZE_TARGETS:
            raise UsageError(f"unknown --target {target!r}; choose one of: {', '.join(QUANTIZE_TARGETS)}")
        spec = QUANTIZE_TARGETS[target]
        return cls(activation_type=spec.activation_type, per_channel=per_channel or spec.per_channel, **options)

    def options(self, calibration_images: int) -> dict:
        """The options as recorded in the model's metadata and the reproducer."""
        return {"method": self.method, "per_channel": self.per_channel, "activation_type": self.activation_type,
                "weight_type": self.weight_type, "keep_head_float": self.keep_head_float,
                "exclude": list(self.exclude), "op_types": list(self.op_types) if self.op_types else None,
                "calibration_images": int(calibration_images), "select": self.select,
                "runtime": self.runtime if self.select == "measured" else None, "max_drop": self.max_drop}


def quantize_target_help() -> str:
    """``cpu: ...; tensorrt: ...`` for the CLI's --target help."""
    return "; ".join(f"{name}: {spec.help}" for name, spec in QUANTIZE_TARGETS.items()) + "."


def selection_help() -> str:
    """``measured: ...; op-type: ...`` for the CLI's --select help."""
    return "; ".join(f"{name}: {text}" for name, text in SELECTIONS.items()) + "."


__all__ = ["CALIBRATION_SAMPLES", "DEFAULT_QUANTIZE_TARGET", "DEFAULT_SELECTION", "QUANTIZE_RUNTIMES", "SELECTIONS",
           "selection_help", "DistillConfig", "KDWeights", "METHODS",
           "PruneConfig", "QUANTIZE_TARGETS", "QUANT_TYPES", "QuantTarget", "QuantizeConfig", "check_prune_args",
           "quantize_target_help"]
