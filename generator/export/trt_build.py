"""``tritonforge build``: a TensorRT plan from a detector ONNX, with the TensorRT Python API.

Everything that can be decided without TensorRT is pure Python here and tested on any
machine: option checks (``BuildOptions.validate``), the precision strategy for a TensorRT
version (``plan_build``), the EfficientNMS settings, the ``build.json`` record. The part
that touches TensorRT (``_build_engine``) only carries those decisions out.

Precision strategy:

- TensorRT 10: FP16 through the weakly typed ``BuilderFlag.FP16``; implicit INT8 through
  the legacy calibrators (``compress.trt_calibrators``) or a calibration cache.
- TensorRT 11 removed those flags and the calibrators: FP16 is built strongly typed from an
  FP16 copy of the ONNX (``compress.quantize.convert_fp16``); INT8 needs a Q/DQ ONNX from
  ``tritonforge quantize``.
- A Q/DQ ONNX is explicit INT8 on any version: built strongly typed, scales from the graph.

TensorRT (``tritonforge[gpu]``) is imported only by ``build_plan``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from generator._lazy import require
from generator.errors import TritonForgeError, UsageError

PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATORS = ("entropy", "entropy2", "minmax")
CALIBRATION_IMAGES = 256  # images the implicit INT8 calibrators see (TensorRT suggests a few hundred)

NMS_PLUGIN = ("EfficientNMS_TRT", "1")  # name, version
NMS_OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")
NMS_BOX_CODING_CENTER_SIZE = 1  # EfficientNMS box_coding: 0 corners, 1 center-size (cx, cy, w, h)

BUILD_INFO_FORMAT = "tritonforge.build/1"
BUILD_INFO_NAME = "build.json"  # beside the plan: one plan per folder (Triton's <model>/<version>/model.plan)
CALIBRATION_CACHE_NAME = "calibration.cache"  # beside the plan, after implicit INT8 calibration
BUILD_INFO_REQUIRED = ("precision", "min_batch", "opt_batch", "max_batch", "nms")

MIN_TENSORRT = (8, 6)
STRONG_TYPING_SINCE = 9  # NetworkDefinitionCreationFlag.STRONGLY_TYPED
WEAK_TYPING_REMOVED_IN = 11  # no BuilderFlag.FP16/INT8, no IInt8*Calibrator

# TensorRT DataType member name -> Triton data type
TRITON_DTYPES = {"FLOAT": "TYPE_FP32", "HALF": "TYPE_FP16", "BF16": "TYPE_BF16", "INT8": "TYPE_INT8",
                 "UINT8": "TYPE_UINT8", "INT32": "TYPE_INT32", "INT64": "TYPE_INT64", "BOOL": "TYPE_BOOL"}


# --------------------------------------------------------------------------- options


@dataclass
class BuildOptions:
    """What ``tritonforge build`` was asked for; ``validate`` names the offending flag."""

    precision: str = "fp16"
    min_batch: int = 1
    opt_batch: int = 4
    max_batch: int = 8
    workspace: Optional[int] = None  # MiB; None: TensorRT's default (the device's memory)
    timing_cache: Optional[Path] = None
    dla_core: Optional[int] = None
    calibrator: Optional[str] = None  # entropy | entropy2 | minmax (implicit INT8, TensorRT <= 10)
    data: Optional[Path] = None  # calibration images: dataset spec or image folder
    calib_cache: Optional[Path] = None  # TensorRT calibration cache instead of calibrating
    calibration_images: int = CALIBRATION_IMAGES
    nms: bool = False
    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 100

    def validate(self) -> "BuildOptions":
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for flag, value in (("--min-batch", self.min_batch), ("--opt-batch", self.opt_batch),
                            ("--max-batch", self.max_batch)):
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"{flag} must be an integer >= 1, got {value!r}")
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise UsageError(f"batch sizes must satisfy --min-batch <= --opt-batch <= --max-batch, got "
                             f"{self.min_batch} <= {self.opt_batch} <= {self.max_batch}")
        if self.workspace is not None and self.workspace < 1:
            raise UsageError(f"--workspace must be >= 1 (MiB), got {self.workspace}")
        if self.timing_cache is not None and not Path(self.timing_cache).parent.is_dir():
            raise UsageError(f"--timing-cache: folder does not exist: {Path(self.timing_cache).parent}")
        if self.dla_core is not None:
            if self.dla_core < 0:
                raise UsageError(f"--dla-core must be >= 0, got {self.dla_core}")
            if self.precision == "fp32":
                raise UsageError("--dla-core needs --precision fp16 or int8: DLA has no FP32 "
                                 "(every layer would fall back to the GPU)")
        self._validate_calibration()
        if self.nms:
            if not 0.0 <= self.score_threshold <= 1.0:
                raise UsageError(f"--score-threshold must be in [0, 1], got {self.score_threshold}")
            if not 0.0 < self.iou_threshold <= 1.0:
                raise UsageError(f"--iou-threshold must be in (0, 1], got {self.iou_threshold}")
            if self.max_detections < 1:
                raise UsageError(f"--max-detections must be >= 1, got {self.max_detections}")
        return self

    def _validate_calibration(self) -> None:
        if self.calibrator is not None and self.calib_cache is not None:
            raise UsageError("--calibrator and --calib-cache are exclusive: calibrate on --data, "
                             "or reuse the scales of a cache")
        if self.calibrator is not None:
            if self.calibrator not in CALIBRATORS:
                raise UsageError(f"--calibrator must be one of {', '.join(CALIBRATORS)}, got {self.calibrator!r}")
            if self.precision != "int8":
                raise UsageError(f"--calibrator applies only to --precision int8 (got --precision {self.precision})")
            if self.data is None:
                raise UsageError("--calibrator needs --data: calibration images (dataset: data YAML, "
                                 "dataset folder, COCO JSON; or a folder of images)")
            if not Path(self.data).exists():
                raise UsageError(f"--data not found: {self.data}")
            if self.calibration_images < 1:
                raise UsageError(f"calibration needs at least one image, asked for {self.calibration_images}")
        elif self.data is not None:
            raise UsageError("--data is only used with --calibrator (implicit INT8 calibration)")
        if self.calib_cache is not None:
            if self.precision != "int8":
                raise UsageError(f"--calib-cache applies only to --precision int8 (got --precision {self.precision})")
            calibrator_of_cache(self.calib_cache)  # exists and has a known header

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def calibrator_of_cache(path: Path) -> str:
    """The calibrator kind (entropy, entropy2, minmax) named by a TensorRT cache's header."""
    from generator.compress.quantize import TRT_CACHE_ALGORITHMS

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--calib-cache not found: {path}")
    with path.open("rb") as f:
        first = f.readline(256).decode("ascii", "replace").strip()
    match = re.fullmatch(r"TRT-\d+-(\w+)", first)
    by_algorithm = {v: k for k, v in TRT_CACHE_ALGORITHMS.items()}
    if not match or match.group(1) not in by_algorithm:
        raise UsageError(f"--calib-cache {path}: not a TensorRT calibration cache (first line {first[:60]!r}; "
                         f"expected TRT-<version>-<{'|'.join(by_algorithm)}>)")
    return by_algorithm[match.group(1)]


