"""The TensorRT targets. ``gpu``: the official Triton container on a GPU host, the plan
put in place (``--plan``) or built there by ``build_plans.sh``. ``jetson``: Triton's
JetPack release; plans are specific to the GPU, TensorRT version and driver, so they
are always built on the device.

Preprocessing runs the fused CUDA letterbox kernel (``templates/cuda/letterbox.cu``,
pycuda) and falls back to the CPU when pycuda or a GPU is missing. On ``gpu`` its output
stays on the GPU (handed to the plan through DLPack); on ``jetson`` it is copied back,
because Triton's Python backend has no GPU tensors there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

from generator.errors import UsageError
from generator.export.signature import DetectorSignature
from generator.repository.stages import TensorRTStage
from generator.repository.targets import (
    FileSource, GenerateOptions, ModelDir, Target, _batched, _detector_tensors, engine_nms_outputs,
    ensemble_model, postprocess_model, preprocess_model, register_target,
)
from generator.resources import templates_dir

KERNEL = "letterbox.cu"


@dataclass(frozen=True)
class PlanSpec:
    """How the plan is (to be) built: the profile, precision and NMS the configs must match."""

    precision: str
    min_batch: int
    opt_batch: int
    max_batch: int
    nms: str
    max_detections: int
    score_threshold: float
    iou_threshold: float
    workspace_mib: int
    dla_core: Optional[int]
    calib_cache: Optional[str]  # file name inside the detector folder
    qdq: bool


def plan_spec(onnx: Path, opts: GenerateOptions) -> PlanSpec:
    """The build a generated ``build_plans.sh`` will run, checked by ``tritonforge build``'s
    own rules before anything is written."""
    from generator.export.trt_build import BuildOptions, onnx_has_qdq

    qdq = onnx_has_qdq(onnx)
    precision = opts.precision or ("int8" if qdq else "fp16")
    if qdq and precision != "int8":
        raise UsageError(f"{onnx} is a Q/DQ (INT8) ONNX: it builds strongly typed as int8, not --precision {precision}")
    if precision == "int8" and not qdq and opts.calib_cache is None:
        raise UsageError(
            "--precision int8 needs a Q/DQ ONNX (tritonforge quantize) or --calib-cache "
            "(tritonforge quantize --trt-cache; TensorRT <= 10 only)")
    spec = PlanSpec(
        precision=precision, min_batch=1, opt_batch=opts.opt_batch or opts.max_batch_size,
        max_batch=opts.max_batch_size, nms=opts.nms or "postprocess", max_detections=opts.max_detections,
        score_threshold=opts.score_threshold, iou_threshold=opts.iou_threshold, workspace_mib=opts.workspace_mib,
        dla_core=opts.dla_core, calib_cache="calibration.cache" if opts.calib_cache is not None else None, qdq=qdq,
    )
    BuildOptions(precision=precision, min_batch=spec.min_batch, opt_batch=spec.opt_batch, max_batch=spec.max_batch,
                 workspace=spec.workspace_mib, dla_core=spec.dla_core, calib_cache=opts.calib_cache,
                 nms=spec.nms == "engine", score_threshold=spec.score_threshold, iou_threshold=spec.iou_threshold,
                 max_detections=spec.max_detections).validate()
    return spec


def strip_plan_header(data: bytes, where: Path) -> Tuple[bytes, Optional[dict]]:
    """Raw plan bytes. Ultralytics' ``.engine`` files start with a private header (4-byte
    length + JSON metadata) that Triton refuses; it is removed and returned."""
    if len(data) < 64:
        raise UsageError(f"--plan {where}: {len(data)} bytes is not a TensorRT plan")
    length = int.from_bytes(data[:4], "little", signed=True)
    if data[4:5] == b"{" and 2 <= length <= len(data) - 4:
        try:
            meta = json.loads(data[4:4 + length].decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            meta = None
        if isinstance(meta, dict):
            return data[4 + length:], meta
    return data, None


def read_plan_info(plan: Path) -> Optional[dict]:
    """``build.json`` written beside the plan by ``tritonforge build``, if any."""
    from generator.export.trt_build import read_build_info

    return read_build_info(plan)


_DEFAULTS = {f.name: f.default for f in fields(GenerateOptions)}


def reconcile_with_plan(opts: GenerateOptions, info: Optional[dict], plan: Path) -> GenerateOptions:
    """Options that match the plan's build: its profile bounds max batch; NMS built into
    the plan fixes the thresholds and the detection count. Conflicts are errors."""
    if info is None:
        return opts
    given = GenerateOptions(**{f.name: getattr(opts, f.name) for f in fields(GenerateOptions)})
    plan_max = int(info["max_batch"])
    if opts.max_batch_size > plan_max:
        raise UsageError(f"--max-batch {opts.max_batch_size} exceeds the profile of --plan {plan} "
                         f"(max batch {plan_max}, from its build.json)")
    plan_nms = "engine" if info.get("nms") else "postprocess"
    if opts.nms not in (None, plan_nms):
        raise UsageError(f"--nms {opts.nms}: --plan {plan} was built with "
                         f"{'engine NMS' if plan_nms == 'engine' else 'no NMS inside'} (its build.json)")
    given.nms = plan_nms
    if plan_nms == "engine":
        for key, plan_key in (("max_detections", "max_detections"), ("score_threshold", "score_threshold"),
                              ("iou_threshold", "iou_threshold")):
            want = type(_DEFAULTS[key])(info[plan_key])
            if getattr(opts, key) not in (_DEFAULTS[key], want):
                flag = "--" + key.replace("_", "-")
                raise UsageError(f"{flag} {getattr(opts, key)}: --plan {plan} has NMS built in with {want}")
            setattr(given, key, want)
    return given


class _Prepared(NamedTuple):
    opts: GenerateOptions  # matched to the plan
    plan: Optional[bytes]  # raw plan bytes (header removed), or None: built later by build_plans.sh
    header: Optional[dict]  # the private header that was removed
    info: Optional[dict]  # the plan's build.json
    spec: Optional[PlanSpec]  # the deferred build


class TensorRTTarget(Target):
    """Shared by ``gpu`` and ``jetson``: a ``tensorrt_plan`` detector between GPU preprocessing
    and the postprocess stage."""

    backends = frozenset({"python", "tensorrt"})
    preprocess_output = "gpu"  # where the preprocessed batch is handed on
    preprocess_kind = "KIND_GPU"
    not_allowed: Dict[str, str] = {}  # option -> reason

    def __init__(self) -> None:
        self._prepared: Dict[tuple, _Prepared] = {}

    def check_options(self, opts: GenerateOptions) -> None:
        for key, reason in self.not_allowed.items():
            if getattr(opts, key) is not None:
                flag = "--" + key.replace("_", "-")
                raise UsageError(f"{flag}: {reason}")

    def resolve(self, onnx: Path, opts: GenerateOptions) -> GenerateOptions:
        return self._prepare(onnx, opts).opts

    def _prepare(self, onnx: Path, opts: GenerateOptions) -> "_Prepared":
        """Options matched to the plan and the plan's bytes, or the spec of the deferred build.

        ``generate`` asks for this from ``resolve``, ``models``, ``root_files`` and
        ``manifest``: the plan is read (and the ONNX inspected) once per generation.
        """
        key = (str(onnx), repr(opts))
        if key not in self._prepared:
            if opts.plan is not None:
                plan = Path(opts.plan)
                data, header = strip_plan_header(plan.read_bytes(), plan)
                info = read_plan_info(plan)
                prepared = _Prepared(reconcile_with_plan(opts, info, plan), data, header, info, None)
            else:
                prepared = _Prepared(opts, None, None, None, plan_spec(onnx, opts))
            # keyed by what was asked and by the resolved options the later calls pass
            self._prepared = {key: prepared, (str(onnx), repr(prepared.opts)): prepared}
        return self._prepared[key]

    def models(self, onnx: Path, sig: DetectorSignature, opts: GenerateOptions) -> List[ModelDir]:
        prepared = self._prepare(onnx, opts)
        opts = prepared.opts
        engine_nms = (opts.nms or "postprocess") == "engine"
        return [self.preprocess(sig, opts), self.detector_dir(onnx, sig, opts, prepared.plan, engine_nms),
                postprocess_model(sig, opts, engine_nms), ensemble_model(sig, opts, engine_nms)]

    def detector(self, onnx, sig, opts):
        prepared = self._prepare(onnx, opts)
        return self.detector_dir(onnx, sig, prepared.opts, prepared.plan, prepared.opts.nms == "engine")

    def preprocess(self, sig: DetectorSignature, opts: GenerateOptions) -> ModelDir:
        model = preprocess_model(
            sig, opts, ("preprocess_gpu.py", "imaging.py", "stage_utils.py", "cuda_letterbox.py"),
            parameters={"output_device": self.preprocess_output}, instance_kind=self.preprocess_kind,
            comment=(f"decode on the CPU, then one CUDA kernel: letterbox + pad 114 + BGR->RGB + /255 + CHW; "
                     f"output on the {self.preprocess_output.upper()} (CPU fallback without pycuda/GPU)"))
        model.files[f"1/{KERNEL}"] = templates_dir() / "cuda" / KERNEL
        return model

    def detector_dir(self, onnx: Path, sig: DetectorSignature, opts: GenerateOptions, plan: Optional[bytes],
                     engine_nms: bool) -> ModelDir:
        inputs, outputs = _detector_tensors(sig)
        if engine_nms:
            outputs = engine_nms_outputs(opts.max_detections)
        stage = TensorRTStage(
            name=opts.name, max_batch_size=opts.max_batch_size, inputs=inputs, outputs=outputs,
            comment=("detector: TensorRT plan" + (" with NMS inside (EfficientNMS)" if engine_nms else "")
                     + ("" if plan is not None else "; build 1/model.plan on the serving machine with build_plans.sh")),
            instance_count=opts.detector_instances, instance_kind="KIND_GPU", dynamic_batching=_batched(opts),
        )
        files: Dict[str, FileSource] = {}
        if plan is not None:
            files["1/model.plan"] = plan
            info_file = Path(opts.plan).with_name("build.json")
            if info_file.is_file():
                files["1/build.json"] = info_file
        else:
            files["model.onnx"] = onnx  # beside the version folder: Triton does not look at it
            files["1/.keep"] = b""
            if opts.calib_cache is not None:
                files["calibration.cache"] = Path(opts.calib_cache)
        return ModelDir(stage, files)

    def root_files(self, onnx: Path, sig: DetectorSignature, opts: GenerateOptions) -> Dict[str, FileSource]:
        from generator.repository.render import render_template

        prepared = self._prepare(onnx, opts)
        opts = prepared.opts
        files: Dict[str, FileSource] = {
            "requirements.txt": render_template("scripts/requirements.txt.j2", target=self).encode(),
            "launch_triton.sh": render_template(f"scripts/launch_triton_{self.name}.sh.j2", target=self, opts=opts,
                                                sig=sig).encode(),
        }
        if prepared.plan is None:
            files["build_plans.sh"] = render_template("scripts/build_plans.sh.j2", target=self, opts=opts, sig=sig,
                                                      spec=prepared.spec).encode()
        return files

    def serve_steps(self, opts):
        launch = ("TRITON_IMAGE=<NGC tritonserver:<yy.mm>-py3> ./launch_triton.sh" if self.name == "gpu"
                  else "./launch_triton.sh")
        return ([] if opts.plan is not None else ["./build_plans.sh"]) + [launch]

    def manifest(self, onnx, sig, opts, sha256):
        prepared = self._prepare(onnx, opts)
        info = json.loads(super().manifest(onnx, sig, prepared.opts, sha256))
        if prepared.plan is not None:
            info["plan"] = {"file": Path(opts.plan).name, "sha256": hashlib.sha256(prepared.plan).hexdigest(),
                            "private_header_removed": prepared.header is not None, "build_info": prepared.info}
        else:
            info["plan"] = {"build": "build_plans.sh", "spec": prepared.spec.__dict__}
        return json.dumps(info, indent=2, sort_keys=True) + "\n"


class GpuTarget(TensorRTTarget):
    name = "gpu"
    description = ("TensorRT plan (platform tensorrt_plan, KIND_GPU) with CUDA preprocessing handed on as GPU "
                   "tensors; the official Triton container with --gpus")
    not_allowed = {"dla_core": "DLA cores exist on Jetson only: use --target jetson"}

    def check_options(self, opts: GenerateOptions) -> None:
        super().check_options(opts)
        if opts.plan is not None:
            for key in ("precision", "opt_batch", "calib_cache"):
                if getattr(opts, key) is not None:
                    raise UsageError(f"--{key.replace('_', '-')}: set when building; --plan is already built")


class JetsonTarget(TensorRTTarget):
    name = "jetson"
    description = ("TensorRT plan built on the Jetson (optionally on a DLA core), CUDA preprocessing with CPU "
                   "tensors between stages; Triton's JetPack release")
    preprocess_output = "cpu"  # Triton's Python backend has no GPU tensors on Jetson
    preprocess_kind = "KIND_CPU"
    not_allowed = {"plan": "plans are not portable between devices: the Jetson builds its own (build_plans.sh)"}
    # sized for an 8 GB Xavier NX / Orin NX, whose memory the CPU and GPU share
    defaults = {"max_batch_size": 4, "preprocess_instances": 1, "detector_instances": 1, "workspace_mib": 1024}


register_target(GpuTarget())
register_target(JetsonTarget())
