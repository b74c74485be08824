"""Triton Python-backend model: the ``embedded`` target's detector stage.

The Triton server bundled with nvidia-pytriton has no ONNX Runtime backend, so the
detector runs inside the Python backend, on the runtime the config names (ONNX Runtime on
the CPU by default; OpenVINO, OpenVINO bf16, TorchScript: see ``runners/``). Requests
handed over together by the dynamic batcher run as one runner call.

Inputs (the config lists them; dims without the batch axis):
  - the detector's image input (e.g. ``images``): FP32, FP16 or UINT8, ``[3, H, W]``
Outputs:
  - every output of the detector, in graph order, under the names and data types the
    config lists (e.g. ``output0``: FP32 or FP16, ``[4 + C, A]``)
Parameters (config ``parameters``, with defaults):
  - ``onnx_file`` = "model.onnx": the model file, in the version folder
  - ``model_file`` = "": the model file when it is not the ONNX (``model.torchscript`` for
    the torchscript runtime); "" reads ``onnx_file``
  - ``intra_op_threads`` = "0": CPU threads of the runtime (0: its default, one per core)
  - ``runtime`` = "onnxruntime": the runner that executes the model (``onnxruntime``,
    ``openvino``, ``openvino-bf16``, ``torchscript``)
  - ``fixed_batch`` = "0": the batch size the graph was exported with when it is fixed and
    could not be made dynamic; batches are then run in chunks of it, the last one padded
    (0: the batch axis is dynamic)
"""

import os
from typing import Dict, List, Optional

import numpy as np
import triton_python_backend_utils as pb_utils

try:
    from . import runners, stage_utils
except ImportError:
    import runners
    import stage_utils

PARAMETERS: Dict[str, Optional[str]] = {
    "onnx_file": "model.onnx",
    "model_file": "",
    "intra_op_threads": "0",
    "runtime": "onnxruntime",
    "fixed_batch": "0",
}

# config data types the runner's float32 outputs are cast back to (FP16 detectors)
_NUMPY_TYPES = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16, "TYPE_INT32": np.int32, "TYPE_INT64": np.int64}


class TritonPythonModel:
    def initialize(self, args):
        params = stage_utils.read_parameters(args, PARAMETERS)
        config = stage_utils.model_config(args)
        onnx_file, model_file = params["onnx_file"], params["model_file"]
        model_file = model_file or onnx_file
        path = os.path.join(args["model_repository"], args["model_version"], model_file)
        self.runner = runners.open_runner(params["runtime"], path, threads=int(params["intra_op_threads"]))
        if int(params["fixed_batch"]) > 0:
            self.runner = runners.FixedBatch(self.runner, int(params["fixed_batch"]))
        self.input_name = config["input"][0]["name"]
        self.outputs = [(o["name"], _NUMPY_TYPES.get(o.get("data_type"), np.float32)) for o in config["output"]]
        if len(self.outputs) != len(self.runner.output_names):
            raise ValueError(f"{config.get('name', 'detector')}: the config lists outputs "
                             f"{[name for name, _ in self.outputs]} but {model_file} has "
                             f"{self.runner.output_names}")

    def execute(self, requests):
        batches = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        outputs = self.runner(np.concatenate(batches))
        responses, start = [], 0
        for batch in batches:
            end = start + batch.shape[0]
            responses.append(pb_utils.InferenceResponse(output_tensors=self._tensors(outputs, start, end)))
            start = end
        return responses

    def _tensors(self, outputs: List[np.ndarray], start: int, end: int) -> list:
        """One request's rows of every output, in the config's names and data types."""
        return [pb_utils.Tensor(name, out[start:end].astype(dtype, copy=False))
                for (name, dtype), out in zip(self.outputs, outputs)]
