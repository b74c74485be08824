"""``embedded``: the detector runs inside the Python backend, on the runtime ``--runtime``
names (ONNX Runtime by default; OpenVINO, OpenVINO bf16, TorchScript), so the repository
runs on the Triton server bundled in nvidia-pytriton (``tritonforge serve``)."""

from __future__ import annotations

from typing import Dict

from generator.repository.pipeline import FileSource, ModelDir, batching, detector_tensors, runtime_stage_files
from generator.repository.render import render_template
from generator.repository.stages import PythonStage
from generator.repository.targets.runtime_target import RuntimeGeneration, RuntimeTarget

# the pip requirement each runtime adds to the server's environment (onnxruntime: tritonforge's own)
RUNTIME_PACKAGES = {"openvino": "openvino>=2024.4", "openvino-bf16": "openvino>=2024.4", "torchscript": "torch"}


class EmbeddedTarget(RuntimeTarget):
    name = "embedded"
    description = ("Python backend running the detector on the CPU (ONNX Runtime unless --runtime names another); "
                   "runs on the server bundled in nvidia-pytriton")
    backends = frozenset({"python"})
    pads_fixed_batch = True  # runtime/detector.py: fixed_batch

    def detector(self, gen: RuntimeGeneration) -> ModelDir:
        inputs, outputs = detector_tensors(gen.served, gen.handoff)
        files = runtime_stage_files("detector.py")
        if gen.runtime == "torchscript":
            parameters = {"model_file": "model.torchscript", "intra_op_threads": "0"}
            files["1/model.torchscript"] = self.torchscript_source(gen)
        else:
            parameters = {"onnx_file": "model.onnx", "intra_op_threads": "0"}
            files["1/model.onnx"] = gen.detector_onnx()
        if gen.opts.runtime is not None:  # the default stays implicit: default repositories are unchanged
            parameters["runtime"] = gen.runtime
        if gen.sig.batch is not None:  # a fixed batch the graph could not be freed from
            parameters["fixed_batch"] = str(gen.sig.batch)
        stage = PythonStage(
            name=gen.opts.name, max_batch_size=gen.opts.max_batch_size, inputs=inputs, outputs=outputs,
            parameters=parameters,
            comment=f"detector: {gen.title} (CPU) inside the Python backend",
            instance_count=gen.opts.detector_instances, dynamic_batching=batching(gen.opts),
        )
        return ModelDir(stage, files)

    def root_files(self, gen: RuntimeGeneration) -> Dict[str, FileSource]:
        """``requirements.txt`` when the runtime needs a package beyond tritonforge's server extra."""
        package = RUNTIME_PACKAGES.get(gen.runtime)
        if package is None:
            return {}
        text = render_template("scripts/requirements_embedded.txt.j2", target=self, runtime=gen.runtime,
                               package=package)
        return {"requirements.txt": text.encode()}
