"""INT8 post-training quantization of a detector ONNX (explicit Q/DQ), FP16 conversion,
and TensorRT calibration caches from the same statistics.

Explicit Q/DQ is the portable INT8 path: ONNX Runtime runs it on the CPU, TensorRT builds
it as explicit quantization (its implicit INT8 calibrators were deprecated in 10.1 and
removed in 11). Calibration runs once, on the CPU with ONNX Runtime, over images
preprocessed exactly as the server does (``compress.calibration``).

The detection head's output convolutions and everything after them (DFL softmax and
expectation, anchor arithmetic, sigmoid, output concat) stay float by default: see
``sensitive_nodes``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import logging
import os
import shlex
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from generator._lazy import require
from generator.errors import TritonForgeError, UsageError

# CLI/API name -> onnxruntime.quantization.CalibrationMethod member
METHODS: Dict[str, str] = {"entropy": "Entropy", "minmax": "MinMax", "percentile": "Percentile"}
# CLI/API name -> onnxruntime.quantization.QuantType member
QUANT_TYPES: Dict[str, str] = {"uint8": "QUInt8", "int8": "QInt8"}
META_QUANTIZATION = "tritonforge.quantization"

REASON_HEAD_CONV = ("head output convolution (raw box distribution / class logits): quantizing it "
                    "costs accuracy and saves little time")
REASON_DFL = "box decode (DFL softmax and expectation): the distribution and its expectation need float range"
REASON_SCORES = ("class probabilities: int8 steps (~0.004) are coarser than the 0.001 score threshold "
                 "used for mAP and would merge low scores")
REASON_DECODE = ("box decode / output assembly: raw distributions, logits, pixel coordinates (up to the "
                 "image size) and probabilities (0..1) share these tensors; one int8 scale cannot cover them")
REASON_USER = "excluded by --exclude"

# ops that only move data around; used to see through them
_LAYOUT_OPS = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Split", "Slice",
               "Concat", "Gather"}


@dataclass(frozen=True)
class ExcludedNode:
    name: str
    op_type: str
    reason: str


@dataclass
class QuantReport:
    """What ``quantize_onnx`` did: options, what stayed float and why, timings."""

    path: Path
    source: Path
    method: str
    per_channel: bool
    activation_type: str
    weight_type: str
    calibration_images: int
    seconds: float
    calibration_seconds: float
    excluded: List[ExcludedNode] = field(default_factory=list)
    quantized_nodes: List[str] = field(default_factory=list)  # compute nodes with int8 weights
    qdq_nodes: int = 0  # QuantizeLinear + DequantizeLinear in the output model
    preprocess: str = ""
    trt_cache: Optional[Path] = None
    trt_cache_tensors: int = 0
    warnings: List[str] = field(default_factory=list)
    onnxruntime: str = ""

    @property
    def head_convs(self) -> List[str]:
        return [e.name for e in self.excluded if e.reason == REASON_HEAD_CONV]

    def summary(self) -> str:
        lines = [
            f"wrote {self.path}: INT8 Q/DQ ({self.method} calibration on {self.calibration_images} images, "
            f"activations {self.activation_type}, weights {self.weight_type}"
            f"{' per channel' if self.per_channel else ' per tensor'}) in {self.seconds:.1f} s "
            f"(calibration {self.calibration_seconds:.1f} s)",
            f"  {len(self.quantized_nodes)} nodes with int8 weights, {self.qdq_nodes} Q/DQ nodes",
        ]
        if self.excluded:
            lines.append(f"  kept float ({len(self.excluded)} nodes):")
            by_reason: Dict[str, List[ExcludedNode]] = {}
            for e in self.excluded:
                by_reason.setdefault(e.reason, []).append(e)
            for reason, nodes in by_reason.items():
                names = ", ".join(n.name for n in nodes[:8]) + (f", ... (+{len(nodes) - 8})" if len(nodes) > 8 else "")
                lines.append(f"    {len(nodes)} x {reason}: {names}")
        if self.trt_cache:
            lines.append(f"  TensorRT calibration cache: {self.trt_cache} ({self.trt_cache_tensors} tensors)")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "path": str(self.path), "source": str(self.source), "method": self.method,
            "per_channel": self.per_channel, "activation_type": self.activation_type,
            "weight_type": self.weight_type, "calibration_images": self.calibration_images,
            "seconds": round(self.seconds, 3), "calibration_seconds": round(self.calibration_seconds, 3),
            "excluded": [{"name": e.name, "op_type": e.op_type, "reason": e.reason} for e in self.excluded],
            "quantized_nodes": list(self.quantized_nodes), "qdq_nodes": self.qdq_nodes,
            "preprocess": self.preprocess,
            "trt_cache": str(self.trt_cache) if self.trt_cache else None,
            "trt_cache_tensors": self.trt_cache_tensors, "warnings": list(self.warnings),
            "onnxruntime": self.onnxruntime,
        }


# --------------------------------------------------------------------------- graph analysis


def sensitive_nodes(model) -> List[ExcludedNode]:
    """The detection head's output convolutions and the decode tail after them.

    Found from the graph, not from names: a *head output convolution* is a Conv that
    reaches the graph output without passing through another feature Conv (the DFL
    expectation, a Conv fed by a Softmax, does not count as one); the *tail* is every
    node that feeds no head output convolution (softmax, DFL, anchor arithmetic, sigmoid,
    concat). On an Ultralytics-style yolo export these are ``.../box.i.2/Conv``,
    ``.../cls.i.2/Conv`` and everything from the per-level Concat on.
    """
    nodes = list(model.graph.node)
    producer: Dict[str, int] = {}
    consumers: Dict[str, List[int]] = {}
    for i, node in enumerate(nodes):
        for t in node.output:
            producer[t] = i
        for t in node.input:
            if t:
                consumers.setdefault(t, []).append(i)
    graph_outputs = {o.name for o in model.graph.output}
    order = _topological_order(nodes, producer)
    decode_conv = {i for i, n in enumerate(nodes) if n.op_type == "Conv" and _fed_by_softmax(n, nodes, producer)}
    feature_conv = {i for i, n in enumerate(nodes) if n.op_type == "Conv" and i not in decode_conv}

    reaches_output = [False] * len(nodes)
    conv_below = [False] * len(nodes)  # a feature Conv somewhere downstream
    for i in reversed(order):
        succ = [j for t in nodes[i].output for j in consumers.get(t, ())]
        reaches_output[i] = any(t in graph_outputs for t in nodes[i].output) or any(reaches_output[j] for j in succ)
        conv_below[i] = any(j in feature_conv or conv_below[j] for j in succ)
    heads = [i for i in order if i in feature_conv and reaches_output[i] and not conv_below[i]]
    if not heads:
        return []

    feeds_head = set()  # ancestors of the head convolutions
    stack = [producer[t] for i in heads for t in nodes[i].input if t in producer]
    while stack:
        i = stack.pop()
        if i in feeds_head:
            continue
        feeds_head.add(i)
        stack.extend(producer[t] for t in nodes[i].input if t in producer)

    excluded = []
    for i in order:
        node = nodes[i]
        if i in heads:
            reason = REASON_HEAD_CONV
        elif i in feeds_head or not reaches_output[i]:
            continue
        elif i in decode_conv or node.op_type == "Softmax":
            reason = REASON_DFL
        elif node.op_type == "Sigmoid":
            reason = REASON_SCORES
        else:
            reason = REASON_DECODE
        excluded.append(ExcludedNode(node.name, node.op_type, reason))
    return excluded


def _topological_order(nodes, producer: Dict[str, int]) -> List[int]:
    """Node indices, producers before consumers (ONNX files are sorted; this checks)."""
    seen, order = set(), []
    for start in range(len(nodes)):
        stack = [(start, False)]
        while stack:
            i, done = stack.pop()
            if done:
                order.append(i)
                continue
            if i in seen:
                continue
            seen.add(i)
            stack.append((i, True))
            stack.extend((producer[t], False) for t in nodes[i].input if t in producer and producer[t] not in seen)
    return order


def _fed_by_softmax(node, nodes, producer: Dict[str, int], depth: int = 8) -> bool:
    """A Conv whose data input comes from a Softmax through layout-only ops (the DFL expectation)."""
    tensor = node.input[0]
    for _ in range(depth):
        i = producer.get(tensor)
        if i is None:
            return False
        if nodes[i].op_type == "Softmax":
            return True
        if nodes[i].op_type not in _LAYOUT_OPS or not nodes[i].input:
            return False
        tensor = nodes[i].input[0]
    return False


def resolve_excludes(model, patterns: Sequence[str]) -> List[str]:
    """Node names matching ``patterns`` (exact names or shell globs like ``/head/*``).

    A pattern that matches nothing is an error naming close matches.
    """
    import difflib

    names = [n.name for n in model.graph.node if n.name]
    found: List[str] = []
    for pattern in patterns:
        hits = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            close = difflib.get_close_matches(pattern, names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UsageError(f"--exclude {pattern!r} matches no node of the model{hint}")
        found.extend(h for h in hits if h not in found)
    return found


# --------------------------------------------------------------------------- quantization


def quantize_onnx(onnx_in: Path, out: Path, calib: np.ndarray, method: str = "entropy",
                  per_channel: bool = False, exclude: Sequence[str] = (), keep_head_float: bool = True,
                  activation_type: str = "uint8", weight_type: str = "int8",
                  trt_cache: Optional[Path] = None, op_types: Optional[Sequence[str]] = None,
                  trt_cache_header: Optional[str] = None) -> QuantReport:
    """Write an INT8 explicit-Q/DQ copy of ``onnx_in`` to ``out``, calibrated on ``calib``.

    ``calib`` is ``[N, 3, H, W]`` float32 as the server feeds the model
    (``compress.calibration.calibration_images``). ``method``: entropy, minmax or
    percentile. ``activation_type``/``weight_type``: uint8 or int8; int8 activations are
    quantized symmetrically (zero point 0), which TensorRT requires. ``exclude``: node
    names or globs kept float besides the head (``keep_head_float``). ``op_types``: the
    op types to quantize (default: all ONNX Runtime knows). ``trt_cache``: also write a
    TensorRT calibration cache from the same statistics.

    Atomic: on any error nothing is left at ``out``. Leaves ``out.quantize.json`` with
    the options and versions.
    """
    from generator.export.signature import read_signature

    started = time.perf_counter()
    ort = require("onnxruntime", "to quantize")
    import onnx
    from onnxruntime import quantization as oq

    onnx_in, out = Path(onnx_in), Path(out)
    sig = read_signature(onnx_in)
    calibrate_method = _choice(method, METHODS, "calibration method", oq.CalibrationMethod)
    act_qtype = _choice(activation_type, QUANT_TYPES, "activation type", oq.QuantType)
    w_qtype = _choice(weight_type, QUANT_TYPES, "weight type", oq.QuantType)
    if sig.input_dtype != "FP32":
        raise UsageError(f"{onnx_in}: input is {sig.input_dtype}; quantize the FP32 model")
    calib = _check_calibration(calib, sig)
    if not out.parent.is_dir():
        raise UsageError(f"output folder does not exist: {out.parent}")
    if out.resolve() == onnx_in.resolve():
        raise UsageError(f"--out must differ from the input model ({onnx_in})")
    if trt_cache is not None and not Path(trt_cache).parent.is_dir():
        raise UsageError(f"output folder does not exist: {Path(trt_cache).parent}")
    source = onnx.load(str(onnx_in))
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in source.graph.node):
        raise UsageError(f"{onnx_in}: already quantized (has QuantizeLinear/DequantizeLinear nodes)")

    tmp_out = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp_cache = Path(str(trt_cache) + f".{os.getpid()}.tmp") if trt_cache else None
    warnings: List[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="tritonforge-quant-") as work_dir:
            work = Path(work_dir)
            prepared, preprocess = _prepare(onnx_in, work / "prepared.onnx")
            model = onnx.load(str(prepared))
            excluded = sensitive_nodes(model) if keep_head_float else []
            if keep_head_float and not excluded:
                warnings.append("found no head output convolution; nothing kept float besides --exclude")
            taken = {e.name for e in excluded}
            excluded += [ExcludedNode(n, _op_of(model, n), REASON_USER)
                         for n in resolve_excludes(model, exclude) if n not in taken]
            quant_ops = list(op_types) if op_types else _default_op_types(oq)

            t0 = time.perf_counter()
            ranges = _calibrate(oq, prepared, work, sig.input_name, calib, calibrate_method,
                                None if trt_cache else quant_ops)
            calibration_seconds = time.perf_counter() - t0

            extra = {"ActivationSymmetric": activation_type == "int8", "WeightSymmetric": True}
            _quantize(oq, prepared, tmp_out, ranges, work, sig.input_name, calib, calibrate_method,
                      quant_ops, per_channel, act_qtype, w_qtype, [e.name for e in excluded], extra)
            options = {"method": method, "per_channel": per_channel, "activation_type": activation_type,
                       "weight_type": weight_type, "keep_head_float": keep_head_float,
                       "exclude": list(exclude), "op_types": list(op_types) if op_types else None,
                       "calibration_images": int(len(calib))}
            quantized, qdq = _finish(tmp_out, options)
            _check_runs(ort, tmp_out, sig, calib)
            if not quantized:
                warnings.append("no node was quantized: the output runs like the FP32 model")
            cache_tensors = 0
            if trt_cache:
                amax = tensor_amax(ranges, _tensor_order(source))
                header = trt_cache_header or trt_cache_header_for(method)
                cache_tensors = write_trt_cache(tmp_cache, amax, header)
        tmp_out.replace(out)
        if tmp_cache:
            tmp_cache.replace(trt_cache)
    except BaseException as exc:
        tmp_out.unlink(missing_ok=True)
        if tmp_cache:
            tmp_cache.unlink(missing_ok=True)
        if isinstance(exc, (TritonForgeError, KeyboardInterrupt)):
            raise
        if isinstance(exc, Exception):
            raise TritonForgeError(f"quantization of {onnx_in} failed, nothing written: "
                                   f"{type(exc).__name__}: {exc}") from exc
        raise
    report = QuantReport(
        path=out, source=onnx_in, method=method, per_channel=per_channel, activation_type=activation_type,
        weight_type=weight_type, calibration_images=int(len(calib)),
        seconds=time.perf_counter() - started, calibration_seconds=calibration_seconds,
        excluded=excluded, quantized_nodes=quantized, qdq_nodes=qdq, preprocess=preprocess,
        trt_cache=Path(trt_cache) if trt_cache else None, trt_cache_tensors=cache_tensors,
        warnings=warnings, onnxruntime=ort.__version__,
    )
    _write_reproducer(out, options, report)
    return report


def collect_ranges(onnx_in: Path, calib: np.ndarray, method: str = "entropy",
                   op_types: Optional[Sequence[str]] = None) -> Dict[str, Tuple[float, float]]:
    """Per-tensor (min, max) ranges ONNX Runtime's ``method`` calibrator derives from
    ``calib`` (the statistics ``quantize_onnx`` and the TensorRT cache use), every float
    tensor of the graph unless ``op_types`` narrows it."""
    from generator.export.signature import read_signature

    require("onnxruntime", "to calibrate")
    from onnxruntime import quantization as oq

    sig = read_signature(Path(onnx_in))
    calibrate_method = _choice(method, METHODS, "calibration method", oq.CalibrationMethod)
    calib = _check_calibration(calib, sig)
    with tempfile.TemporaryDirectory(prefix="tritonforge-calib-") as work_dir:
        work = Path(work_dir)
        prepared, _ = _prepare(Path(onnx_in), work / "prepared.onnx")
        ranges = _calibrate(oq, prepared, work, sig.input_name, calib, calibrate_method,
                            list(op_types) if op_types else None)
    return {name: (float(np.min(td.range_value[0])), float(np.max(td.range_value[1])))
            for name, td in ranges.items()}


def _choice(value: str, table: Dict[str, str], what: str, enum):
    key = str(value).lower()
    if key not in table:
        raise UsageError(f"unknown {what} {value!r}; choose one of: {', '.join(table)}")
    return getattr(enum, table[key])


def _check_calibration(calib: np.ndarray, sig) -> np.ndarray:
    calib = np.asarray(calib)
    want = (3, sig.height, sig.width)
    if calib.ndim != 4 or tuple(calib.shape[1:]) != want:
        raise UsageError(f"calibration images must be [N, {want[0]}, {want[1]}, {want[2]}] for this model, "
                         f"got {list(calib.shape)}")
    if len(calib) == 0:
        raise UsageError("calibration needs at least one image")
    if not np.isfinite(calib).all():
        raise UsageError("calibration images contain NaN or infinite values")
    return np.ascontiguousarray(calib, dtype=np.float32)


def _op_of(model, name: str) -> str:
    return next((n.op_type for n in model.graph.node if n.name == name), "")


def _default_op_types(oq) -> List[str]:
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def _prepare(onnx_in: Path, prepared: Path) -> Tuple[Path, str]:
    """ORT's quantization pre-processing (ONNX shape inference + graph optimization), or the
    model as is when that fails. Unnamed nodes get names so they can be excluded.

    Symbolic shape inference is skipped: it fails on these graphs (Resize under a dynamic
    batch) and, when it fails, ORT dumps ``sym_shape_infer_temp.onnx`` plus a 10 MB
    ``<uuid>.data`` into the current directory. ONNX shape inference is enough for CNNs.
    """
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    status = "quant_pre_process (onnx shape inference + ORT basic optimizations)"
    try:
        with _quiet():
            quant_pre_process(str(onnx_in), str(prepared), skip_symbolic_shape=True)
    except Exception as exc:  # noqa: BLE001 - any failure here only costs the optimization
        status = f"pre-processing skipped ({type(exc).__name__}: {str(exc)[:120]})"
        prepared.unlink(missing_ok=True)
    model = onnx.load(str(prepared if prepared.exists() else onnx_in))
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_tf{i}"
    onnx.save(model, str(prepared))
    return prepared, status


@contextlib.contextmanager
def _quiet():
    """ORT's calibrators print progress and log hints; keep the CLI's output ours."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


CALIBRATION_MEMORY = 1 << 30  # bytes of intermediate outputs ORT may hold per collection
# ORT's own defaults per method (quantize_static passes none); entropy's 128 histogram bins
# for 128 quantized bins leave it one candidate threshold, so it clips almost nothing
CALIBRATOR_OPTIONS: Dict[str, dict] = {"entropy": {}, "minmax": {}, "percentile": {}}


def _calibrate(oq, prepared: Path, work: Path, input_name: str, calib: np.ndarray, calibrate_method,
               op_types: Optional[List[str]]):
    """Tensor ranges over ``calib``: one image per run (ORT's histogram calibrators stack
    the runs' outputs, so batches must all have one size), collected in chunks so memory
    stays bounded: ORT keeps every intermediate output of a collection (~550 MB per image
    for yolo-n at 640 px)."""
    from onnxruntime.quantization.calibrate import create_calibrator

    from generator.compress.calibration import ImageBatchReader

    chunk = int(np.clip(CALIBRATION_MEMORY // max(1, _activation_bytes(prepared)), 1, 16))
    with _quiet():
        calibrator = create_calibrator(prepared, op_types, augmented_model_path=str(work / "augmented.onnx"),
                                       calibrate_method=calibrate_method,
                                       extra_options=dict(CALIBRATOR_OPTIONS.get(calibrate_method.name.lower(), {})))
        for start in range(0, len(calib), chunk):
            calibrator.collect_data(ImageBatchReader(input_name, calib, 1, start, start + chunk))
        ranges = calibrator.compute_data()
    del calibrator
    return ranges


def _activation_bytes(path: Path) -> int:
    """Bytes of all float32/float16 tensors of one image, from the shapes in the model."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    total = 0
    for vi in list(model.graph.value_info) + list(model.graph.output):
        tensor = vi.type.tensor_type
        if tensor.elem_type in (1, 10):
            dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in tensor.shape.dim]
            total += int(np.prod(dims)) * (4 if tensor.elem_type == 1 else 2)
    return total


def _quantize(oq, prepared: Path, tmp_out: Path, ranges, work: Path, input_name: str, calib: np.ndarray,
              calibrate_method, op_types, per_channel, act_qtype, w_qtype, nodes_to_exclude, extra) -> None:
    """quantize_static with the ranges computed once (ORT >= 1.2x: ``calibration_cache_path``);
    older ORT recalibrates on the same images, which gives the same ranges."""
    import inspect

    from generator.compress.calibration import ImageBatchReader

    kwargs = dict(quant_format=oq.QuantFormat.QDQ, op_types_to_quantize=op_types, per_channel=per_channel,
                  activation_type=act_qtype, weight_type=w_qtype, nodes_to_exclude=list(nodes_to_exclude),
                  calibrate_method=calibrate_method, extra_options=dict(extra))
    reader = None
    if "calibration_cache_path" in inspect.signature(oq.quantize_static).parameters:
        from onnxruntime.quantization.calibrate import save_tensors_data

        cache = work / "ranges.json"
        save_tensors_data(ranges, cache)
        kwargs["calibration_cache_path"] = str(cache)
    else:
        reader = ImageBatchReader(input_name, calib, 1)
    with _quiet():
        oq.quantize_static(str(prepared), str(tmp_out), reader, **kwargs)


def _finish(path: Path, options: dict) -> Tuple[List[str], int]:
    """Tag the model and count what was quantized."""
    import onnx

    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    meta[META_QUANTIZATION] = json.dumps({"format": "int8-qdq", **options})
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    initializers = {i.name for i in model.graph.initializer}
    dq_of_weight = set()
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in initializers:
            dq_of_weight.update(n.output)
    quantized = [n.name for n in model.graph.node
                 if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                 and len(n.input) > 1 and n.input[1] in dq_of_weight]
    qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    return quantized, qdq


def _check_runs(ort, path: Path, sig, calib: np.ndarray) -> None:
    """The quantized model loads, keeps the contract and gives finite outputs."""
    from generator.export.signature import read_signature

    got = read_signature(path)
    if (got.input_name, got.output_name, got.output_dims) != (sig.input_name, sig.output_name, sig.output_dims):
        raise TritonForgeError(f"quantized model changed the interface: {got} != {sig}")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = session.run(None, {sig.input_name: calib[:2]})[0]
    if y.shape != (min(2, len(calib)), *sig.output_dims) or not np.isfinite(y).all():
        raise TritonForgeError(f"quantized model gives shape {y.shape} or non-finite outputs")


def _tensor_order(model) -> List[str]:
    """Graph input first, then every node output in graph order."""
    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    names += [t for n in model.graph.node for t in n.output if t]
    return names


def _write_reproducer(out: Path, options: dict, report: QuantReport) -> None:
    import onnx

    ort = require("onnxruntime")
    info = {
        "command": " ".join(shlex.quote(a) for a in ["tritonforge", *sys.argv[1:]]) if sys.argv else "",
        "source": str(report.source), "options": options,
        "onnxruntime": ort.__version__, "onnx": onnx.__version__, "numpy": np.__version__,
        "report": report.to_json(),
    }
    Path(str(out) + ".quantize.json").write_text(json.dumps(info, indent=2) + "\n")


# --------------------------------------------------------------------------- TensorRT cache

# the algorithm names TensorRT writes in a calibration cache header, by calibrator kind
TRT_CACHE_ALGORITHMS = {"entropy": "EntropyCalibration", "entropy2": "EntropyCalibration2",
                        "minmax": "MinMaxCalibration"}


def trt_version_code(version: str) -> str:
    """TensorRT's version as its cache headers spell it: 8.6.1 -> 8601, 10.3.0 -> 100300."""
    parts = [int(p) for p in (version.split(".") + ["0", "0"])[:3]]
    major, minor, patch = parts
    return str(major * (10000 if major >= 10 else 1000) + minor * 100 + patch)


def trt_cache_header(kind: str = "entropy2", trt_version: str = "8.6.0") -> str:
    if kind not in TRT_CACHE_ALGORITHMS:
        raise UsageError(f"unknown TensorRT calibrator {kind!r}; choose one of: {', '.join(TRT_CACHE_ALGORITHMS)}")
    return f"TRT-{trt_version_code(trt_version)}-{TRT_CACHE_ALGORITHMS[kind]}"


def trt_cache_header_for(method: str) -> str:
    """Header matching the legacy calibrator a cache from ``method`` pairs with."""
    return trt_cache_header("minmax" if method == "minmax" else "entropy2")


def tensor_amax(ranges, order: Optional[Iterable[str]] = None) -> Dict[str, float]:
    """max(|min|, |max|) per tensor from ORT's ``TensorsData`` (or a name -> (min, max) dict),
    in ``order`` (tensors not in ``order`` are dropped) or the ranges' own order."""
    items = ranges.items() if hasattr(ranges, "items") else ranges
    amax: Dict[str, float] = {}
    for name, value in items:
        lo, hi = value.range_value if hasattr(value, "range_value") else value[:2]
        amax[name] = float(max(abs(np.asarray(lo, np.float64).min()), abs(np.asarray(hi, np.float64).max())))
    if order is None:
        return amax
    return {name: amax[name] for name in order if name in amax}


def trt_scale_hex(amax: float) -> str:
    """The cache's encoding of a tensor's scale amax/127: float32 bits, big-endian hex."""
    return struct.pack(">f", np.float32(amax / 127.0)).hex()


def write_trt_cache(path: Path, ranges: Dict[str, float], header: str = "TRT-8600-EntropyCalibration2") -> int:
    """TensorRT's text calibration cache: ``header`` then ``name: 3c010a14`` per tensor.

    ``ranges`` maps ONNX tensor names (TensorRT's parser keeps them) to amax; tensors with
    a non-positive or non-finite amax (never non-zero during calibration) are left out,
    so TensorRT keeps them in higher precision. Returns the number of tensors written.
    """
    lines = [header]
    for name, amax in ranges.items():
        if "\n" in name or not name:
            raise ValueError(f"tensor name cannot go in a calibration cache: {name!r}")
        if np.isfinite(amax) and amax > 0:
            lines.append(f"{name}: {trt_scale_hex(float(amax))}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return len(lines) - 1


def read_trt_cache(path: Path) -> Tuple[str, Dict[str, float]]:
    """(header, tensor name -> scale) from a TensorRT text calibration cache."""
    text = Path(path).read_text().splitlines()
    if not text or not text[0].startswith("TRT-"):
        raise UsageError(f"{path}: not a TensorRT calibration cache (first line {text[:1]})")
    scales = {}
    for line in text[1:]:
        if line.strip():
            name, _, value = line.rpartition(": ")
            scales[name] = struct.unpack(">f", bytes.fromhex(value.strip()))[0]
    return text[0], scales


# --------------------------------------------------------------------------- FP16


def convert_fp16(onnx_in: Path, out: Path, keep_decode_float: bool = True, check: bool = True) -> Path:
    """Write an FP16 copy of ``onnx_in`` with float32 input and output.

    Uses ``onnxconverter_common`` when installed, else ONNX Runtime's bundled copy
    (``onnxruntime.transformers.float16``). ``keep_decode_float`` keeps the decode tail
    (DFL, anchor arithmetic, sigmoid) in float32: fp16 steps are 0.5 px above 512.
    Checked to load and run in ONNX Runtime before it replaces ``out``.
    """
    from generator.export.signature import read_signature

    ort = require("onnxruntime", "to convert to FP16")
    import onnx

    try:
        from onnxconverter_common.float16 import convert_float_to_float16
    except ImportError:
        from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx_in, out = Path(onnx_in), Path(out)
    sig = read_signature(onnx_in)
    if sig.input_dtype != "FP32":
        raise UsageError(f"{onnx_in}: already {sig.input_dtype}")
    if not out.parent.is_dir():
        raise UsageError(f"output folder does not exist: {out.parent}")
    model = onnx.load(str(onnx_in))
    block = [e.name for e in sensitive_nodes(model) if e.reason != REASON_HEAD_CONV] if keep_decode_float else []
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with _quiet():
            half = convert_float_to_float16(model, keep_io_types=True, node_block_list=block or None)
        half.metadata_props.add(key="tritonforge.precision", value="fp16")
        onnx.save(half, str(tmp))
        if check:
            got = read_signature(tmp)
            if (got.input_dtype, got.output_dtype) != ("FP32", "FP32"):
                raise TritonForgeError(f"FP16 conversion changed the I/O types to {got.input_dtype}/{got.output_dtype}")
            session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            x = np.random.default_rng(0).random((1, 3, sig.height, sig.width), dtype=np.float32)
            y = session.run(None, {sig.input_name: x})[0]
            if not np.isfinite(y).all():
                raise TritonForgeError("FP16 model gives non-finite outputs (overflow above 65504?)")
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
