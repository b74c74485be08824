"""``quantize_onnx``: an INT8 explicit-Q/DQ copy of a detector ONNX, plus optionally a
TensorRT calibration cache from the same statistics.

Explicit Q/DQ is the portable INT8 path: ONNX Runtime runs it on the CPU, TensorRT builds
it as explicit quantization (its implicit INT8 calibrators were deprecated in 10.1 and
removed in 11). The steps live in ``graph`` (what stays float), ``qdq`` (ONNX Runtime
calibration and quantization) and ``export.tensorrt.calib_cache`` (the cache format).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from generator._lazy import require
from generator.atomic import atomic_paths
from generator.compress.config import QuantizeConfig
from generator.compress.quantize import qdq
from generator.compress.quantize.graph import REASON_USER, ExcludedNode, excluded_nodes, tensor_order
from generator.compress.quantize.report import QuantReport
from generator.compress.quantize.tuning import Plan, tune, validation_split
from generator.errors import TritonForgeError, UsageError
from generator.evaluation.ort_only import QUANTIZE_HINT, refuse_trt_plugin
from generator.export.tensorrt.calib_cache import tensor_amax, trt_cache_header_for, write_trt_cache
from generator.reproducer import write_reproducer


@dataclass
class _Outcome:
    """What the quantization run produced, for the report."""

    excluded: List[ExcludedNode]
    quantized: List[str]
    qdq_nodes: int
    preprocess: str
    calibration_seconds: float
    cache_tensors: int
    warnings: List[str]
    selection: Any = None
    accuracy: Any = None


def quantize_onnx(onnx_in: Path, out: Path, calib: np.ndarray, config: Optional[QuantizeConfig] = None, *,
                  command: Optional[Sequence[str]] = None, read_options: Optional[dict] = None,
                  validation=None, echo: Optional[Callable[[str], None]] = None) -> QuantReport:
    """Write an INT8 explicit-Q/DQ copy of ``onnx_in`` to ``out``, calibrated on ``calib``.

    ``calib`` is ``[N, 3, H, W]`` float32 as the server feeds the model
    (``compress.calibration.calibration_images``); ``config`` the options (default:
    ``QuantizeConfig()``, entropy calibration for ONNX Runtime on x86). ``command``: the
    command recorded in the reproducer ``out.quantize.json``. ``read_options``: keywords of
    ``export.signature.read_signature`` (``layout``, ``imgsz``, ``scores``) for a model
    whose layout or input size its outputs and metadata do not tell.

    Any output layout: the head's output layers and the decode / TopK / NMS tail after them
    stay float (``graph.sensitive_nodes``); the source's metadata (class names, image
    size, layout hints) is kept. A graph with a TensorRT-only node (EfficientNMS_TRT) is
    refused: ONNX Runtime cannot run it to calibrate.

    ``config.select == "measured"`` keeps float what does not get faster on
    ``config.runtime`` (``select``); ``config.max_drop`` returns the most sensitive layers
    to float until the mAP50-95 drop on ``validation`` (a ``DetectionData``, the val
    split) is within it (``accuracy``). ``echo`` receives progress lines.

    Atomic: on any error nothing is left at ``out`` (nor at ``config.trt_cache``).
    """
    cfg = config or QuantizeConfig()
    started = time.perf_counter()
    ort = require("onnxruntime", "to quantize")
    onnx_in, out = Path(onnx_in), Path(out)
    sig, calib, source = _check_inputs(onnx_in, out, calib, cfg, read_options or {})
    if cfg.max_drop is not None and validation is None:
        raise UsageError("--max-drop measures mAP on the validation split: pass --data with a labelled val split "
                         "(a data YAML / dataset folder with a val split, or a COCO JSON)")
    plan = Plan(cfg, sig, onnx_in, validation, echo)
    outputs = [out] + ([cfg.trt_cache] if cfg.trt_cache else [])
    with _nothing_written(onnx_in), atomic_paths(*outputs) as tmps:
        outcome = _run(onnx_in, source, sig, calib, cfg, tmps, plan)
    report = QuantReport(
        path=out, source=onnx_in, method=cfg.method, per_channel=cfg.per_channel,
        activation_type=cfg.activation_type, weight_type=cfg.weight_type, calibration_images=int(len(calib)),
        seconds=time.perf_counter() - started, calibration_seconds=outcome.calibration_seconds,
        excluded=outcome.excluded, quantized_nodes=outcome.quantized, qdq_nodes=outcome.qdq_nodes,
        preprocess=outcome.preprocess, trt_cache=cfg.trt_cache, trt_cache_tensors=outcome.cache_tensors,
        warnings=outcome.warnings, onnxruntime=ort.__version__, selection=outcome.selection,
        accuracy=outcome.accuracy,
    )
    _write_reproducer(out, cfg.options(len(calib)), report, command)
    return report


def quantize_from_images(onnx_in: Path, out: Path, data: Path, samples: int,
                         config: Optional[QuantizeConfig] = None, *, command: Optional[Sequence[str]] = None,
                         read_options: Optional[dict] = None,
                         echo: Optional[Callable[[str], None]] = None) -> QuantReport:
    """``quantize_onnx`` calibrated on ``samples`` images of ``data`` (a dataset's train
    split or a folder of images), preprocessed as the server does for this model (its
    input size, possibly non-square, and input format): ``tritonforge quantize``. With
    ``config.max_drop``, ``data`` must be a dataset with a val split (accuracy control
    validates on it)."""
    from generator.compress.calibration import calibration_images, dataset_names
    from generator.evaluation.ort_only import read_for_dataset

    sig = read_for_dataset(Path(onnx_in), dataset_names(data), read_options or {})
    read_options = {**(read_options or {}), "labels": list(sig.names)}  # what was read, for quantize_onnx
    validation = validation_split(Path(data), sig) if config is not None and config.max_drop is not None else None
    refuse_trt_plugin(Path(onnx_in), sig, "to calibrate it", QUANTIZE_HINT)
    calib = calibration_images(data, sig.height, sig.width, samples, num_classes=sig.num_classes,
                               input_format=sig.input_format)
    return quantize_onnx(onnx_in, out, calib, config, command=command, read_options=read_options,
                         validation=validation, echo=echo)


def _check_inputs(onnx_in: Path, out: Path, calib: np.ndarray, cfg: QuantizeConfig, read_options: dict):
    """(signature, calibration images, source model) after every check that needs no work."""
    import onnx

    from generator.export.signature import read_signature

    sig = read_signature(onnx_in, **read_options)
    refuse_trt_plugin(onnx_in, sig, "to calibrate it", QUANTIZE_HINT)
    if sig.input_dtype != "FP32":
        raise UsageError(f"{onnx_in}: input is {sig.input_dtype}; quantize the FP32 model")
    calib = qdq.check_calibration(calib, sig)
    if not out.parent.is_dir():
        raise UsageError(f"output folder does not exist: {out.parent}")
    if out.resolve() == onnx_in.resolve():
        raise UsageError(f"--out must differ from the input model ({onnx_in})")
    if cfg.trt_cache is not None and not cfg.trt_cache.parent.is_dir():
        raise UsageError(f"output folder does not exist: {cfg.trt_cache.parent}")
    source = onnx.load(str(onnx_in))
    if any(n.op_type in qdq.QDQ_OPS for n in source.graph.node):
        raise UsageError(f"{onnx_in}: already quantized (has QuantizeLinear/DequantizeLinear nodes)")
    return sig, calib, source


@contextlib.contextmanager
def _nothing_written(onnx_in: Path):
    """Unexpected failures (ONNX Runtime's, mostly) become a TritonForgeError saying so."""
    try:
        yield
    except (TritonForgeError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise TritonForgeError(f"quantization of {onnx_in} failed, nothing written: "
                               f"{type(exc).__name__}: {exc}") from exc


def _run(onnx_in: Path, source, sig, calib: np.ndarray, cfg: QuantizeConfig, tmps: List[Path],
         plan: Plan) -> _Outcome:
    """Calibrate, write the full Q/DQ model, decide what else stays float (``plan``: measured
    selection, accuracy control), write that model (and cache) to the temporaries ``tmps``,
    check it."""
    import onnx

    warnings: List[str] = []
    with tempfile.TemporaryDirectory(prefix="tritonforge-quant-") as work_dir:
        work = Path(work_dir)
        prepared, preprocess = qdq.prepare(onnx_in, work / "prepared.onnx")
        excluded = excluded_nodes(onnx.load(str(prepared)), cfg.keep_head_float, cfg.exclude)
        if cfg.keep_head_float and not any(e.reason != REASON_USER for e in excluded):
            warnings.append("found no head output convolution; nothing kept float besides --exclude")
        quant_ops = list(cfg.op_types) if cfg.op_types else qdq.default_op_types()
        t0 = time.perf_counter()
        ranges = qdq.calibrate(prepared, work, sig.input_name, calib, cfg.method,
                               None if cfg.trt_cache else quant_ops)
        calibration_seconds = time.perf_counter() - t0
        full = work / "full.onnx"
        qdq.write_qdq(prepared, full, ranges, work, sig.input_name, calib, cfg, quant_ops,
                      [e.name for e in excluded])
        tuned = tune(plan, onnx.load(str(full)), onnx.load(str(prepared)), source, calib, work)
        onnx.save(tuned.model, str(tmps[0]))
        excluded += tuned.excluded
    quantized, qdq_nodes = qdq.tag_and_count(tmps[0], cfg.options(len(calib)), source)
    qdq.check_runs(tmps[0], source, sig, calib)
    if not quantized:
        warnings.append("no node was quantized: the output runs like the FP32 model")
    cache_tensors = _write_cache(tmps[1], ranges, source, cfg) if cfg.trt_cache else 0
    return _Outcome(excluded, quantized, qdq_nodes, preprocess, calibration_seconds, cache_tensors, warnings,
                    tuned.selection, tuned.accuracy)


def _write_cache(path: Path, ranges, source, cfg: QuantizeConfig) -> int:
    """The TensorRT calibration cache from the same ranges, tensors in graph order."""
    amax = tensor_amax(ranges, tensor_order(source))
    return write_trt_cache(path, amax, cfg.trt_cache_header or trt_cache_header_for(cfg.method))


def _write_reproducer(out: Path, options: dict, report: QuantReport, command: Optional[Sequence[str]]) -> None:
    import onnx

    ort = require("onnxruntime")
    versions = {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "numpy": np.__version__}
    write_reproducer(out, "quantize", command, versions=versions, source=str(report.source), options=options,
                     report=report.to_json(), **versions)


def collect_ranges(onnx_in: Path, calib: np.ndarray, method: str = "entropy",
                   op_types: Optional[Sequence[str]] = None,
                   read_options: Optional[dict] = None) -> Dict[str, Tuple[float, float]]:
    """Per-tensor (min, max) ranges ONNX Runtime's ``method`` calibrator derives from
    ``calib`` (the statistics ``quantize_onnx`` and the TensorRT cache use), every float
    tensor of the graph unless ``op_types`` narrows it."""
    from generator.export.signature import read_signature

    require("onnxruntime", "to calibrate")
    sig = read_signature(Path(onnx_in), **(read_options or {}))
    refuse_trt_plugin(Path(onnx_in), sig, "to calibrate it", QUANTIZE_HINT)
    QuantizeConfig(method=method)  # validates the name
    calib = qdq.check_calibration(calib, sig)
    with tempfile.TemporaryDirectory(prefix="tritonforge-calib-") as work_dir:
        work = Path(work_dir)
        prepared, _ = qdq.prepare(Path(onnx_in), work / "prepared.onnx")
        ranges = qdq.calibrate(prepared, work, sig.input_name, calib, method, list(op_types) if op_types else None)
    return {name: (float(np.min(td.range_value[0])), float(np.max(td.range_value[1])))
            for name, td in ranges.items()}
