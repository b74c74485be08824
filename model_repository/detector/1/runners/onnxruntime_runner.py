"""ONNX Runtime on the CPU: the embedded target's detector, offline eval and bench.

The one place an ONNX Runtime session for a detector is configured; onnxruntime is
imported when a runner is opened, not when this module is.
"""

from __future__ import annotations

import os
from typing import List, Union

import numpy as np

from .base import Runner


class OnnxRuntimeRunner(Runner):
    """An ONNX detector on ONNX Runtime's CPU execution provider.

    ``threads``: intra-op threads (0: ONNX Runtime's default, one per core). FP16 models
    get their input cast to float16; outputs come back as float32.
    """

    name = "onnxruntime"

    def __init__(self, path: Union[str, os.PathLike], threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        # trained detectors produce denormal activations that slow x86 CPUs down many times
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        (first, *_) = self.session.get_inputs()
        self.input_name = first.name
        self.input_dtype = np.dtype(np.float16 if "float16" in first.type else np.float32)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, x: np.ndarray) -> List[np.ndarray]:
        outputs = self.session.run(self.output_names, {self.input_name: x.astype(self.input_dtype, copy=False)})
        return [np.asarray(y).astype(np.float32, copy=False) for y in outputs]
