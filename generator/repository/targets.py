"""Deployment targets, as a registry keyed by name. A target decides how the detector
stage runs; preprocess, postprocess and the ensemble are shared. Third-party targets
come from the ``tritonforge.targets`` entry-point group."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Dict, List, Optional, Union

from generator.errors import UsageError
from generator.export.signature import DetectorSignature
from generator.repository.names import check_model_name
from generator.repository.stages import (
    EnsembleStage, EnsembleStep, OnnxRuntimeStage, PythonStage, Stage, Tensor, default_batching,
)
from generator.resources import runtime_file

FileSource = Union[Path, bytes]
# the preprocess stages' pixel limit (generator.runtime.imaging.DEFAULT_MAX_PIXELS, not imported: OpenCV)
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000


@dataclass
class GenerateOptions:
    """User-facing knobs of ``tritonforge generate``; each checked with a clear message."""

    name: str = "detector"
    max_batch_size: int = 8
    detector_instances: int = 1
    preprocess_instances: int = 2
    queue_delay_us: int = 2000
    dynamic_batching: bool = True
    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 100
    labels: Optional[List[str]] = None
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # larger images are refused from their header, before decoding
    # TensorRT targets (gpu, jetson)
    plan: Optional[Path] = None  # gpu: a built plan to put in place (its build.json is read if present)
    precision: Optional[str] = None  # plan precision for build_plans.sh; default fp16 (int8 for a Q/DQ ONNX)
    nms: Optional[str] = None  # postprocess | engine (EfficientNMS inside the plan); default: the plan's, else postprocess
    opt_batch: Optional[int] = None  # optimization-profile opt batch; default: max batch
    workspace_mib: int = 2048
    dla_core: Optional[int] = None  # jetson: build for this DLA core (GPU fallback allowed)
    calib_cache: Optional[Path] = None  # int8 without Q/DQ: TensorRT calibration cache (TensorRT <= 10)

    def validate(self) -> "GenerateOptions":
        check_model_name(self.name, "--name")
        checks = [
            (self.max_batch_size >= 1, f"--max-batch must be >= 1, got {self.max_batch_size}"),
            (self.detector_instances >= 1, f"--instances must be >= 1, got {self.detector_instances}"),
            (self.preprocess_instances >= 1, f"--preprocess-instances must be >= 1, got {self.preprocess_instances}"),
            (self.queue_delay_us >= 0, f"--queue-delay-us must be >= 0, got {self.queue_delay_us}"),
            (0.0 <= self.score_threshold < 1.0, f"--score-threshold must be in [0, 1), got {self.score_threshold}"),
            (0.0 < self.iou_threshold <= 1.0, f"--iou-threshold must be in (0, 1], got {self.iou_threshold}"),
            (self.max_detections >= 1, f"--max-detections must be >= 1, got {self.max_detections}"),
            (self.max_image_pixels >= 1, f"--max-image-pixels must be >= 1, got {self.max_image_pixels}"),
            (self.precision in (None,) + PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
            (self.nms in (None,) + NMS_MODES, f"--nms must be one of {', '.join(NMS_MODES)}, got {self.nms!r}"),
            (self.opt_batch is None or 1 <= self.opt_batch <= self.max_batch_size,
             f"--opt-batch must be within 1..--max-batch ({self.max_batch_size}), got {self.opt_batch}"),
            (self.workspace_mib >= 64, f"--workspace must be >= 64 MiB, got {self.workspace_mib}"),
            (self.dla_core is None or self.dla_core >= 0, f"--dla-core must be >= 0, got {self.dla_core}"),
            (self.plan is None or Path(self.plan).is_file(), f"--plan not found: {self.plan}"),
            (self.calib_cache is None or Path(self.calib_cache).is_file(), f"--calib-cache not found: {self.calib_cache}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        for label in self.labels or ():
            # one name a line in labels.txt: a line break inside a name would shift every class after it
            if not isinstance(label, str) or not label.strip() or any(ord(c) < 32 or ord(c) == 127 for c in label):
                raise UsageError(f"--labels: class name {label!r} is empty or holds control characters")
        return self

    @classmethod
    def for_target(cls, target: str, **given) -> "GenerateOptions":
        """Options for ``target``: what the user gave over the target's defaults (e.g. Jetson memory)."""
        return cls(**{**get_target(target).defaults, **given})

    def describe(self) -> dict:
        """JSON-ready options for the manifest; files by name only (no machine paths)."""
        out = asdict(self)
        for key in ("plan", "calib_cache"):
            out[key] = Path(out[key]).name if out[key] is not None else None
        return out


