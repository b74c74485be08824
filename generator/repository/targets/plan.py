"""The TensorRT plan of a generation: one built elsewhere and put in place (``--plan``,
matched to its ``build.json``), or the spec of the build ``build_plans.sh`` will run."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from generator.errors import UsageError


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


def plan_spec(onnx: Path, opts) -> PlanSpec:
    """The build a generated ``build_plans.sh`` will run (``opts``: TensorRT options),
    checked by ``tritonforge build``'s own rules before anything is written."""
    from generator.export.tensorrt.onnx_facts import onnx_has_qdq

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
        dla_core=getattr(opts, "dla_core", None), qdq=qdq,
        calib_cache="calibration.cache" if opts.calib_cache is not None else None,
    )
    _check_buildable(spec, opts.calib_cache)
    return spec


def _check_buildable(spec: PlanSpec, calib_cache: Optional[Path]) -> None:
    """``tritonforge build`` would accept this spec (same messages as the build command)."""
    from generator.export.tensorrt.options import BuildOptions

    BuildOptions(precision=spec.precision, min_batch=spec.min_batch, opt_batch=spec.opt_batch,
                 max_batch=spec.max_batch, workspace=spec.workspace_mib, dla_core=spec.dla_core,
                 calib_cache=calib_cache, nms=spec.nms == "engine", score_threshold=spec.score_threshold,
                 iou_threshold=spec.iou_threshold, max_detections=spec.max_detections).validate()


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
    from generator.export.tensorrt.record import read_build_info

    return read_build_info(plan)


# options that NMS built into the plan fixes (option field = build.json key)
_ENGINE_NMS_FIXED = ("max_detections", "score_threshold", "iou_threshold")


def reconcile_with_plan(opts, info: Optional[dict], plan: Path):
    """Options that match the plan's build: its profile bounds max batch; NMS built into
    the plan fixes the thresholds and the detection count. Conflicts are errors."""
    if info is None:
        return opts
    plan_max = int(info["max_batch"])
    if opts.max_batch_size > plan_max:
        raise UsageError(f"--max-batch {opts.max_batch_size} exceeds the profile of --plan {plan} "
                         f"(max batch {plan_max}, from its build.json)")
    plan_nms = "engine" if info.get("nms") else "postprocess"
    if opts.nms not in (None, plan_nms):
        raise UsageError(f"--nms {opts.nms}: --plan {plan} was built with "
                         f"{'engine NMS' if plan_nms == 'engine' else 'no NMS inside'} (its build.json)")
    changes = {"nms": plan_nms}
    if plan_nms == "engine":
        changes.update(_engine_nms_values(opts, info, plan))
    return dataclasses.replace(opts, **changes)


def _engine_nms_values(opts, info: dict, plan: Path) -> dict:
    """The plan's NMS settings; a value the user set to something else is an error."""
    defaults = {f.name: f.default for f in dataclasses.fields(opts)}
    values = {}
    for key in _ENGINE_NMS_FIXED:
        want = type(defaults[key])(info[key])
        if getattr(opts, key) not in (defaults[key], want):
            raise UsageError(f"--{key.replace('_', '-')} {getattr(opts, key)}: --plan {plan} has NMS built in with {want}")
        values[key] = want
    return values
