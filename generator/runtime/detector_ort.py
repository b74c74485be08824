"""Triton Python-backend model running an ONNX detector with ONNX Runtime (CPU).

This is the ``embedded`` target's detector: the Triton server bundled with
nvidia-pytriton has no ONNX Runtime backend. Requests handed over together by the
dynamic batcher run as one ONNX Runtime call.
"""

import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

try:
    from . import stage_utils
except ImportError:
    import stage_utils


class TritonPythonModel:
    def initialize(self, args):
        params = stage_utils.read_parameters(args)
        config = stage_utils.model_config(args)
        path = os.path.join(args["model_repository"], args["model_version"], params.get("onnx_file", "model.onnx"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "0"))
        # trained detectors produce denormal activations that slow x86 CPUs down many times
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]

    def execute(self, requests):
        batches = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        (out,) = self.session.run([self.output_name], {self.input_name: np.concatenate(batches)})
        responses, start = [], 0
        for batch in batches:
            end = start + batch.shape[0]
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, out[start:end])]))
            start = end
        return responses
