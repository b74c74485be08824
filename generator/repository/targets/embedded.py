"""``embedded``: the detector runs ONNX Runtime on the CPU inside the Python backend, so
the repository runs on the Triton server bundled in nvidia-pytriton (``tritonforge serve``)."""

from __future__ import annotations

from generator.repository.pipeline import ModelDir, batching, detector_tensors, runtime_stage_files
from generator.repository.stages import PythonStage
from generator.repository.targets.base import Generation, Target


class EmbeddedTarget(Target):
    name = "embedded"
    description = "Python backend running ONNX Runtime on the CPU; runs on the server bundled in nvidia-pytriton"
    backends = frozenset({"python"})
    pads_fixed_batch = True  # runtime/detector.py: fixed_batch

    def detector(self, gen: Generation) -> ModelDir:
        inputs, outputs = detector_tensors(gen.served)
        parameters = {"onnx_file": "model.onnx", "intra_op_threads": "0"}
        if gen.sig.batch is not None:  # a fixed batch the graph could not be freed from
            parameters["fixed_batch"] = str(gen.sig.batch)
        stage = PythonStage(
            name=gen.opts.name, max_batch_size=gen.opts.max_batch_size, inputs=inputs, outputs=outputs,
            parameters=parameters,
            comment="detector: ONNX Runtime (CPU) inside the Python backend",
            instance_count=gen.opts.detector_instances, dynamic_batching=batching(gen.opts),
        )
        files = runtime_stage_files("detector.py")
        files["1/model.onnx"] = gen.onnx
        return ModelDir(stage, files)
