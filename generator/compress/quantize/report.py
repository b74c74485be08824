"""What a quantization did: options, what stayed float and why, timings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from generator.compress.quantize.graph import HEAD_REASONS, ExcludedNode

SHOWN_PER_REASON = 8  # node names listed per reason in the summary


@dataclass
class QuantReport:
    """What ``quantize_onnx`` did: options, what stayed float and why, timings."""

    path: Path
    source: Path
    method: str
    per_channel: bool
    activation_type: str
    weight_type: str
    calibration_images: int
    seconds: float
    calibration_seconds: float
    excluded: List[ExcludedNode] = field(default_factory=list)
    quantized_nodes: List[str] = field(default_factory=list)  # compute nodes with int8 weights
    qdq_nodes: int = 0  # QuantizeLinear + DequantizeLinear in the output model
    preprocess: str = ""
    trt_cache: Optional[Path] = None
    trt_cache_tensors: int = 0
    warnings: List[str] = field(default_factory=list)
    onnxruntime: str = ""
    selection: Any = None  # select.Selection: measured selection's timings and decisions
    accuracy: Any = None  # accuracy.AccuracyResult: accuracy control's steps and choice

    @property
    def head_convs(self) -> List[str]:
        return [e.name for e in self.excluded if e.reason in HEAD_REASONS]

    def summary(self) -> str:
        """Human-readable lines: what was written, what stayed float, warnings."""
        lines = [
            f"wrote {self.path}: INT8 Q/DQ ({self.method} calibration on {self.calibration_images} images, "
            f"activations {self.activation_type}, weights {self.weight_type}"
            f"{' per channel' if self.per_channel else ' per tensor'}) in {self.seconds:.1f} s "
            f"(calibration {self.calibration_seconds:.1f} s)",
            f"  {len(self.quantized_nodes)} nodes with int8 weights, {self.qdq_nodes} Q/DQ nodes",
        ]
        lines += _excluded_lines(self.excluded)
        if self.selection is not None:
            lines += self.selection.table()
        if self.accuracy is not None:
            lines += self.accuracy.lines()
        if self.trt_cache:
            lines.append(f"  TensorRT calibration cache: {self.trt_cache} ({self.trt_cache_tensors} tensors)")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "path": str(self.path), "source": str(self.source), "method": self.method,
            "per_channel": self.per_channel, "activation_type": self.activation_type,
            "weight_type": self.weight_type, "calibration_images": self.calibration_images,
            "seconds": round(self.seconds, 3), "calibration_seconds": round(self.calibration_seconds, 3),
            "excluded": [{"name": e.name, "op_type": e.op_type, "reason": e.reason} for e in self.excluded],
            "quantized_nodes": list(self.quantized_nodes), "qdq_nodes": self.qdq_nodes,
            "preprocess": self.preprocess,
            "trt_cache": str(self.trt_cache) if self.trt_cache else None,
            "trt_cache_tensors": self.trt_cache_tensors, "warnings": list(self.warnings),
            "onnxruntime": self.onnxruntime,
            "selection": self.selection.to_json() if self.selection is not None else {"mode": "op-type"},
            "accuracy": self.accuracy.to_json() if self.accuracy is not None else None,
        }


def _excluded_lines(excluded: List[ExcludedNode]) -> List[str]:
    if not excluded:
        return []
    by_reason: Dict[str, List[ExcludedNode]] = {}
    for e in excluded:
        by_reason.setdefault(e.reason, []).append(e)
    lines = [f"  kept float ({len(excluded)} nodes):"]
    for reason, nodes in by_reason.items():
        more = len(nodes) - SHOWN_PER_REASON
        names = ", ".join(n.name for n in nodes[:SHOWN_PER_REASON]) + (f", ... (+{more})" if more > 0 else "")
        lines.append(f"    {len(nodes)} x {reason}: {names}")
    return lines
