"""What the user asks of ``tritonforge generate``: the options every target shares.

A target whose detector needs more (the TensorRT targets: plan, precision, ...) subclasses
:class:`RepositoryOptions` in its own module; this base knows none of them. Each check
names the CLI flag, so a message points at what to change.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar, Dict, List, Optional, Sequence, Tuple

from generator.errors import UsageError
from generator.repository.names import check_model_name
from generator.runtime.image_header import DEFAULT_MAX_PIXELS

DEFAULT_MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS  # the preprocess stages' own default

Check = Tuple[bool, str]  # (condition that must hold, message when it does not)


def flag(field_name: str) -> str:
    """The CLI flag of an option field: ``max_detections`` -> ``--max-detections``."""
    return FLAGS.get(field_name, "--" + field_name.replace("_", "-"))


# fields whose flag is not the field name spelled with dashes
FLAGS = {"max_batch_size": "--max-batch", "detector_instances": "--instances", "workspace_mib": "--workspace"}


def raise_failed(checks: Sequence[Check]) -> None:
    """Raise the message of the first check that fails."""
    for ok, message in checks:
        if not ok:
            raise UsageError(message)


def is_file(path: Optional[Path]) -> bool:
    return path is None or Path(path).is_file()


@dataclass
class RepositoryOptions:
    """Options of every target; ``validate`` checks each with a clear message."""

    name: str = "detector"
    max_batch_size: int = 8
    detector_instances: int = 1
    preprocess_instances: int = 2
    queue_delay_us: int = 2000
    dynamic_batching: bool = True
    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 100
    labels: Optional[List[str]] = None
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # larger images are refused from their header, before decoding

    file_fields: ClassVar[Tuple[str, ...]] = ()  # paths on this machine: the manifest records their names only
    kind: ClassVar[str] = ""  # what a subclass's options are for, in messages ("TensorRT")

    def checks(self) -> List[Check]:
        """(condition, message) pairs; subclasses extend the list."""
        return [
            (self.max_batch_size >= 1, f"--max-batch must be >= 1, got {self.max_batch_size}"),
            (self.detector_instances >= 1, f"--instances must be >= 1, got {self.detector_instances}"),
            (self.preprocess_instances >= 1, f"--preprocess-instances must be >= 1, got {self.preprocess_instances}"),
            (self.queue_delay_us >= 0, f"--queue-delay-us must be >= 0, got {self.queue_delay_us}"),
            (0.0 <= self.score_threshold < 1.0, f"--score-threshold must be in [0, 1), got {self.score_threshold}"),
            (0.0 < self.iou_threshold <= 1.0, f"--iou-threshold must be in (0, 1], got {self.iou_threshold}"),
            (self.max_detections >= 1, f"--max-detections must be >= 1, got {self.max_detections}"),
            (self.max_image_pixels >= 1, f"--max-image-pixels must be >= 1, got {self.max_image_pixels}"),
        ]

    def validate(self) -> "RepositoryOptions":
        """Raise UsageError naming the first bad flag; return ``self``."""
        check_model_name(self.name, "--name")
        raise_failed(self.checks())
        for label in self.labels or ():
            # one name a line in labels.txt: a line break inside a name would shift every class after it
            if not isinstance(label, str) or not label.strip() or any(ord(c) < 32 or ord(c) == 127 for c in label):
                raise UsageError(f"--labels: class name {label!r} is empty or holds control characters")
        return self

    @classmethod
    def field_names(cls) -> Tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def values(self) -> Dict[str, object]:
        """Field name -> value (shallow: labels stay the same list)."""
        return {name: getattr(self, name) for name in self.field_names()}

    def describe(self) -> dict:
        """JSON-ready options for the manifest; files by name only (no machine paths)."""
        out = self.values()
        for key in self.file_fields:
            out[key] = Path(out[key]).name if out[key] is not None else None
        return out


# --runtime values of the CPU targets (embedded, cpu); "auto" measures them on this host
RUNTIMES = ("onnxruntime", "openvino", "openvino-bf16", "torchscript")
RUNTIME_CHOICES = RUNTIMES + ("auto",)


HANDOFFS = ("uint8", "float")


@dataclass
class RuntimeOptions(RepositoryOptions):
    """Options of the CPU targets: which runtime runs the detector (``--runtime``), and the
    TorchScript file it may need (``--torchscript``; default: the ONNX's ``<stem>.torchscript``)."""

    runtime: Optional[str] = None  # None: onnxruntime, and the manifest says nothing about it
    torchscript: Optional[Path] = None
    # uint8: the preprocess hands the detector uint8 pixels and the detector graph does the
    # input format (a quarter of the bytes); float: the preprocess does it (the detector's own input)
    handoff: str = "uint8"

    file_fields: ClassVar[Tuple[str, ...]] = ("torchscript",)
    kind: ClassVar[str] = "CPU runtimes"

    def checks(self) -> List[Check]:
        return super().checks() + [
            (self.runtime in (None,) + RUNTIME_CHOICES,
             f"--runtime must be one of {', '.join(RUNTIME_CHOICES)}, got {self.runtime!r}"),
            (self.torchscript is None or self.runtime in ("torchscript", "auto"),
             "--torchscript is read only with --runtime torchscript or auto"),
            (self.handoff in HANDOFFS, f"--handoff must be one of {', '.join(HANDOFFS)}, got {self.handoff!r}"),
        ]

    def describe(self) -> dict:
        """As the base's; the runtime is recorded under the manifest's own ``runtime`` entry."""
        out = super().describe()
        for key in ("runtime", "torchscript", "handoff"):  # the manifest has its own entries for them
            out.pop(key)
        return out
