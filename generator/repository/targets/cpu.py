"""``cpu``: Triton's own backends run the detector, on the official Triton container on a CPU
host: ONNX Runtime (``platform: "onnxruntime_onnx"``, the default), OpenVINO (``backend:
"openvino"`` reading the same ONNX; ``openvino-bf16`` adds its bfloat16 hint) or libtorch
(``platform: "pytorch_libtorch"``, a TorchScript file), as ``--runtime`` says."""

from __future__ import annotations

from typing import List

from generator.repository.pipeline import ModelDir, batching, detector_tensors
from generator.repository.stages import LibTorchStage, OnnxRuntimeStage, OpenVinoStage
from generator.repository.targets.base import Generation
from generator.repository.targets.runtime_target import RuntimeGeneration, RuntimeTarget

# the Python stages need numpy 1.x and an OpenCV built for it inside the container
_SERVE = ('docker run --rm -p 127.0.0.1:8000:8000 -p 127.0.0.1:8001:8001 -v "$PWD:/models" "$TRITON_IMAGE" '
          """bash -c "pip install 'numpy<2' 'opencv-python-headless<4.12' && """
          """tritonserver --model-repository=/models\"""")

# Triton backend of the detector per runtime (the manifest's "backends")
DETECTOR_BACKENDS = {"onnxruntime": "onnxruntime", "openvino": "openvino", "openvino-bf16": "openvino",
                     "torchscript": "pytorch"}


class CpuTarget(RuntimeTarget):
    name = "cpu"
    description = ("Triton's ONNX Runtime backend (platform onnxruntime_onnx; --runtime: OpenVINO or libtorch "
                   "backends); the official Triton container on a CPU host")
    backends = frozenset({"python", "onnxruntime"})

    def serve_steps(self, gen: Generation) -> List[str]:
        return [_SERVE]

    def detector(self, gen: RuntimeGeneration) -> ModelDir:
        inputs, outputs = detector_tensors(gen.served, gen.handoff)
        common = dict(name=gen.opts.name, max_batch_size=gen.opts.max_batch_size, inputs=inputs, outputs=outputs,
                      instance_count=gen.opts.detector_instances, dynamic_batching=batching(gen.opts))
        if gen.runtime == "torchscript":
            stage = LibTorchStage(**common, comment="detector: Triton's libtorch backend (TorchScript; inputs "
                                                    "matched by forward() argument name, outputs by order)")
            return ModelDir(stage, {"1/model.pt": self.torchscript_source(gen)})
        if gen.runtime.startswith("openvino"):
            return ModelDir(openvino_stage(gen, common), {"1/model.onnx": gen.detector_onnx()})
        stage = OnnxRuntimeStage(**common, comment="detector: Triton's ONNX Runtime backend")
        return ModelDir(stage, {"1/model.onnx": gen.detector_onnx()})

    def manifest_extra(self, gen: RuntimeGeneration) -> dict:
        extra = super().manifest_extra(gen)
        if gen.runtime != "onnxruntime":
            extra["backends"] = sorted({"python", DETECTOR_BACKENDS[gen.runtime]})
        return extra


def openvino_stage(gen: RuntimeGeneration, common: dict) -> OpenVinoStage:
    """Triton's OpenVINO backend compiles the model for max_batch_size: smaller batches are
    padded to it (ENABLE_BATCH_PADDING), else the backend refuses them."""
    parameters = {"PERFORMANCE_HINT": "LATENCY", "ENABLE_BATCH_PADDING": "YES"}
    if gen.runtime == "openvino-bf16":
        parameters["HINT_BF16"] = "YES"
    comment = (f"detector: Triton's OpenVINO backend reading the ONNX{' in bfloat16' if 'bf16' in gen.runtime else ''}"
               "; batches padded to max_batch_size")
    return OpenVinoStage(**common, parameters=parameters, comment=comment)
