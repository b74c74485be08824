"""``build.json``: the record ``tritonforge build`` writes beside the plan.

Everything needed to know what the plan is and to rebuild it; the ``gpu``/``jetson``
targets and ``bench`` read it back (``read_build_info``).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from generator.errors import UsageError
from generator.export.tensorrt.nms import NMS_OUTPUTS, NMS_PLUGIN
from generator.export.tensorrt.options import BuildOptions
from generator.export.tensorrt.strategy import BuildStrategy

BUILD_INFO_FORMAT = "tritonforge.build/1"
BUILD_INFO_NAME = "build.json"  # beside the plan: one plan per folder (Triton's <model>/<version>/model.plan)
CALIBRATION_CACHE_NAME = "calibration.cache"  # beside the plan, after implicit INT8 calibration
BUILD_INFO_REQUIRED = ("precision", "min_batch", "opt_batch", "max_batch", "nms")


def build_info_path(plan_path: Path) -> Path:
    """``dir/model.plan`` -> ``dir/build.json``."""
    return Path(plan_path).with_name(BUILD_INFO_NAME)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (plans and ONNX files are large)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
    recorded = info["plan"].get("sha256") if isinstance(info.get("plan"), dict) else None
    if recorded and plan_path.is_file() and recorded != file_sha256(plan_path):
        raise UsageError(f"{path} describes another plan than {plan_path} (sha256 differs): rebuild with "
                         "`tritonforge build` or delete the stale record")
    return info


def make_build_info(*, onnx_path: Path, onnx_sha256: str, plan_path: Path, plan_bytes: bytes, opts: BuildOptions,
                    strategy: BuildStrategy, gpu: dict, sig, profile: Dict[str, List[int]], inputs: List[dict],
                    outputs: List[dict], command: str, seconds: float, calibration: Optional[dict] = None,
                    notes: Sequence[str] = ()) -> dict:
    """The build record: everything needed to know what the plan is and to rebuild it."""
    return {
        "format": BUILD_INFO_FORMAT,
        "tensorrt": strategy.tensorrt,
        "gpu": gpu,
        "precision": opts.precision,
        "min_batch": opts.min_batch,
        "opt_batch": opts.opt_batch,
        "max_batch": opts.max_batch,
        "nms": bool(opts.nms),
        "score_threshold": opts.score_threshold if opts.nms else None,
        "iou_threshold": opts.iou_threshold if opts.nms else None,
        "max_detections": opts.max_detections if opts.nms else None,
        "nms_settings": _nms_settings(opts, sig.output_name) if opts.nms else None,
        "dla_core": opts.dla_core,
        "profile": {"input": sig.input_name, **profile},
        "inputs": inputs,
        "outputs": outputs,
        "image_size": [sig.height, sig.width],
        "num_classes": sig.num_classes,
        "names": list(sig.names),
        "strategy": strategy.to_json(),
        "calibration": calibration,
        "options": opts.to_json(),
        "onnx": {"file": Path(onnx_path).name, "sha256": onnx_sha256},
        "plan": {"file": Path(plan_path).name, "sha256": hashlib.sha256(plan_bytes).hexdigest(),
                 "bytes": len(plan_bytes)},
        "command": command,
        "seconds": round(seconds, 1),
        "notes": list(notes),
    }


def _nms_settings(opts: BuildOptions, replaced_output: str) -> dict:
    return {"plugin": NMS_PLUGIN[0], "plugin_version": NMS_PLUGIN[1], "score_threshold": opts.score_threshold,
            "iou_threshold": opts.iou_threshold, "max_detections": opts.max_detections, "box_coding": "center_size",
            "class_agnostic": False, "boxes": "x1,y1,x2,y2 network-input pixels", "outputs": list(NMS_OUTPUTS),
            "replaces_output": replaced_output}


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
