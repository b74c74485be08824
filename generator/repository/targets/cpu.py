"""``cpu``: Triton's own ONNX Runtime backend runs the detector (``platform:
"onnxruntime_onnx"``), on the official Triton container on a CPU host."""

from __future__ import annotations

from typing import List

from generator.repository.pipeline import ModelDir, batching, detector_tensors
from generator.repository.stages import OnnxRuntimeStage
from generator.repository.targets.base import Generation, Target

# the Python stages need numpy 1.x and an OpenCV built for it inside the container
_SERVE = ('docker run --rm -p 127.0.0.1:8000:8000 -p 127.0.0.1:8001:8001 -v "$PWD:/models" "$TRITON_IMAGE" '
          """bash -c "pip install 'numpy<2' 'opencv-python-headless<4.12' && """
          """tritonserver --model-repository=/models\"""")


class CpuTarget(Target):
    name = "cpu"
    description = "Triton's ONNX Runtime backend (platform onnxruntime_onnx); the official Triton container on a CPU host"
    backends = frozenset({"python", "onnxruntime"})

    def serve_steps(self, gen: Generation) -> List[str]:
        return [_SERVE]

    def detector(self, gen: Generation) -> ModelDir:
        inputs, outputs = detector_tensors(gen.served)
        stage = OnnxRuntimeStage(
            name=gen.opts.name, max_batch_size=gen.opts.max_batch_size, inputs=inputs, outputs=outputs,
            comment="detector: Triton's ONNX Runtime backend",
            instance_count=gen.opts.detector_instances, dynamic_batching=batching(gen.opts),
        )
        return ModelDir(stage, {"1/model.onnx": gen.onnx})
