"""``tritonforge eval``: pick the detector (checkpoint, ONNX or endpoint) and score it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Optional, Sequence, Tuple

from generator.errors import ServerError, UsageError
from generator.evaluation.coco import EvalResult, evaluate
from generator.evaluation.predictors import (Thresholds, decode_options, endpoint_detector, offline_detector,
                                             open_onnx)

if TYPE_CHECKING:
    from generator.runners import Runner


class Offline(NamedTuple):
    """A detector opened for offline eval: its runner, input size, class names, and the
    ``offline_detector`` keywords (layout, input format) its outputs need."""

    runner: "Runner"
    size: Tuple[int, int]
    names: Sequence[str]
    decode: dict


def run_eval(data: Path, split: str = "val", checkpoint: Optional[Path] = None, onnx: Optional[Path] = None,
             url: Optional[str] = None, protocol: str = "grpc", ensemble: str = "detector_ensemble",
             thresholds: Thresholds = Thresholds(), progress: bool = True,
             read_options: Optional[dict] = None) -> EvalResult:
    """Exactly one of ``checkpoint``, ``onnx``, ``url``. ``read_options``: keywords of
    ``read_signature`` for ``onnx`` (``layout``, ``imgsz``, ``scores``; default: detected)."""
    from generator.data.dataset import load_dataset

    given = [x for x in (checkpoint, onnx, url) if x]
    if len(given) != 1:
        raise UsageError("give exactly one of --model CKPT, --onnx M, --url HOST:PORT")
    if read_options and not onnx:
        raise UsageError(f"--{next(iter(read_options))} applies to --onnx only")
    dataset = load_dataset(Path(data), split)
    if url:
        return _eval_endpoint(dataset, url, protocol, ensemble, progress)
    model = _open_offline(checkpoint, onnx, read_options or {}, dataset.names)
    _check_classes(model.names, dataset.names, checkpoint or onnx)
    detect = offline_detector(model.runner, *model.size, thresholds, **model.decode)
    return evaluate(dataset, detect, progress=progress)


def _open_offline(checkpoint: Optional[Path], onnx: Optional[Path], read_options: dict, names) -> Offline:
    """A checkpoint on PyTorch, an ONNX file (any output layout) on ONNX Runtime; the
    dataset's class ``names`` name an ONNX's classes where its outputs and metadata do not."""
    from generator.runners import open_runner

    if checkpoint:
        from generator.models.checkpoint import load_checkpoint

        det = load_checkpoint(Path(checkpoint))
        return Offline(open_runner("torch", det.model), (det.imgsz, det.imgsz), det.names, {})
    from generator.evaluation.ort_only import EVAL_HINT, read_for_dataset, refuse_trt_plugin

    sig = read_for_dataset(Path(onnx), names, read_options)
    refuse_trt_plugin(Path(onnx), sig, "to evaluate it offline", EVAL_HINT)
    return Offline(open_onnx(Path(onnx), sig), (sig.height, sig.width), sig.names, decode_options(sig))


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
