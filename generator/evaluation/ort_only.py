"""Offline work on a detector ONNX (eval, bench, quantize, an ONNX teacher) runs it in ONNX
Runtime, which cannot run TensorRT-only nodes: such a graph is refused up front, by name."""

from __future__ import annotations

from pathlib import Path

from generator.errors import UsageError


def refuse_trt_plugin(path: Path, sig, purpose: str, hint: str) -> None:
    """UsageError when ``sig.has_trt_plugin`` (the graph holds EfficientNMS_TRT): ``purpose``
    says what needed ONNX Runtime ("to calibrate it"), ``hint`` what to do instead."""
    if getattr(sig, "has_trt_plugin", False):
        raise UsageError(f"{path}: contains TensorRT's EfficientNMS_TRT node, which only TensorRT runs; "
                         f"ONNX Runtime cannot run it {purpose}: {hint}")


# what to do instead, per use
EVAL_HINT = ("serve it on a TensorRT target (generate --target gpu or jetson) and evaluate the endpoint "
             "with `tritonforge eval --url`")
QUANTIZE_HINT = ("quantize the ONNX exported before the NMS node was added, or build an INT8 plan with "
                 "`tritonforge build --precision int8 --calibrator entropy2 --data ...`")
TEACHER_HINT = "use the teacher's ONNX exported before the NMS node was added (any other layout works)"


def read_for_dataset(path: Path, names, read_options: dict):
    """``read_signature(path, **read_options)``; where that fails for want of what the dataset
    knows (the class names of an ONNX whose outputs and metadata do not give them), again
    with the dataset's ``names`` as labels. The first error stands when both fail, so a
    class-count mismatch is reported as the model's, not as a ``--labels`` one."""
    from generator.export.signature import read_signature

    try:
        return read_signature(Path(path), **read_options)
    except UsageError as first:
        if names is None or "labels" in read_options:
            raise
        try:
            return read_signature(Path(path), labels=list(names), **read_options)
        except UsageError:
            raise first from None
