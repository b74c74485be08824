"""``tritonforge eval``: pick the detector (checkpoint, ONNX or endpoint) and score it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from generator.errors import ServerError, UsageError
from generator.evaluation.coco import EvalResult, evaluate
from generator.evaluation.predictors import (
    OnnxRunner, Thresholds, TorchRunner, endpoint_detector, offline_detector,
)


def run_eval(data: Path, split: str = "val", checkpoint: Optional[Path] = None, onnx: Optional[Path] = None,
             url: Optional[str] = None, protocol: str = "grpc", ensemble: str = "detector_ensemble",
             thresholds: Thresholds = Thresholds(), progress: bool = True) -> EvalResult:
    """Exactly one of ``checkpoint``, ``onnx``, ``url``."""
    from generator.data.dataset import load_dataset

    given = [x for x in (checkpoint, onnx, url) if x]
    if len(given) != 1:
        raise UsageError("give exactly one of --model CKPT, --onnx M, --url HOST:PORT")
    dataset = load_dataset(Path(data), split)
    if checkpoint:
        from generator.models.checkpoint import load_checkpoint

        det = load_checkpoint(Path(checkpoint))
        _check_classes(det.names, dataset.names, checkpoint)
        detect = offline_detector(TorchRunner(det.model), det.imgsz, det.imgsz, thresholds)
    elif onnx:
        from generator.export.signature import read_signature

        sig = read_signature(Path(onnx))
        _check_classes(sig.names, dataset.names, onnx)
        detect = offline_detector(OnnxRunner(Path(onnx)), sig.height, sig.width, thresholds)
    else:
        from client import DetectionClientError

        detect = endpoint_detector(url, protocol, ensemble)
        try:
            return evaluate(dataset, detect, progress=progress, desc="eval (served)")
        except DetectionClientError as exc:
            raise ServerError(str(exc)) from exc
    return evaluate(dataset, detect, progress=progress)


def _check_classes(model_names, data_names, source) -> None:
    if len(model_names) != len(data_names):
        raise UsageError(f"{source}: the model has {len(model_names)} classes but the dataset has {len(data_names)}")
