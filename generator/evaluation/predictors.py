"""Ways to turn image files into detections. Offline predictors (PyTorch, ONNX Runtime)
use the serving code itself: ``runtime.imaging`` to letterbox, ``runtime.boxes`` to
decode and NMS; the endpoint goes through the client SDK. So the three compare exactly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Sequence, Tuple

import numpy as np

from generator._cpu import denormals_flushed
from generator._lazy import require
from generator.runtime import boxes as box_ops
from generator.runtime import imaging

# per image: boxes [n, 4] xyxy original pixels, scores [n], classes [n]
Detections = Tuple[np.ndarray, np.ndarray, np.ndarray]
DetectFn = Callable[[Sequence[Path]], List[Detections]]


@dataclass(frozen=True)
class Thresholds:
    """COCO's protocol by default: keep nearly everything and let AP integrate over scores."""

    score: float = 0.001
    iou: float = 0.7
    max_detections: int = 300


class TorchRunner:
    """PyTorch model in eval mode: ``[B, 3, H, W]`` float32 -> raw ``[B, 4+C, A]``."""

    def __init__(self, model):
        self.torch = require("torch", "to run a PyTorch detector")
        self.model = model.eval()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self.torch.no_grad(), denormals_flushed(self.torch):
            return self.model(self.torch.from_numpy(x)).numpy()


class OnnxRunner:
    """ONNX Runtime on the CPU: the same contract as ``TorchRunner``."""

    def __init__(self, path: Path, threads: int = 0):
        ort = require("onnxruntime", "to run an ONNX detector")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.dtype = np.float16 if "float16" in self.session.get_inputs()[0].type else np.float32

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: x.astype(self.dtype, copy=False)})[0].astype(np.float32)


def offline_detector(runner: Callable[[np.ndarray], np.ndarray], height: int, width: int,
                     thresholds: Thresholds = Thresholds()) -> DetectFn:
    """Image files -> detections, with the server's preprocessing and postprocessing code."""

    def detect(paths: Sequence[Path]) -> List[Detections]:
        pre = [imaging.preprocess_bytes(Path(p).read_bytes(), height, width) for p in paths]
        x = np.stack([p[0] for p in pre])
        t = np.stack([p[1] for p in pre])
        num, bxs, scores, classes = box_ops.postprocess(
            runner(x), t, thresholds.score, thresholds.iou, thresholds.max_detections)
        return [(bxs[i, :n], scores[i, :n], classes[i, :n]) for i, n in enumerate(num)]

    return detect


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
