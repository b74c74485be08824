"""ONNX Runtime on the CPU: the embedded target's detector, offline eval and bench.

The one place an ONNX Runtime session for a detector is configured; onnxruntime is
imported when a runner is opened, not when this module is.
"""

from __future__ import annotations

import os
from typing import List, Union

import numpy as np

from .base import Runner


# ONNX Runtime's input type names -> numpy
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}


class OnnxRuntimeRunner(Runner):
    """An ONNX detector on ONNX Runtime's CPU execution provider.

    ``threads``: intra-op threads (0: ONNX Runtime's default, one per core). ``spinning``:
    whether idle intra-op threads spin waiting for work (ONNX Runtime's default); off here,
    because spinning threads steal the cores of whatever runs next on them (another runtime,
    another Triton stage). The input is cast to the graph's type (float32, float16, uint8);
    outputs come back as float32.
    """

    name = "onnxruntime"

    def __init__(self, path: Union[str, os.PathLike], threads: int = 0, spinning: bool = False):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        # trained detectors produce denormal activations that slow x86 CPUs down many times
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        (first, *_) = self.session.get_inputs()
        self.input_name = first.name
        self.input_dtype = np.dtype(_NUMPY_TYPES.get(first.type, np.float32))
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, x: np.ndarray) -> List[np.ndarray]:
        outputs = self.session.run(self.output_names, {self.input_name: x.astype(self.input_dtype, copy=False)})
        return [np.asarray(y).astype(np.float32, copy=False) for y in outputs]
