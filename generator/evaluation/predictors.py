"""Ways to turn image files into detections. Offline predictors (PyTorch, ONNX Runtime,
TensorRT) use the serving code itself: ``runtime.imaging`` to letterbox, ``runtime.boxes`` to
decode and NMS; the endpoint goes through the client SDK. So the three compare exactly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from generator._cpu import denormals_flushed
from generator._lazy import require
from generator.errors import TritonForgeError, UsageError
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


def tensorrt_unavailable() -> Optional[str]:
    """Why a TensorRT plan cannot run here (no tensorrt, no pycuda, no CUDA GPU), or None."""
    from generator.export.trt_build import cuda_device

    try:
        for module in ("tensorrt", "pycuda.driver"):
            require(module, "to run a TensorRT plan")
        cuda_device()
    except TritonForgeError as exc:  # MissingDependencyError too
        return str(exc).split(" (")[0].split(":")[0]
    return None


class TensorRTRunner:
    """A TensorRT plan on the GPU (TensorRT 10 API, pycuda buffers): the same contract as
    ``TorchRunner`` for a plan without NMS. ``run`` returns every output by name (plans
    built with ``--nms`` answer with EfficientNMS's four outputs, not the raw tensor).

    Batches outside the plan's profile are padded (below ``min_batch``) or split (above
    ``max_batch``) by ``__call__``; ``run`` takes only batches inside it. Host <-> device
    copies are inside the call, so its latency is comparable with the CPU runners'.
    """

    def __init__(self, plan: Path):
        self.trt = trt = require("tensorrt", "to run a TensorRT plan")
        self.cuda = require("pycuda.driver", "to run a TensorRT plan")
        require("pycuda.autoinit", "to run a TensorRT plan")  # a CUDA context on device 0
        trt.init_libnvinfer_plugins(None, "")  # EfficientNMS_TRT for plans built with --nms
        self.path = Path(plan)
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise TritonForgeError(f"{self.path}: TensorRT {trt.__version__} cannot load this plan (built with "
                                   "another TensorRT version or for another GPU? rebuild it with `tritonforge build`)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise UsageError(f"{self.path}: expected one input tensor, the plan has {inputs}")
        self.input, self.outputs = inputs[0], [n for n in names if n != inputs[0]]
        self.nms = "num_detections" in self.outputs
        _, _, self.height, self.width = (int(d) for d in self.engine.get_tensor_shape(self.input))
        low, _, high = self.engine.get_tensor_profile_shape(self.input, 0)
        self.min_batch, self.max_batch = int(low[0]), int(high[0])
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.stream = self.cuda.Stream()
        self._device: Dict[str, Tuple[object, int]] = {}  # name -> (allocation, bytes), grown on demand

    def _buffer(self, name: str, nbytes: int):
        buf = self._device.get(name)
        if buf is None or buf[1] < nbytes:
            buf = self._device[name] = (self.cuda.mem_alloc(max(1, nbytes)), max(1, nbytes))
        return buf[0]

    def run(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        """Every output for ``x`` (``[B, 3, H, W]``, ``min_batch <= B <= max_batch``)."""
        x = np.ascontiguousarray(x, dtype=self.dtypes[self.input])
        if not self.context.set_input_shape(self.input, x.shape):
            raise UsageError(f"{self.path}: input shape {x.shape} is outside the plan's profile "
                             f"(batch {self.min_batch}..{self.max_batch}, {self.height}x{self.width})")
        host = {n: np.empty(tuple(self.context.get_tensor_shape(n)), self.dtypes[n]) for n in self.outputs}
        self.cuda.memcpy_htod(self._buffer(self.input, x.nbytes), x)
        self.context.set_tensor_address(self.input, int(self._buffer(self.input, x.nbytes)))
        for name, array in host.items():
            self.context.set_tensor_address(name, int(self._buffer(name, array.nbytes)))
        if not self.context.execute_async_v3(self.stream.handle):
            raise TritonForgeError(f"{self.path}: TensorRT execution failed")
        self.stream.synchronize()
        for name, array in host.items():
            self.cuda.memcpy_dtoh(array, self._buffer(name, array.nbytes))
        return host

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.nms:
            raise UsageError(f"{self.path}: the plan has EfficientNMS inside (built with --nms); its raw output "
                             "is gone, so it cannot be scored with the offline postprocess: rebuild without --nms")
        if len(x) > self.max_batch:
            return np.concatenate([self(x[i:i + self.max_batch]) for i in range(0, len(x), self.max_batch)])
        n = len(x)
        if n < self.min_batch:
            x = np.concatenate([x, np.zeros((self.min_batch - n, *x.shape[1:]), x.dtype)])
        raw = self.run(x)[self.outputs[0]]
        return raw[:n].astype(np.float32, copy=False)


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