# --------------------------------------------------------------------------- ONNX facts


@dataclass(frozen=True)
class OnnxFacts:
    has_qdq: bool  # QuantizeLinear/DequantizeLinear nodes: explicit INT8
    fp16: bool  # float16 weights or casts (e.g. from ``tritonforge quantize --fp16``)
    batch: Optional[int]  # fixed batch size of the input, None when dynamic


def onnx_facts(path: Path) -> OnnxFacts:
    import onnx

    from generator.export.signature import read_signature

    sig = read_signature(path)  # the detector contract, with a clear error when broken
    model = onnx.load(str(path), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    meta = {p.key: p.value for p in model.metadata_props}
    fp16 = (meta.get("tritonforge.precision") == "fp16"
            or any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
            or any(n.op_type == "Cast" and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT16
                                               for a in n.attribute) for n in model.graph.node))
    inp = next(i for i in model.graph.input if i.name == sig.input_name)
    dim = inp.type.tensor_type.shape.dim[0]
    batch = dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None
    return OnnxFacts(bool(ops & {"QuantizeLinear", "DequantizeLinear"}), fp16, batch)


def onnx_has_qdq(path: Path) -> bool:
    """True when the ONNX carries Q/DQ nodes (explicit INT8, e.g. from ``tritonforge quantize``)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


# --------------------------------------------------------------------------- the pure decision


@dataclass(frozen=True)
class BuildPlan:
    """How to build for one TensorRT version; ``flags`` are ``trt.BuilderFlag`` member names."""

    tensorrt: str
    strongly_typed: bool
    flags: Tuple[str, ...] = ()
    convert_fp16: bool = False  # build from an FP16 copy of the ONNX (convert_fp16)
    calibrator: Optional[str] = None  # implicit INT8: calibrate with this legacy calibrator
    calib_cache: Optional[Path] = None  # implicit INT8: scales from this cache
    explicit_int8: bool = False  # Q/DQ ONNX
    device_type: str = "GPU"  # trt.DeviceType member name for config.default_device_type
    dla_core: Optional[int] = None
    notes: Tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items()}


def tensorrt_version(version: str) -> Tuple[int, int]:
    match = re.match(r"\s*(\d+)\.(\d+)", str(version))
    if not match:
        raise TritonForgeError(f"cannot read the TensorRT version {version!r}")
    return int(match.group(1)), int(match.group(2))


def plan_build(trt_version: str, has_qdq: bool, opts: BuildOptions, fp16_onnx: bool = False,
               onnx_name: str = "the ONNX") -> BuildPlan:
    """Decide network typing, builder flags, FP16 conversion and calibration for ``opts``
    on TensorRT ``trt_version``; raise a clear error for what that version cannot do."""
    major, minor = tensorrt_version(trt_version)
    if (major, minor) < MIN_TENSORRT:
        raise TritonForgeError(f"TensorRT {trt_version} is too old; tritonforge build needs TensorRT >= "
                               f"{MIN_TENSORRT[0]}.{MIN_TENSORRT[1]}")
    strong_available = major >= STRONG_TYPING_SINCE
    weak_available = major < WEAK_TYPING_REMOVED_IN
    notes: List[str] = []
    flags: List[str] = []
    strongly_typed = False
    convert = False
    calibrator = None
    calib_cache = None
    calibration_options = "--calibrator" if opts.calibrator else "--calib-cache" if opts.calib_cache else ""

    if has_qdq:
        if opts.precision != "int8":
            raise UsageError(f"{onnx_name} has Q/DQ nodes (explicit INT8): pass --precision int8 "
                             f"(got --precision {opts.precision}), or build the float ONNX")
        if calibration_options:
            raise UsageError(f"{onnx_name} is already calibrated (Q/DQ nodes): {calibration_options} applies "
                             "only to a float ONNX")
        if strong_available:
            strongly_typed = True
            notes.append("explicit INT8: scales from the Q/DQ nodes, built strongly typed; "
                         "layers without Q/DQ keep the ONNX's float types")
        else:
            flags.append("INT8")
            notes.append("explicit INT8 from the Q/DQ nodes (weakly typed: TensorRT < 9 has no strong typing)")
    elif fp16_onnx:
        if opts.precision != "fp16":
            raise UsageError(f"{onnx_name} is already FP16: pass --precision fp16 (got --precision "
                             f"{opts.precision}), or build the FP32 ONNX")
        if strong_available:
            strongly_typed = True
            notes.append("FP16 from the ONNX's own types, built strongly typed")
        else:
            flags.append("FP16")
    elif opts.precision == "fp32":
        strongly_typed = strong_available
        notes.append("FP32 (TF32 where the GPU has it)")
    elif opts.precision == "fp16":
        if weak_available:
            flags.append("FP16")
            notes.append("FP16 through BuilderFlag.FP16 (TensorRT picks FP16 or FP32 per layer)")
        else:
            strongly_typed = True
            convert = True
            notes.append(f"TensorRT {major} has no FP16 builder flag: built strongly typed from an FP16 copy of "
                         "the ONNX (box decode kept in FP32)")
    else:  # int8 on a float ONNX: implicit calibration
        if not weak_available:
            raise TritonForgeError(
                f"TensorRT {trt_version} removed implicit INT8 calibration (the IInt8*Calibrator classes and "
                "BuilderFlag.INT8): calibrate on the CPU with `tritonforge quantize --target tensorrt --data ...` "
                "and build the Q/DQ ONNX it writes with --precision int8")
        if not calibration_options:
            raise UsageError(f"--precision int8 on a float ONNX needs --calibrator KIND --data D or --calib-cache F "
                             f"(TensorRT {major} implicit INT8), or a Q/DQ ONNX from `tritonforge quantize "
                             "--target tensorrt`")
        flags += ["INT8", "FP16"]
        calibrator = opts.calibrator
        calib_cache = Path(opts.calib_cache) if opts.calib_cache else None
        notes.append("implicit INT8 (legacy calibrators, deprecated since TensorRT 10.1, removed in 11); "
                     "layers without INT8 scales run in FP16")

    device_type, dla_core = "GPU", None
    if opts.dla_core is not None:
        device_type, dla_core = "DLA", opts.dla_core
        flags.append("GPU_FALLBACK")
        notes.append(f"DLA core {opts.dla_core}: DLA runs FP16/INT8 layers only; the rest (and EfficientNMS) "
                     "falls back to the GPU (GPU_FALLBACK). Build on the Jetson that serves the plan")
    return BuildPlan(tensorrt=str(trt_version), strongly_typed=strongly_typed, flags=tuple(flags),
                     convert_fp16=convert, calibrator=calibrator, calib_cache=calib_cache,
                     explicit_int8=has_qdq, device_type=device_type, dla_core=dla_core, notes=tuple(notes))


def check_batch_range(fixed_batch: Optional[int], opts: BuildOptions, onnx_name: str = "the ONNX") -> None:
    """A fixed-batch ONNX can only be built for that batch."""
    if fixed_batch is not None and (opts.min_batch, opts.opt_batch, opts.max_batch) != (fixed_batch,) * 3:
        raise UsageError(f"{onnx_name} has a fixed batch size of {fixed_batch}: re-export it with a dynamic batch "
                         f"axis (`tritonforge export`) or pass --min-batch {fixed_batch} --opt-batch {fixed_batch} "
                         f"--max-batch {fixed_batch}")


def profile_shapes(opts: BuildOptions, height: int, width: int) -> Dict[str, List[int]]:
    """The one optimization profile: the batch range on the input's batch dim."""
    return {k: [b, 3, height, width] for k, b in (("min", opts.min_batch), ("opt", opts.opt_batch),
                                                   ("max", opts.max_batch))}


