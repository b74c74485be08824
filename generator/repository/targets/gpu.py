"""``gpu``: the official Triton container on a GPU host. The plan is put in place
(``--plan``, matched to its ``build.json``) or built there by ``build_plans.sh``; the CUDA
preprocessing hands its output on as a GPU tensor (DLPack)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, List, Optional, Tuple

from generator.errors import UsageError
from generator.export.signature import DetectorSignature
from generator.export.tensorrt.record import build_info_path
from generator.repository.options import Check, is_file
from generator.repository.targets.plan import read_plan_info, reconcile_with_plan, strip_plan_header
from generator.repository.targets.tensorrt import TensorRTGeneration, TensorRTOptions, TensorRTTarget

# build settings a built plan already has
_BUILD_ONLY = ("precision", "opt_batch", "calib_cache")


@dataclass
class GpuOptions(TensorRTOptions):
    """TensorRT options, plus a plan built elsewhere to put in place."""

    plan: Optional[Path] = None  # its build.json, if present beside it, is read and copied too

    file_fields: ClassVar[Tuple[str, ...]] = ("plan", "calib_cache")

    def checks(self) -> List[Check]:
        return super().checks() + [(is_file(self.plan), f"--plan not found: {self.plan}")]


class GpuTarget(TensorRTTarget):
    name = "gpu"
    description = ("TensorRT plan (platform tensorrt_plan, KIND_GPU) with CUDA preprocessing handed on as GPU "
                   "tensors; the official Triton container with --gpus")
    options_class = GpuOptions
    refused = {"dla_core": "DLA cores exist on Jetson only: use --target jetson"}
    launch = "TRITON_IMAGE=<NGC tritonserver:<yy.mm>-py3> ./launch_triton.sh"

    def check_options(self, opts: GpuOptions) -> None:
        if opts.plan is not None:
            for key in _BUILD_ONLY:
                if getattr(opts, key) is not None:
                    raise UsageError(f"--{key.replace('_', '-')}: set when building; --plan is already built")

    def settles_batch(self, opts: GpuOptions) -> bool:
        """A plan put in place has its own batch profile (checked against its build.json)."""
        return opts.plan is None

    def prepare(self, onnx: Path, sig: DetectorSignature, opts: GpuOptions) -> TensorRTGeneration:
        """With ``--plan``: its bytes, header removed, and the options matched to its build.json."""
        if opts.plan is None:
            return super().prepare(onnx, sig, opts)
        plan = Path(opts.plan)
        data, header = strip_plan_header(plan.read_bytes(), plan)
        info = read_plan_info(plan)
        info_file = build_info_path(plan)
        return TensorRTGeneration(self, Path(onnx), sig, reconcile_with_plan(opts, info, plan), plan=data,
                                  plan_file=plan, header=header, info=info,
                                  info_file=info_file if info_file.is_file() else None)
