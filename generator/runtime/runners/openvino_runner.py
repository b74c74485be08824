"""OpenVINO on the CPU, reading the same ONNX as ONNX Runtime (FP32, FP16 or Q/DQ INT8).

Two runtimes: ``openvino`` (the model's own precision; OpenVINO runs Q/DQ nodes as INT8
kernels) and ``openvino-bf16`` (float layers in bfloat16 through the inference-precision
hint, on CPUs with bfloat16 units only: AMX or AVX512-BF16). openvino is imported when a
runner is opened, not when this module is.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from .base import Runner

BF16 = "BF16"  # what OPTIMIZATION_CAPABILITIES lists on a CPU with bfloat16 units


def cpu_capabilities() -> List[str]:
    """OpenVINO's OPTIMIZATION_CAPABILITIES of the CPU (e.g. FP32, INT8, BF16)."""
    import openvino as ov

    return [str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def bf16_supported(capabilities: Optional[Sequence[str]] = None) -> bool:
    """Whether OpenVINO runs bfloat16 natively on this CPU (False when openvino is missing)."""
    if capabilities is None:
        try:
            capabilities = cpu_capabilities()
        except ImportError:
            return False
    return BF16 in capabilities


def check_bf16(capabilities: Optional[Sequence[str]] = None) -> None:
    """Raise ValueError, naming the capabilities, on a CPU without bfloat16 units."""
    capabilities = cpu_capabilities() if capabilities is None else list(capabilities)
    if not bf16_supported(capabilities):
        raise ValueError("openvino-bf16: this CPU has no bfloat16 units (OpenVINO capabilities: "
                         f"{', '.join(capabilities)}); use the openvino runtime (FP32 or a Q/DQ INT8 ONNX)")


class OpenVinoRunner(Runner):
    """An ONNX detector compiled by OpenVINO for the CPU.

    With a dynamic batch axis (and a static image size), each batch size gets its own
    static-shape compilation on first use, kept for later calls (measured 2026.4, yolo-n
    320 px, batch 8: about 16% faster than one dynamic-shape compilation; compiling takes about
    a second, once per size). Past ``MAX_SHAPES`` sizes one dynamic-shape compilation
    runs the rest. A graph exported with a fixed batch runs only that batch (``FixedBatch``
    pads for it). ``threads``: INFERENCE_NUM_THREADS (0: OpenVINO's default, one per core).
    Outputs come back as float32, in graph order.
    """

    name = "openvino"
    precision = ""  # INFERENCE_PRECISION_HINT; "" leaves the model's own
    MAX_SHAPES = 16

    def __init__(self, path: Union[str, os.PathLike], threads: int = 0):
        import openvino as ov

        if self.precision == "bf16":
            check_bf16()
        self.path, self.core, self.props = str(path), ov.Core(), self.properties(threads)
        model = self.core.read_model(self.path)
        if len(model.inputs) != 1:
            raise ValueError(f"{path}: a detector has one input, this model has {len(model.inputs)}")
        shape = model.input(0).get_partial_shape()
        self.per_batch = _batch_only_dynamic(shape)
        self.requests: Dict[object, object] = {}  # batch size (or "any") -> infer request
        if not self.per_batch:
            self.requests["any"] = self.core.compile_model(model, "CPU", self.props).create_infer_request()
        port = model.input(0)
        self.input_name = port.get_any_name()
        self.input_dtype = np.dtype(port.get_element_type().to_dtype())
        self.output_names = [o.get_any_name() for o in model.outputs]

    def properties(self, threads: int) -> dict:
        """The CPU plugin's settings: latency (one stream), denormals flushed, threads."""
        props = {"PERFORMANCE_HINT": "LATENCY", "CPU_DENORMALS_OPTIMIZATION": True}
        if int(threads) > 0:
            props["INFERENCE_NUM_THREADS"] = int(threads)
        if self.precision:
            props["INFERENCE_PRECISION_HINT"] = self.precision
        return props

    def _request(self, batch: int):
        """The infer request for ``batch``: compiled for that size on first use."""
        key = batch if self.per_batch and (batch in self.requests or len(self.requests) < self.MAX_SHAPES) else "any"
        if key not in self.requests:
            model = self.core.read_model(self.path)
            if key != "any":
                shape = model.input(0).get_partial_shape()
                model.reshape([batch, *(d.get_length() for d in list(shape)[1:])])
            self.requests[key] = self.core.compile_model(model, "CPU", self.props).create_infer_request()
        return self.requests[key]

    def __call__(self, x: np.ndarray) -> List[np.ndarray]:
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        request = self._request(len(x))
        request.infer({0: x})
        return [np.array(request.get_output_tensor(i).data, dtype=np.float32) for i in range(len(self.output_names))]


class OpenVinoBf16Runner(OpenVinoRunner):
    """OpenVINO with float layers in bfloat16 (INFERENCE_PRECISION_HINT bf16); refused on a
    CPU without bfloat16 units, never emulated."""

    name = "openvino-bf16"
    precision = "bf16"



def _batch_only_dynamic(shape) -> bool:
    """Whether only the batch axis of a 4-D input is dynamic (then each size compiles static)."""
    if shape.rank.is_dynamic or len(shape) != 4:
        return False
    dims = list(shape)
    return dims[0].is_dynamic and not any(d.is_dynamic for d in dims[1:])