def nms_plugin_fields(opts: BuildOptions) -> List[Tuple[str, object, str]]:
    """EfficientNMS_TRT fields as (name, value, PluginFieldType member name).

    Scores are already probabilities (score_activation 0), boxes are cx, cy, w, h in
    network-input pixels (box_coding 1); NMS is per class like the server's postprocess.
    """
    return [
        ("score_threshold", float(opts.score_threshold), "FLOAT32"),
        ("iou_threshold", float(opts.iou_threshold), "FLOAT32"),
        ("max_output_boxes", int(opts.max_detections), "INT32"),
        ("background_class", -1, "INT32"),
        ("score_activation", 0, "INT32"),
        ("class_agnostic", 0, "INT32"),
        ("box_coding", NMS_BOX_CODING_CENTER_SIZE, "INT32"),
    ]


def nms_outputs(max_detections: int) -> List[dict]:
    """The plan's outputs with ``--nms`` (dims without the batch axis, as in config.pbtxt)."""
    d = int(max_detections)
    return [
        {"name": "num_detections", "data_type": "TYPE_INT32", "dims": [1]},
        {"name": "detection_boxes", "data_type": "TYPE_FP32", "dims": [d, 4]},  # x1, y1, x2, y2, input pixels
        {"name": "detection_scores", "data_type": "TYPE_FP32", "dims": [d]},
        {"name": "detection_classes", "data_type": "TYPE_INT32", "dims": [d]},
    ]