PRECISIONS = ("fp32", "fp16", "int8")
NMS_MODES = ("postprocess", "engine")
# options only the TensorRT targets understand: name -> CLI flag
_TRT_ONLY = {"plan": "--plan", "precision": "--precision", "opt_batch": "--opt-batch", "dla_core": "--dla-core",
             "calib_cache": "--calib-cache", "nms": "--nms"}


@dataclass
class ModelDir:
    """One model folder: its stage config and the files of version 1."""

    stage: Stage
    files: Dict[str, FileSource] = field(default_factory=dict)  # path relative to the model folder


class Target:
    """Base class: subclasses say how the detector stage runs."""

    name = ""
    description = ""
    backends: frozenset = frozenset({"python"})  # Triton backends the repository needs
    defaults: Dict[str, object] = {}  # GenerateOptions defaults of this target (GenerateOptions.for_target)

    def check_options(self, opts: GenerateOptions) -> None:
        """Refuse options this target would silently ignore."""
        given = [flag for key, flag in _TRT_ONLY.items() if getattr(opts, key) is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only for the gpu and jetson targets (TensorRT), not {self.name!r}")

    def resolve(self, onnx: Path, opts: GenerateOptions) -> GenerateOptions:
        """The options every file is generated from (a TensorRT target matches them to its plan)."""
        return opts

    def root_files(self, onnx: Path, sig: DetectorSignature, opts: GenerateOptions) -> Dict[str, FileSource]:
        """Extra files at the repository root (scripts, requirements)."""
        return {}

    def serve_steps(self, opts: GenerateOptions) -> List[str]:
        """Shell commands, run in the repository folder, that serve it."""
        return ["tritonforge serve ."]

    def detector(self, onnx: Path, sig: DetectorSignature, opts: GenerateOptions) -> ModelDir:
        raise NotImplementedError

    def models(self, onnx: Path, sig: DetectorSignature, opts: GenerateOptions) -> List[ModelDir]:
        """All model folders: preprocess, detector, postprocess, ensemble."""
        return [preprocess_model(sig, opts), self.detector(onnx, sig, opts),
                postprocess_model(sig, opts), ensemble_model(sig, opts)]

    def manifest(self, onnx: Path, sig: DetectorSignature, opts: GenerateOptions, sha256: str) -> str:
        """``tritonforge.json`` at the repository root: what was generated, from what."""
        from generator import __version__

        info = {
            "tritonforge": __version__, "target": self.name, "ensemble": f"{opts.name}_ensemble",
            "backends": sorted(self.backends), "source_onnx": {"file": onnx.name, "sha256": sha256},
            "signature": {**asdict(sig), "names": list(sig.names)}, "options": opts.describe(),
        }
        return json.dumps(info, indent=2, sort_keys=True) + "\n"


def _batched(opts: GenerateOptions):
    if not opts.dynamic_batching:
        return None
    return default_batching(opts.max_batch_size, opts.queue_delay_us)


def _runtime(*names: str) -> Dict[str, FileSource]:
    """Runtime modules copied verbatim; the stage's entry module becomes ``model.py``."""
    entry, *helpers = names
    files: Dict[str, FileSource] = {"1/model.py": runtime_file(entry)}
    files.update({f"1/{h}": runtime_file(h) for h in helpers})
    return files


def preprocess_model(sig: DetectorSignature, opts: GenerateOptions, modules=("preprocess.py", "imaging.py", "stage_utils.py"),
                     parameters: Optional[Dict[str, str]] = None, instance_kind: str = "KIND_CPU",
                     comment: str = "decode, letterbox (pad 114), RGB, /255, CHW; TRANSFORM = scale, pad_x, pad_y, w, h",
                     ) -> ModelDir:
    """The preprocess stage; ``modules`` (entry first) and extra ``parameters`` vary by target."""
    stage = PythonStage(
        name=f"{opts.name}_preprocess", max_batch_size=opts.max_batch_size,
        inputs=[Tensor("IMAGE", "TYPE_STRING", (1,))],
        outputs=[Tensor("PREPROCESSED", f"TYPE_{sig.input_dtype}", (3, sig.height, sig.width)),
                 Tensor("TRANSFORM", "TYPE_FP32", (5,))],
        parameters={"height": str(sig.height), "width": str(sig.width), "dtype": sig.input_dtype,
                    "max_pixels": str(opts.max_image_pixels), **(parameters or {})},
        comment=comment, instance_count=opts.preprocess_instances, instance_kind=instance_kind,
        dynamic_batching=_batched(opts),
    )
    return ModelDir(stage, _runtime(*modules))


def postprocess_model(sig: DetectorSignature, opts: GenerateOptions, engine_nms: bool = False) -> ModelDir:
    d = opts.max_detections
    parameters = {"score_threshold": repr(opts.score_threshold), "iou_threshold": repr(opts.iou_threshold),
                  "max_detections": str(d), "num_classes": str(sig.num_classes)}
    if engine_nms:  # the plan's outputs under the stage's own input names (its outputs are num_detections, ...)
        inputs = [Tensor(ENGINE_NMS_INPUTS[t.name], t.data_type, t.dims) for t in engine_nms_outputs(d)]
        inputs.append(Tensor("TRANSFORM", "TYPE_FP32", (5,)))
        parameters["nms"] = "engine"
        comment = "detections from the plan's NMS mapped back to original pixels"
    else:
        inputs = [Tensor("RAW", f"TYPE_{sig.output_dtype}", sig.output_dims), Tensor("TRANSFORM", "TYPE_FP32", (5,))]
        comment = "decode + class-aware NMS over the whole batch; boxes in original pixels"
    stage = PythonStage(
        name=f"{opts.name}_postprocess", max_batch_size=opts.max_batch_size, inputs=inputs,
        outputs=detection_outputs(d), parameters=parameters, comment=comment,
        instance_count=1, dynamic_batching=_batched(opts),
    )
    files = _runtime("postprocess.py", "boxes.py", "stage_utils.py")
    files["labels.txt"] = ("\n".join(class_names(sig, opts)) + "\n").encode()
    return ModelDir(stage, files)


def detection_outputs(max_detections: int) -> List[Tensor]:
    return [Tensor("num_detections", "TYPE_INT32", (1,)), Tensor("boxes", "TYPE_FP32", (max_detections, 4)),
            Tensor("scores", "TYPE_FP32", (max_detections,)), Tensor("classes", "TYPE_INT32", (max_detections,))]


# the plan's NMS outputs -> the postprocess stage's inputs
ENGINE_NMS_INPUTS = {"num_detections": "NUM", "detection_boxes": "BOXES", "detection_scores": "SCORES",
                     "detection_classes": "CLASSES"}


def engine_nms_outputs(max_detections: int) -> List[Tensor]:
    """Outputs of a plan built with ``tritonforge build --nms`` (TensorRT's EfficientNMS):
    boxes x1, y1, x2, y2 in network-input pixels."""
    return [Tensor("num_detections", "TYPE_INT32", (1,)), Tensor("detection_boxes", "TYPE_FP32", (max_detections, 4)),
            Tensor("detection_scores", "TYPE_FP32", (max_detections,)),
            Tensor("detection_classes", "TYPE_INT32", (max_detections,))]


def class_names(sig: DetectorSignature, opts: GenerateOptions) -> List[str]:
    names = opts.labels if opts.labels is not None else list(sig.names)
    if len(names) != sig.num_classes:
        raise UsageError(f"--labels lists {len(names)} names but the model has {sig.num_classes} classes")
    return names


def ensemble_model(sig: DetectorSignature, opts: GenerateOptions, engine_nms: bool = False) -> ModelDir:
    n = opts.name
    outputs = detection_outputs(opts.max_detections)
    if engine_nms:  # the plan's NMS outputs, renamed inside the ensemble so they don't clash with its outputs
        detector_out = {name: f"engine_{name}" for name in ENGINE_NMS_INPUTS}
        post_in = {stage_input: f"engine_{name}" for name, stage_input in ENGINE_NMS_INPUTS.items()}
    else:
        detector_out, post_in = {sig.output_name: "raw"}, {"RAW": "raw"}
    stage = EnsembleStage(
        name=f"{n}_ensemble", max_batch_size=opts.max_batch_size,
        inputs=[Tensor("IMAGE", "TYPE_STRING", (1,))], outputs=outputs,
        parameters={"class_names": json.dumps(class_names(sig, opts)), "input_height": str(sig.height),
                    "input_width": str(sig.width)},
        comment="encoded images in ([N, 1] BYTES), padded detections out",
        steps=[
            EnsembleStep(f"{n}_preprocess", {"IMAGE": "IMAGE"}, {"PREPROCESSED": "preprocessed", "TRANSFORM": "transform"}),
            EnsembleStep(n, {sig.input_name: "preprocessed"}, detector_out),
            EnsembleStep(f"{n}_postprocess", {**post_in, "TRANSFORM": "transform"}, {t.name: t.name for t in outputs}),
        ],
    )
    return ModelDir(stage, {"1/.keep": b""})


def _detector_tensors(sig: DetectorSignature):
    return ([Tensor(sig.input_name, f"TYPE_{sig.input_dtype}", (3, sig.height, sig.width))],
            [Tensor(sig.output_name, f"TYPE_{sig.output_dtype}", sig.output_dims)])


class EmbeddedTarget(Target):
    name = "embedded"
    description = "Python backend running ONNX Runtime on the CPU; runs on the server bundled in nvidia-pytriton"
    backends = frozenset({"python"})

    def detector(self, onnx, sig, opts):
        inputs, outputs = _detector_tensors(sig)
        stage = PythonStage(
            name=opts.name, max_batch_size=opts.max_batch_size, inputs=inputs, outputs=outputs,
            parameters={"onnx_file": "model.onnx", "intra_op_threads": "0"},
            comment="detector: ONNX Runtime (CPU) inside the Python backend",
            instance_count=opts.detector_instances, dynamic_batching=_batched(opts),
        )
        files = _runtime("detector_ort.py", "stage_utils.py")
        files["1/model.onnx"] = onnx
        return ModelDir(stage, files)


class CpuTarget(Target):
    name = "cpu"
    description = "Triton's ONNX Runtime backend (platform onnxruntime_onnx); the official Triton container on a CPU host"
    backends = frozenset({"python", "onnxruntime"})

    def serve_steps(self, opts):
        return ['docker run --rm -p 127.0.0.1:8000:8000 -p 127.0.0.1:8001:8001 -v "$PWD:/models" "$TRITON_IMAGE" '
                """bash -c "pip install 'numpy<2' 'opencv-python-headless<4.12' && """
                """tritonserver --model-repository=/models\""""]

    def detector(self, onnx, sig, opts):
        inputs, outputs = _detector_tensors(sig)
        stage = OnnxRuntimeStage(
            name=opts.name, max_batch_size=opts.max_batch_size, inputs=inputs, outputs=outputs,
            comment="detector: Triton's ONNX Runtime backend",
            instance_count=opts.detector_instances, dynamic_batching=_batched(opts),
        )
        return ModelDir(stage, {"1/model.onnx": onnx})


_TARGETS: Dict[str, Target] = {}
_ENTRY_POINTS_LOADED = False


def register_target(target: Target) -> None:
    """Add a target; a name registered twice is an error."""
    if not target.name:
        raise ValueError("a target needs a name")
    if target.name in _TARGETS:
        raise ValueError(f"target {target.name!r} is already registered")
    _TARGETS[target.name] = target


def targets() -> Dict[str, Target]:
    global _ENTRY_POINTS_LOADED
    if not _ENTRY_POINTS_LOADED:
        _ENTRY_POINTS_LOADED = True
        for ep in entry_points(group="tritonforge.targets"):
            obj = ep.load()
            register_target(obj() if isinstance(obj, type) else obj)
    return dict(_TARGETS)


def get_target(name: str) -> Target:
    known = targets()
    if name not in known:
        raise UsageError(f"unknown target {name!r}; known: {', '.join(sorted(known))}")
    return known[name]


register_target(EmbeddedTarget())
register_target(CpuTarget())

from generator.repository import tensorrt_targets  # noqa: E402,F401  (registers gpu and jetson)
