"""Ways to turn image files into detections. Offline predictors run any detector runtime
(``generator.runners.open_runner``: PyTorch, ONNX Runtime, TensorRT) through the serving code
itself: ``runtime.imaging`` to letterbox (in the model's input format), the model's output
layout and ``runtime.boxes`` to decode and NMS; the endpoint goes through the client SDK.
So they all compare exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from generator.evaluation.thresholds import Thresholds
from generator.runtime import boxes as box_ops
from generator.runtime import imaging
from generator.runtime.layouts import DEFAULT_LAYOUT, Layout, get_layout
from generator.runtime.runners.base import FixedBatch

# per image: boxes [n, 4] xyxy original pixels, scores [n], classes [n]
Detections = Tuple[np.ndarray, np.ndarray, np.ndarray]
DetectFn = Callable[[Sequence[Path]], List[Detections]]

__all__ = ["Detections", "DetectFn", "FixedBatch", "Thresholds", "decode_options", "endpoint_detector",
           "offline_detector", "open_onnx"]


def offline_detector(runner: Callable[[np.ndarray], Union[np.ndarray, Sequence[np.ndarray]]], height: int,
                     width: int, thresholds: Thresholds = Thresholds(), layout: Union[str, Layout] = DEFAULT_LAYOUT,
                     input_format: Optional[Any] = None) -> DetectFn:
    """Image files -> detections, with the server's preprocessing and postprocessing code.

    ``runner`` returns the detector's output, or all its outputs in graph order;
    ``layout`` (a name, or a configured layout such as ``signature.layout_of(sig)``) decodes
    them, as the served postprocess does; ``input_format`` (the signature's, None: RGB
    0..1) is applied by the server's preprocessing code.
    """
    # an unknown name fails here, before any image is read
    decoder = layout if isinstance(layout, Layout) else get_layout(layout, height=height, width=width)

    def detect(paths: Sequence[Path]) -> List[Detections]:
        pre = [imaging.preprocess_bytes(Path(p).read_bytes(), height, width, None, input_format) for p in paths]
        x = np.stack([p[0] for p in pre])
        t = np.stack([p[1] for p in pre])
        num, bxs, scores, classes = box_ops.postprocess(
            runner(x), t, thresholds.score, thresholds.iou, thresholds.max_detections, layout=decoder)
        return [(bxs[i, :n], scores[i, :n], classes[i, :n]) for i, n in enumerate(num)]

    return detect


def open_onnx(path: Path, sig, threads: int = 0):
    """An ONNX Runtime runner for the detector ``sig`` describes (``FixedBatch`` around it
    when the graph's batch axis is fixed)."""
    from generator.runners import open_runner

    runner = open_runner("onnxruntime", Path(path), threads=threads)
    return runner if sig.batch is None else FixedBatch(runner, sig.batch)


def decode_options(sig) -> Dict[str, Any]:
    """``offline_detector``'s ``layout`` and ``input_format`` for a detector ONNX's signature."""
    from generator.export.signature import layout_of

    return {"layout": layout_of(sig), "input_format": sig.input_format}


def endpoint_detector(url: str, protocol: str = "grpc", model: str = "detector_ensemble") -> DetectFn:
    """Image files -> detections from a served ensemble, through the SDK."""
    from client import DetectionClient

    client = DetectionClient(url, protocol=protocol, model=model)

    def detect(paths: Sequence[Path]) -> List[Detections]:
        results = []
        for dets in client.detect_batch(list(paths)):
            b = np.array([[d.x1, d.y1, d.x2, d.y2] for d in dets], np.float32).reshape(-1, 4)
            results.append((b, np.array([d.score for d in dets], np.float32),
                            np.array([d.class_id for d in dets], np.int64)))
        return results

    return detect
