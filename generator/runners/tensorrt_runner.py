"""A TensorRT plan on the GPU, for offline eval and bench (never shipped: Triton's own
TensorRT backend serves plans). tensorrt and pycuda are imported when a runner opens."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from generator._lazy import require
from generator.errors import TritonForgeError, UsageError
from generator.runtime.runners.base import Runner

_PURPOSE = "to run a TensorRT plan"


def tensorrt_unavailable() -> Optional[str]:
    """Why a TensorRT plan cannot run here (no tensorrt, no pycuda, no CUDA GPU), or None."""
    from generator.export.tensorrt.device import cuda_device

    try:
        for module in ("tensorrt", "pycuda.driver"):
            require(module, _PURPOSE)
        cuda_device()
    except TritonForgeError as exc:  # MissingDependencyError too
        return str(exc).split(" (")[0].split(":")[0]
    return None


class TensorRTRunner(Runner):
    """A TensorRT plan (TensorRT 10 API, pycuda buffers). ``run`` returns every output by
    name (plans built with ``--nms`` answer with EfficientNMS's four outputs, not the raw
    tensor); ``__call__`` is the :class:`Runner` contract, for plans without NMS.

    Batches outside the plan's profile are padded (below ``min_batch``) or split (above
    ``max_batch``) by ``__call__``; ``run`` takes only batches inside it. Host <-> device
    copies are inside the call, so its latency is comparable with the CPU runners'.
    """

    name = "tensorrt"

    def __init__(self, plan: Path):
        self.trt = trt = require("tensorrt", _PURPOSE)
        self.cuda = require("pycuda.driver", _PURPOSE)
        require("pycuda.autoinit", _PURPOSE)  # a CUDA context on device 0
        trt.init_libnvinfer_plugins(None, "")  # EfficientNMS_TRT for plans built with --nms
        self.path = Path(plan)
        self.engine = self._load(trt)
        self.context = self.engine.create_execution_context()
        self._read_tensors(trt)
        self.stream = self.cuda.Stream()
        self._device: Dict[str, Tuple[object, int]] = {}  # name -> (allocation, bytes), grown on demand

    def _load(self, trt):
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise TritonForgeError(f"{self.path}: TensorRT {trt.__version__} cannot load this plan (built with "
                                   "another TensorRT version or for another GPU? rebuild it with `tritonforge build`)")
        return engine

    def _read_tensors(self, trt) -> None:
        """Input and output names, dtypes, image size and the batch range of profile 0."""
        engine = self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise UsageError(f"{self.path}: expected one input tensor, the plan has {inputs}")
        self.input_name, self.output_names = inputs[0], [n for n in names if n != inputs[0]]
        self.nms = "num_detections" in self.output_names
        _, _, self.height, self.width = (int(d) for d in engine.get_tensor_shape(self.input_name))
        low, _, high = engine.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, self.max_batch = int(low[0]), int(high[0])
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self.input_dtype = self.dtypes[self.input_name]

    def _buffer(self, name: str, nbytes: int):
        buf = self._device.get(name)
        if buf is None or buf[1] < nbytes:
            buf = self._device[name] = (self.cuda.mem_alloc(max(1, nbytes)), max(1, nbytes))
        return buf[0]

    def run(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        """Every output for ``x`` (``[B, 3, H, W]``, ``min_batch <= B <= max_batch``)."""
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        if not self.context.set_input_shape(self.input_name, x.shape):
            raise UsageError(f"{self.path}: input shape {x.shape} is outside the plan's profile "
                             f"(batch {self.min_batch}..{self.max_batch}, {self.height}x{self.width})")
        host = {n: np.empty(tuple(self.context.get_tensor_shape(n)), self.dtypes[n]) for n in self.output_names}
        self.cuda.memcpy_htod(self._buffer(self.input_name, x.nbytes), x)
        self.context.set_tensor_address(self.input_name, int(self._buffer(self.input_name, x.nbytes)))
        for name, array in host.items():
            self.context.set_tensor_address(name, int(self._buffer(name, array.nbytes)))
        if not self.context.execute_async_v3(self.stream.handle):
            raise TritonForgeError(f"{self.path}: TensorRT execution failed")
        self.stream.synchronize()
        for name, array in host.items():
            self.cuda.memcpy_dtoh(array, self._buffer(name, array.nbytes))
        return host

    def __call__(self, x: np.ndarray) -> List[np.ndarray]:
        if self.nms:
            raise UsageError(f"{self.path}: the plan has EfficientNMS inside (built with --nms); its raw output "
                             "is gone, so it cannot be scored with the offline postprocess: rebuild without --nms")
        if len(x) > self.max_batch:
            parts = [self(x[i:i + self.max_batch]) for i in range(0, len(x), self.max_batch)]
            return [np.concatenate(chunks) for chunks in zip(*parts)]
        n = len(x)
        if n < self.min_batch:
            x = np.concatenate([x, np.zeros((self.min_batch - n, *x.shape[1:]), x.dtype)])
        outputs = self.run(x)
        return [outputs[name][:n].astype(np.float32, copy=False) for name in self.output_names]