def triton_dtype(trt_dtype_name: str) -> str:
    name = str(trt_dtype_name).rsplit(".", 1)[-1]
    if name not in TRITON_DTYPES:
        raise TritonForgeError(f"TensorRT data type {trt_dtype_name!r} has no Triton equivalent here")
    return TRITON_DTYPES[name]


def format_parser_errors(onnx_path: Path, errors: Sequence[dict], node_names: Sequence[str] = (),
                         node_ops: Sequence[str] = ()) -> str:
    """One line per TensorRT ONNX parser error, naming the node (by name, else by index)."""
    lines = [f"TensorRT could not parse {onnx_path} ({len(errors)} error{'s' if len(errors) != 1 else ''}):"]
    for e in errors:
        index = e.get("node", -1)
        name = e.get("node_name") or (node_names[index] if 0 <= index < len(node_names) else "")
        op = e.get("node_operator") or (node_ops[index] if 0 <= index < len(node_ops) else "")
        where = f"node {name!r} ({op})" if name else f"node #{index} ({op})" if index >= 0 else "model"
        lines.append(f"  {where}: {e.get('desc', '').strip()}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- build.json


def build_info_path(plan_path: Path) -> Path:
    """``dir/model.plan`` -> ``dir/build.json``."""
    return Path(plan_path).with_name(BUILD_INFO_NAME)


def read_build_info(plan_path: Path) -> Optional[dict]:
    """The ``build.json`` written beside ``plan_path`` by ``tritonforge build``, or None.

    Top-level keys always there: ``precision`` (fp32|fp16|int8), ``min_batch``,
    ``opt_batch``, ``max_batch``, ``nms`` (bool: EfficientNMS inside the plan); with NMS
    also ``score_threshold``, ``iou_threshold``, ``max_detections`` (else None) and
    ``nms_settings``. Raises UsageError when it is unreadable, lacks those keys, or was
    written for another plan (its recorded sha256 differs: the plan was rebuilt since).
    """
    plan_path = Path(plan_path)
    path = build_info_path(plan_path)
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable build record ({exc})") from exc
    if not isinstance(info, dict):
        raise UsageError(f"{path}: not a tritonforge build record")
    missing = [k for k in BUILD_INFO_REQUIRED if k not in info]
    if missing:
        raise UsageError(f"{path}: not a tritonforge build record (no {', '.join(missing)})")
    recorded = (info.get("plan") or {}).get("sha256") if isinstance(info.get("plan"), dict) else None
    if recorded and plan_path.is_file() and recorded != _sha256(plan_path):
        raise UsageError(f"{path} describes another plan than {plan_path} (sha256 differs): rebuild with "
                         "`tritonforge build` or delete the stale record")
    return info


def make_build_info(*, onnx_path: Path, onnx_sha256: str, plan_path: Path, plan_bytes: bytes, opts: BuildOptions,
                    plan: BuildPlan, gpu: dict, sig, profile: Dict[str, List[int]], inputs: List[dict],
                    outputs: List[dict], command: str, seconds: float, calibration: Optional[dict] = None,
                    notes: Sequence[str] = ()) -> dict:
    """The build record: everything needed to know what the plan is and to rebuild it."""
    nms_settings = None
    if opts.nms:
        nms_settings = {"plugin": NMS_PLUGIN[0], "plugin_version": NMS_PLUGIN[1],
                        "score_threshold": opts.score_threshold, "iou_threshold": opts.iou_threshold,
                        "max_detections": opts.max_detections, "box_coding": "center_size", "class_agnostic": False,
                        "boxes": "x1,y1,x2,y2 network-input pixels", "outputs": list(NMS_OUTPUTS),
                        "replaces_output": sig.output_name}
    return {
        "format": BUILD_INFO_FORMAT,
        "tensorrt": plan.tensorrt,
        "gpu": gpu,
        "precision": opts.precision,
        "min_batch": opts.min_batch,
        "opt_batch": opts.opt_batch,
        "max_batch": opts.max_batch,
        "nms": bool(opts.nms),
        "score_threshold": opts.score_threshold if opts.nms else None,
        "iou_threshold": opts.iou_threshold if opts.nms else None,
        "max_detections": opts.max_detections if opts.nms else None,
        "nms_settings": nms_settings,
        "dla_core": opts.dla_core,
        "profile": {"input": sig.input_name, **profile},
        "inputs": inputs,
        "outputs": outputs,
        "image_size": [sig.height, sig.width],
        "num_classes": sig.num_classes,
        "names": list(sig.names),
        "strategy": plan.to_json(),
        "calibration": calibration,
        "options": opts.to_json(),
        "onnx": {"file": Path(onnx_path).name, "sha256": onnx_sha256},
        "plan": {"file": Path(plan_path).name, "sha256": hashlib.sha256(plan_bytes).hexdigest(),
                 "bytes": len(plan_bytes)},
        "command": command,
        "seconds": round(seconds, 1),
        "notes": list(notes),
    }


def canonical_command(onnx: Path, out: Path, opts: BuildOptions) -> str:
    """The ``tritonforge build`` command line that reproduces ``opts``."""
    args = ["tritonforge", "build", "--onnx", str(onnx), "--out", str(out), "--precision", opts.precision,
            "--min-batch", str(opts.min_batch), "--opt-batch", str(opts.opt_batch), "--max-batch", str(opts.max_batch)]
    for flag, value in (("--workspace", opts.workspace), ("--timing-cache", opts.timing_cache),
                        ("--dla-core", opts.dla_core), ("--calibrator", opts.calibrator), ("--data", opts.data),
                        ("--calib-cache", opts.calib_cache)):
        if value is not None:
            args += [flag, str(value)]
    if opts.nms:
        args += ["--nms", "--score-threshold", f"{opts.score_threshold:g}", "--iou-threshold",
                 f"{opts.iou_threshold:g}", "--max-detections", str(opts.max_detections)]
    return shlex.join(args)


# --------------------------------------------------------------------------- GPU


CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76


def cuda_device(index: int = 0) -> dict:
    """Name and compute capability of CUDA device ``index``, from the driver (libcuda) via ctypes.

    Raises TritonForgeError when there is no driver or no device: plans are built on the
    GPU that will run them.
    """
    import ctypes

    hint = ("`tritonforge build` needs an NVIDIA GPU with its driver, on the machine (or the same GPU model and "
            "TensorRT version) that will serve the plan")
    lib = None
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None:
        raise TritonForgeError(f"no CUDA driver found (libcuda.so.1): {hint}")
    rc = lib.cuInit(0)
    count = ctypes.c_int(0)
    if rc != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        raise TritonForgeError(f"no usable CUDA GPU (cuInit returned {rc}; check the driver and "
                               f"CUDA_VISIBLE_DEVICES): {hint}")
    device = ctypes.c_int(0)
    if lib.cuDeviceGet(ctypes.byref(device), index) != 0:
        raise TritonForgeError(f"CUDA device {index} not found ({count.value} visible)")
    buf = ctypes.create_string_buffer(256)
    lib.cuDeviceGetName(buf, 256, device)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    lib.cuDeviceGetAttribute(ctypes.byref(major), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device)
    lib.cuDeviceGetAttribute(ctypes.byref(minor), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device)
    return {"name": buf.value.decode("utf-8", "replace"), "compute_capability": f"{major.value}.{minor.value}"}


# --------------------------------------------------------------------------- the build


def build_plan(onnx: Path, out: Path, opts: BuildOptions, argv: Optional[Sequence[str]] = None,
               echo: Callable[[str], None] = lambda _: None) -> dict:
    """Build a TensorRT plan from ``onnx`` into ``out``; returns the build record, also
    written to ``build_info_path(out)``.

    ``argv``: the command line to record (default: the equivalent ``tritonforge build``
    command). Atomic: on any error nothing new is left at ``out`` or beside it.
    """
    from generator.export.signature import read_signature

    started = time.perf_counter()
    opts.validate()
    onnx, out = Path(onnx), Path(out)
    sig = read_signature(onnx)
    facts = onnx_facts(onnx)
    if out.is_dir():
        raise UsageError(f"--out must be a file (e.g. model.plan), got the folder {out}")
    if not out.parent.is_dir():
        raise UsageError(f"output folder does not exist: {out.parent}")
    if out.resolve() == onnx.resolve():
        raise UsageError(f"--out must differ from the input model ({onnx})")
    check_batch_range(facts.batch, opts, onnx.name)

    trt = require("tensorrt", "to build TensorRT plans")
    plan = plan_build(trt.__version__, facts.has_qdq, opts, fp16_onnx=facts.fp16, onnx_name=onnx.name)
    gpu = cuda_device()
    for note in plan.notes:
        echo(f"  {note}")

    command = shlex.join(list(argv)) if argv else canonical_command(onnx, out, opts)
    profile = profile_shapes(opts, sig.height, sig.width)
    timing_in = Path(opts.timing_cache).read_bytes() if opts.timing_cache and Path(opts.timing_cache).is_file() else b""
    with tempfile.TemporaryDirectory(prefix="tritonforge-build-") as work_dir:
        work = Path(work_dir)
        source = onnx
        if plan.convert_fp16:
            from generator.compress.quantize import convert_fp16

            echo("converting the ONNX to FP16 (strongly typed build)")
            source = convert_fp16(onnx, work / "fp16.onnx")
        calibrator, calibration = _calibrator(plan, opts, sig, work, echo)
        echo(f"building on {gpu['name']} (compute {gpu['compute_capability']}) with TensorRT {trt.__version__}; "
             "this takes a while")
        result = _build_engine(trt, source, sig, opts, plan, profile, calibrator, timing_in)
        if calibration is not None and plan.calibrator and (work / "calib.cache").is_file():
            calibration["cache_file"] = CALIBRATION_CACHE_NAME
            calib_bytes = (work / "calib.cache").read_bytes()
        else:
            calib_bytes = None

    info = make_build_info(onnx_path=onnx, onnx_sha256=_sha256(onnx), plan_path=out, plan_bytes=result.plan,
                           opts=opts, plan=plan, gpu=gpu, sig=sig, profile=profile, inputs=result.inputs,
                           outputs=result.outputs, command=command, seconds=time.perf_counter() - started,
                           calibration=calibration, notes=list(plan.notes) + result.notes)
    files = [(out, result.plan),  # raw serialized engine, no header: Triton's tensorrt_plan refuses plans with one
             (build_info_path(out), (json.dumps(info, indent=2) + "\n").encode())]
    if calib_bytes is not None:
        files.append((out.with_name(CALIBRATION_CACHE_NAME), calib_bytes))  # reuse with --calib-cache
    if opts.timing_cache and result.timing_cache:
        files.append((Path(opts.timing_cache), result.timing_cache))
    _write_all(files)
    return info


def _calibrator(plan: BuildPlan, opts: BuildOptions, sig, work: Path, echo):
    """The legacy INT8 calibrator for an implicit-INT8 plan (None otherwise) and its record."""
    if not (plan.calibrator or plan.calib_cache):
        return None, None
    from generator.compress.trt_calibrators import make_calibrator

    if plan.calibrator:
        from generator.compress.calibration import calibration_images

        images = calibration_images(Path(opts.data), sig.height, sig.width, opts.calibration_images)
        batch = min(opts.opt_batch, len(images))
        echo(f"calibrating ({plan.calibrator}) on {len(images)} images from {opts.data}, batch {batch}")
        calib = make_calibrator(plan.calibrator, images, work / "calib.cache", batch_size=batch)
        return calib, {"calibrator": plan.calibrator, "images": int(len(images)), "batch": batch,
                       "data": str(opts.data)}
    kind = calibrator_of_cache(plan.calib_cache)
    cache = work / "calib.cache"  # a copy: TensorRT may rewrite it, the user's file stays as is
    shutil.copyfile(plan.calib_cache, cache)
    placeholder = np.zeros((1, 3, sig.height, sig.width), np.float32)
    calib = make_calibrator(kind, placeholder, cache, batch_size=1)
    calib.index = len(placeholder)  # no batches: if TensorRT rejects the cache it fails instead of calibrating on zeros
    echo(f"INT8 scales from {plan.calib_cache} ({kind})")
    return calib, {"calibrator": kind, "cache": str(plan.calib_cache), "cache_sha256": _sha256(plan.calib_cache),
                   "batch": 1}


@dataclass
class _EngineResult:
    plan: bytes
    timing_cache: bytes
    inputs: List[dict]
    outputs: List[dict]
    notes: List[str] = field(default_factory=list)


def _build_engine(trt, onnx_path: Path, sig, opts: BuildOptions, plan: BuildPlan, profile: Dict[str, List[int]],
                  calibrator, timing_in: bytes) -> _EngineResult:
    """The TensorRT part: parse, profile, flags, optional NMS, build. Decisions come from ``plan``."""
    major, _ = tensorrt_version(trt.__version__)
    logger = _logger(trt)
    trt.init_libnvinfer_plugins(trt.Logger(trt.Logger.WARNING), "")  # registers EfficientNMS_TRT & co.
    builder = trt.Builder(logger)
    if builder is None:
        raise TritonForgeError("TensorRT could not create a builder (no CUDA device?): " + logger.last_errors())
    flags = 0
    if plan.strongly_typed and major < WEAK_TYPING_REMOVED_IN:  # always on (flag deprecated) from TensorRT 11
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise TritonForgeError(_parser_error_text(parser, onnx_path))

    notes: List[str] = []
    keep = []  # numpy buffers TensorRT reads at build time
    if opts.nms:
        _add_nms(trt, network, sig, opts, keep)

    config = builder.create_builder_config()
    if opts.workspace:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace) << 20)
    for name in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if plan.device_type == "DLA":
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(plan.dla_core)
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(sig.input_name, profile["min"], profile["opt"], profile["max"])
    config.add_optimization_profile(opt_profile)
    if calibrator is not None:
        shape = [calibrator.get_batch_size(), 3, sig.height, sig.width]
        calib_profile = builder.create_optimization_profile()
        calib_profile.set_shape(sig.input_name, shape, shape, shape)
        config.set_calibration_profile(calib_profile)
        config.int8_calibrator = calibrator

    try:
        cache = config.create_timing_cache(timing_in)
    except Exception:  # noqa: BLE001 - a corrupt cache file only costs the reuse
        cache = None
    if cache is None or not config.set_timing_cache(cache, False):
        notes.append("the timing cache was made for another GPU or TensorRT version: started a fresh one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TritonForgeError(f"TensorRT failed to build {onnx_path.name}: {logger.last_errors() or 'no detail'}")
    timing_out = bytes(config.get_timing_cache().serialize())
    inputs = [_io_entry(network.get_input(i)) for i in range(network.num_inputs)]
    outputs = [_io_entry(network.get_output(i)) for i in range(network.num_outputs)]
    return _EngineResult(bytes(serialized), timing_out, inputs, outputs, notes)


def _add_nms(trt, network, sig, opts: BuildOptions, keep: list) -> None:
    """``[N, 4+C, A]`` -> boxes ``[N, A, 4]`` + scores ``[N, A, C]`` -> EfficientNMS_TRT; its four
    outputs replace the raw output."""
    raw = next((network.get_output(i) for i in range(network.num_outputs)
                if network.get_output(i).name == sig.output_name), None)
    if raw is None:
        raise TritonForgeError(f"the parsed network has no output {sig.output_name!r}")
    registry = trt.get_plugin_registry()
    # EfficientNMS_TRT 1 is an IPluginV2 plugin: get_plugin_creator (deprecated since 10.0) hands back
    # the V2 creator type; get_creator where that is gone
    get = getattr(registry, "get_plugin_creator", None) or registry.get_creator
    creator = get(NMS_PLUGIN[0], NMS_PLUGIN[1], "")
    if creator is None:
        raise TritonForgeError(f"TensorRT plugin {NMS_PLUGIN[0]} version {NMS_PLUGIN[1]} is not registered "
                               "(libnvinfer_plugin missing?): install TensorRT's plugin library or build without --nms")

    def indices(values):
        array = np.asarray(list(values), dtype=np.int32)
        keep.append(array)
        return network.add_constant(array.shape, trt.Weights(array)).get_output(0)

    def to_anchor_major(tensor):  # [N, K, A] -> [N, A, K]
        layer = network.add_shuffle(tensor)
        layer.first_transpose = (0, 2, 1)
        return layer.get_output(0)

    boxes = to_anchor_major(network.add_gather(raw, indices(range(4)), 1).get_output(0))
    scores = to_anchor_major(network.add_gather(raw, indices(range(4, 4 + sig.num_classes)), 1).get_output(0))
    fields = []
    for name, value, kind in nms_plugin_fields(opts):
        array = np.array([value], dtype=np.float32 if kind == "FLOAT32" else np.int32)
        keep.append(array)
        fields.append(trt.PluginField(name, array, getattr(trt.PluginFieldType, kind)))
    collection = trt.PluginFieldCollection(fields)
    if hasattr(trt, "IPluginCreatorV3One") and isinstance(creator, trt.IPluginCreatorV3One):
        plugin = creator.create_plugin("nms", collection, trt.TensorRTPhase.BUILD)
        layer = network.add_plugin_v3([boxes, scores], [], plugin)
    else:
        plugin = creator.create_plugin("nms", collection)
        layer = network.add_plugin_v2([boxes, scores], plugin)
    if plugin is None or layer is None:
        raise TritonForgeError(f"TensorRT could not create the {NMS_PLUGIN[0]} layer")
    network.unmark_output(raw)
    for i, name in enumerate(NMS_OUTPUTS):
        tensor = layer.get_output(i)
        tensor.name = name
        network.mark_output(tensor)


def _io_entry(tensor) -> dict:
    dims = [int(d) for d in tuple(tensor.shape)[1:]]
    return {"name": tensor.name, "data_type": triton_dtype(getattr(tensor.dtype, "name", str(tensor.dtype))),
            "dims": dims}


def _parser_error_text(parser, onnx_path: Path) -> str:
    import onnx

    errors = []
    for i in range(parser.num_errors):
        e = parser.get_error(i)
        entry = {"desc": e.desc(), "node": int(e.node())}
        for attr in ("node_name", "node_operator"):  # TensorRT >= 10
            if hasattr(e, attr):
                entry[attr] = getattr(e, attr)()
        errors.append(entry)
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return format_parser_errors(onnx_path, errors, [n.name for n in graph.node], [n.op_type for n in graph.node])


def _logger(trt):
    """A TensorRT logger that prints warnings and errors and remembers the errors."""

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: List[str] = []

        def log(self, severity, msg):
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                print(f"[TensorRT] {msg}", file=sys.stderr)
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(str(msg))

        def last_errors(self, n: int = 5) -> str:
            return "; ".join(self.errors[-n:])

    return Logger()


# --------------------------------------------------------------------------- files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_all(files: Sequence[Tuple[Path, bytes]]) -> None:
    """Write each file to a temporary sibling, then rename them all; on failure remove what
    this call wrote (temporaries and already-renamed new files)."""
    tmps: List[Tuple[Path, Path]] = []
    done: List[Path] = []
    try:
        for path, data in files:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmps.append((tmp, path))
            tmp.write_bytes(data)
        for tmp, path in tmps:
            tmp.replace(path)
            done.append(path)
    except BaseException:
        for tmp, _ in tmps:
            tmp.unlink(missing_ok=True)
        for path in done:
            path.unlink(missing_ok=True)
        raise
