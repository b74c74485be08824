"""What the TensorRT targets (``gpu``, ``jetson``) share: their options, a
``tensorrt_plan`` detector between CUDA preprocessing and the postprocess stage, and the
plan (put in place, or built on the serving machine by ``build_plans.sh``).

Preprocessing runs the fused CUDA letterbox kernel (``templates/cuda/letterbox.cu``,
pycuda) and falls back to the CPU when pycuda or a GPU is missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Dict, List, Optional, Tuple

from generator.errors import UsageError
from generator.export.signature import DetectorSignature
from generator.export.tensorrt.options import PRECISIONS
from generator.repository.options import Check, RepositoryOptions, is_file
from generator.repository.pipeline import (
    FileSource, ModelDir, batching, detector_tensors, ensemble_model, postprocess_model, preprocess_model,
)
from generator.repository.stages import TensorRTStage
from generator.repository.targets.base import Generation, Target
from generator.repository.targets.plan import PlanSpec, plan_spec
from generator.resources import templates_dir

KERNEL = "letterbox.cu"
NMS_MODES = ("postprocess", "engine")
ENGINE_NMS_HEAD = "anchor-free"  # the only head tritonforge build --nms puts EfficientNMS behind
ENGINE_NMS_LAYOUT = "efficient-nms"  # what such a plan answers


@dataclass
class TensorRTOptions(RepositoryOptions):
    """Options of the TensorRT targets: how the plan is (to be) built."""

    precision: Optional[str] = None  # plan precision for build_plans.sh; default fp16 (int8 for a Q/DQ ONNX)
    nms: Optional[str] = None  # postprocess | engine (EfficientNMS inside the plan); default: the plan's, else postprocess
    opt_batch: Optional[int] = None  # optimization-profile opt batch; default: max batch
    workspace_mib: int = 2048
    calib_cache: Optional[Path] = None  # int8 without Q/DQ: TensorRT calibration cache (TensorRT <= 10)

    file_fields: ClassVar[Tuple[str, ...]] = ("calib_cache",)
    kind: ClassVar[str] = "TensorRT"

    def checks(self) -> List[Check]:
        return super().checks() + [
            (self.precision in (None,) + PRECISIONS,
             f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
            (self.nms in (None,) + NMS_MODES, f"--nms must be one of {', '.join(NMS_MODES)}, got {self.nms!r}"),
            (self.opt_batch is None or 1 <= self.opt_batch <= self.max_batch_size,
             f"--opt-batch must be within 1..--max-batch ({self.max_batch_size}), got {self.opt_batch}"),
            (self.workspace_mib >= 64, f"--workspace must be >= 64 MiB, got {self.workspace_mib}"),
            (is_file(self.calib_cache), f"--calib-cache not found: {self.calib_cache}"),
        ]


@dataclass
class TensorRTGeneration(Generation):
    """A generation with its plan: the bytes to put in place, or the spec of the deferred build."""

    plan: Optional[bytes] = None  # raw plan bytes (private header removed); None: build_plans.sh builds it
    plan_file: Optional[Path] = None  # where those bytes came from
    header: Optional[dict] = None  # the private header that was removed
    info: Optional[dict] = None  # the plan's build.json
    info_file: Optional[Path] = None  # build.json, copied beside the plan
    spec: Optional[PlanSpec] = None  # the deferred build

    @property
    def engine_nms(self) -> bool:
        return self.opts.nms == "engine"

    @property
    def served(self) -> DetectorSignature:
        """With NMS inside the plan, the detector answers EfficientNMS's four outputs: the
        ``efficient-nms`` layout."""
        return engine_nms_signature(self.sig, self.opts.max_detections) if self.engine_nms else self.sig


def engine_nms_signature(sig: DetectorSignature, max_detections: int) -> DetectorSignature:
    """``sig`` as a plan built with ``tritonforge build --nms`` answers: EfficientNMS's outputs
    (``generator.export.tensorrt.nms``), boxes x1, y1, x2, y2 in network-input pixels."""
    from generator.export.signature import TensorSpec
    from generator.export.tensorrt.nms import nms_outputs

    outputs = tuple(TensorSpec(o["name"], o["data_type"][len("TYPE_"):], tuple(o["dims"]))
                    for o in nms_outputs(max_detections))
    return dataclasses.replace(sig, outputs=outputs, layout=ENGINE_NMS_LAYOUT)


def check_engine_nms(onnx: Path, sig: DetectorSignature, opts: "TensorRTOptions") -> None:
    """``--nms engine`` puts EfficientNMS behind an anchor-free head only: a model that already
    ends in NMS (or needs none) or has another head is refused, with the reason."""
    if opts.nms != "engine" or sig.layout == ENGINE_NMS_HEAD:
        return
    from generator.runtime.layouts import get_layout

    if not get_layout(sig.layout).needs_nms:
        raise UsageError(f"--nms engine: {onnx} already ends in NMS (layout {sig.layout})")
    raise UsageError(f"--nms engine: only for anchor-free heads; {onnx} has layout {sig.layout}")


class TensorRTTarget(Target):
    """Shared by ``gpu`` and ``jetson``: a ``tensorrt_plan`` detector between GPU preprocessing
    and the postprocess stage. A subclass that puts a built plan in place overrides ``prepare``."""

    backends = frozenset({"python", "tensorrt"})
    options_class = TensorRTOptions
    preprocess_output = "gpu"  # where the preprocessed batch is handed on
    preprocess_kind = "KIND_GPU"
    launch = "./launch_triton.sh"  # the serve step after the plan exists

    def prepare(self, onnx: Path, sig: DetectorSignature, opts: TensorRTOptions) -> TensorRTGeneration:
        """The spec of the plan ``build_plans.sh`` builds on the serving machine."""
        return TensorRTGeneration(self, Path(onnx), sig, opts, spec=plan_spec(Path(onnx), opts))

    runs_trt_plugins = True

    def check_signature(self, onnx: Path, sig: DetectorSignature, opts: TensorRTOptions) -> None:
        super().check_signature(onnx, sig, opts)
        check_engine_nms(onnx, sig, opts)

    def models(self, gen: TensorRTGeneration) -> List[ModelDir]:
        return [self.preprocess(gen.sig, gen.opts), self.detector(gen),
                postprocess_model(gen.served, gen.opts), ensemble_model(gen.served, gen.opts)]

    def preprocess(self, sig: DetectorSignature, opts: TensorRTOptions) -> ModelDir:
        where = f"output on the {self.preprocess_output.upper()}"
        comment = (f"decode on the CPU, then one CUDA kernel: letterbox + pad 114 + BGR->RGB + /255 + CHW; "
                   f"{where} (CPU fallback without pycuda/GPU)") if sig.input_format.is_default else (
            f"decode + letterbox on the CPU ({sig.input_format.describe()}: not the CUDA kernel's RGB 0..1); {where}")
        model = preprocess_model(
            sig, opts, "preprocess_gpu.py", parameters={"output_device": self.preprocess_output},
            instance_kind=self.preprocess_kind, comment=comment)
        model.files[f"1/{KERNEL}"] = templates_dir() / "cuda" / KERNEL
        return model

    def detector(self, gen: TensorRTGeneration) -> ModelDir:
        opts = gen.opts
        inputs, outputs = detector_tensors(gen.served)
        stage = TensorRTStage(
            name=opts.name, max_batch_size=opts.max_batch_size, inputs=inputs, outputs=outputs,
            comment=("detector: TensorRT plan" + (" with NMS inside (EfficientNMS)" if gen.engine_nms else "")
                     + ("" if gen.plan is not None else "; build 1/model.plan on the serving machine with build_plans.sh")),
            instance_count=opts.detector_instances, instance_kind="KIND_GPU", dynamic_batching=batching(opts),
        )
        return ModelDir(stage, self.detector_files(gen))

    def detector_files(self, gen: TensorRTGeneration) -> Dict[str, FileSource]:
        if gen.plan is not None:
            files: Dict[str, FileSource] = {"1/model.plan": gen.plan}
            if gen.info_file is not None:
                files["1/build.json"] = gen.info_file
            return files
        files = {"model.onnx": gen.onnx, "1/.keep": b""}  # the ONNX beside the version folder: Triton ignores it
        if gen.opts.calib_cache is not None:
            files["calibration.cache"] = Path(gen.opts.calib_cache)
        return files

    def root_files(self, gen: TensorRTGeneration) -> Dict[str, FileSource]:
        from generator.repository.render import render_template

        context = dict(target=self, opts=gen.opts, sig=gen.sig)
        files: Dict[str, FileSource] = {
            "requirements.txt": render_template("scripts/requirements.txt.j2", target=self).encode(),
            "launch_triton.sh": render_template(f"scripts/launch_triton_{self.name}.sh.j2", **context).encode(),
        }
        if gen.plan is None:
            files["build_plans.sh"] = self.build_script(gen).encode()
        return files

    def build_script(self, gen: TensorRTGeneration) -> str:
        """``build_plans.sh``: the deferred build, with trtexec flags from the build strategy."""
        from generator.export.tensorrt.trtexec import trtexec_cases
        from generator.repository.render import render_template

        cases = trtexec_cases(gen.spec.qdq, gen.spec.calib_cache is not None)
        return render_template("scripts/build_plans.sh.j2", target=self, opts=gen.opts, sig=gen.sig, spec=gen.spec,
                               trtexec_cases=cases)

    def serve_steps(self, gen: TensorRTGeneration) -> List[str]:
        return ([] if gen.plan is not None else ["./build_plans.sh"]) + [self.launch]

    def manifest_extra(self, gen: TensorRTGeneration) -> dict:
        if gen.plan is None:
            return {"plan": {"build": "build_plans.sh", "spec": gen.spec.__dict__}}
        return {"plan": {"file": gen.plan_file.name, "sha256": hashlib.sha256(gen.plan).hexdigest(),
                         "private_header_removed": gen.header is not None, "build_info": gen.info}}
