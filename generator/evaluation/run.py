"""``tritonforge eval``: pick the detector (checkpoint, ONNX or endpoint) and score it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

from generator.errors import ServerError, UsageError
from generator.evaluation.coco import EvalResult, evaluate
from generator.evaluation.predictors import Thresholds, endpoint_detector, offline_detector

if TYPE_CHECKING:
    from generator.runners import Runner


def run_eval(data: Path, split: str = "val", checkpoint: Optional[Path] = None, onnx: Optional[Path] = None,
             url: Optional[str] = None, protocol: str = "grpc", ensemble: str = "detector_ensemble",
             thresholds: Thresholds = Thresholds(), progress: bool = True) -> EvalResult:
    """Exactly one of ``checkpoint``, ``onnx``, ``url``."""
    from generator.data.dataset import load_dataset

    given = [x for x in (checkpoint, onnx, url) if x]
    if len(given) != 1:
        raise UsageError("give exactly one of --model CKPT, --onnx M, --url HOST:PORT")
    dataset = load_dataset(Path(data), split)
    if url:
        return _eval_endpoint(dataset, url, protocol, ensemble, progress)
    runner, (height, width), names = _open_offline(checkpoint, onnx)
    _check_classes(names, dataset.names, checkpoint or onnx)
    return evaluate(dataset, offline_detector(runner, height, width, thresholds), progress=progress)


def _open_offline(checkpoint: Optional[Path], onnx: Optional[Path]) -> Tuple[Runner, Tuple[int, int], Sequence[str]]:
    """(runner, input size, class names): a checkpoint on PyTorch, an ONNX file on ONNX Runtime."""
    from generator.runners import open_runner

    if checkpoint:
        from generator.models.checkpoint import load_checkpoint

        det = load_checkpoint(Path(checkpoint))
        return open_runner("torch", det.model), (det.imgsz, det.imgsz), det.names
    from generator.export.signature import read_signature

    sig = read_signature(Path(onnx))
    return open_runner("onnxruntime", Path(onnx)), (sig.height, sig.width), sig.names


def _eval_endpoint(dataset, url: str, protocol: str, ensemble: str, progress: bool) -> EvalResult:
    """A served ensemble, through the client SDK; its errors become ServerError."""
    from client import DetectionClientError

    detect = endpoint_detector(url, protocol, ensemble)
    try:
        return evaluate(dataset, detect, progress=progress, desc="eval (served)")
    except DetectionClientError as exc:
        raise ServerError(str(exc)) from exc


def _check_classes(model_names, data_names, source) -> None:
    if len(model_names) != len(data_names):
        raise UsageError(f"{source}: the model has {len(model_names)} classes but the dataset has {len(data_names)}")
