"""ONNX Runtime's side of INT8 quantization: pre-processing, calibration, Q/DQ writing, checks.

Calibration runs on the CPU with ONNX Runtime over images preprocessed exactly as the
server does (``compress.calibration``); ``quantize_static`` then writes explicit
QuantizeLinear/DequantizeLinear pairs with the ranges computed once.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from generator.compress.config import METHODS, QUANT_TYPES
from generator.errors import TritonForgeError, UsageError

META_QUANTIZATION = "tritonforge.quantization"
CALIBRATION_MEMORY = 1 << 30  # bytes of intermediate outputs ORT may hold per collection
# ORT's own defaults per method (quantize_static passes none); entropy's 128 histogram bins
# for 128 quantized bins leave it one candidate threshold, so it clips almost nothing
CALIBRATOR_OPTIONS: Dict[str, dict] = {"entropy": {}, "minmax": {}, "percentile": {}}
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def calibration_method(oq, method: str):
    """``onnxruntime.quantization.CalibrationMethod`` member for a name of ``METHODS``."""
    return getattr(oq.CalibrationMethod, METHODS[str(method).lower()])


def quant_type(oq, name: str):
    """``onnxruntime.quantization.QuantType`` member for a name of ``QUANT_TYPES``."""
    return getattr(oq.QuantType, QUANT_TYPES[str(name).lower()])


def check_calibration(calib: np.ndarray, sig) -> np.ndarray:
    """``calib`` as contiguous float32 ``[N, 3, H, W]`` for the model ``sig`` describes."""
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


def default_op_types() -> List[str]:
    """Every op type ONNX Runtime knows how to quantize."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def prepare(onnx_in: Path, prepared: Path) -> Tuple[Path, str]:
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
        with quiet():
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
def quiet():
    """ORT's calibrators print progress and log hints; keep the CLI's output ours."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def calibrate(prepared: Path, work: Path, input_name: str, calib: np.ndarray, method: str,
              op_types: Optional[List[str]]):
    """Tensor ranges over ``calib``: one image per run (ORT's histogram calibrators stack
    the runs' outputs, so batches must all have one size), collected in chunks so memory
    stays bounded: ORT keeps every intermediate output of a collection (~550 MB per image
    for yolo-n at 640 px)."""
    from onnxruntime import quantization as oq
    from onnxruntime.quantization.calibrate import create_calibrator

    from generator.compress.calibration import ImageBatchReader

    calibrate_method = calibration_method(oq, method)
    per_image = activation_bytes(prepared, calib.shape[2], calib.shape[3])
    chunk = int(np.clip(CALIBRATION_MEMORY // max(1, per_image), 1, 16))
    with quiet():
        calibrator = create_calibrator(prepared, op_types, augmented_model_path=str(work / "augmented.onnx"),
                                       calibrate_method=calibrate_method,
                                       extra_options=dict(CALIBRATOR_OPTIONS.get(calibrate_method.name.lower(), {})))
        for start in range(0, len(calib), chunk):
            calibrator.collect_data(ImageBatchReader(input_name, calib, 1, start, start + chunk))
        ranges = calibrator.compute_data()
    del calibrator
    return ranges


def activation_bytes(path: Path, height: int = 0, width: int = 0) -> int:
    """Bytes of all float32/float16 tensors of one image, from the shapes in the model.

    A model with a dynamic height / width gets them fixed to ``height`` x ``width`` in a
    copy whose shapes are inferred again (else its activations would count as 1 x 1)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    if height and width and _fix_input_size(model, height, width):
        model = onnx.shape_inference.infer_shapes(model)
    total = 0
    for vi in list(model.graph.value_info) + list(model.graph.output):
        tensor = vi.type.tensor_type
        if tensor.elem_type in (1, 10):
            dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in tensor.shape.dim]
            total += int(np.prod(dims)) * (4 if tensor.elem_type == 1 else 2)
    return total


def _fix_input_size(model, height: int, width: int) -> bool:
    """Set the image input's dynamic H and W (dims 2, 3) to fixed values; True if any was dynamic."""
    inits = {i.name for i in model.graph.initializer}
    changed = False
    for vi in model.graph.input:
        dims = vi.type.tensor_type.shape.dim
        if vi.name in inits or len(dims) != 4:
            continue
        for d, size in ((dims[2], height), (dims[3], width)):
            if not d.HasField("dim_value"):
                d.dim_value = int(size)
                changed = True
    if changed:
        del model.graph.value_info[:]
    return changed


def write_qdq(prepared: Path, out: Path, ranges, work: Path, input_name: str, calib: np.ndarray, cfg,
              op_types: Sequence[str], nodes_to_exclude: Sequence[str]) -> None:
    """quantize_static with the ranges computed once (ORT >= 1.2x: ``calibration_cache_path``);
    older ORT recalibrates on the same images, which gives the same ranges. ``cfg``: a
    ``QuantizeConfig``."""
    import inspect

    from onnxruntime import quantization as oq

    from generator.compress.calibration import ImageBatchReader

    extra = {"ActivationSymmetric": cfg.activation_type == "int8", "WeightSymmetric": True}
    kwargs = dict(quant_format=oq.QuantFormat.QDQ, op_types_to_quantize=list(op_types), per_channel=cfg.per_channel,
                  activation_type=quant_type(oq, cfg.activation_type), weight_type=quant_type(oq, cfg.weight_type),
                  nodes_to_exclude=list(nodes_to_exclude), calibrate_method=calibration_method(oq, cfg.method),
                  extra_options=extra)
    reader = None
    if "calibration_cache_path" in inspect.signature(oq.quantize_static).parameters:
        from onnxruntime.quantization.calibrate import save_tensors_data

        cache = work / "ranges.json"
        save_tensors_data(ranges, cache)
        kwargs["calibration_cache_path"] = str(cache)
    else:
        reader = ImageBatchReader(input_name, calib, 1)
    with quiet():
        oq.quantize_static(str(prepared), str(out), reader, **kwargs)


def tag_and_count(path: Path, options: dict, source=None) -> Tuple[List[str], int]:
    """Record ``options`` in the model's metadata, on top of the ``source`` model's (class
    names, image size, layout hints of whichever exporter wrote them), inputs and outputs
    declared as the source declares them; return (nodes with int8 weights, Q/DQ count)."""
    import onnx

    model = onnx.load(str(path))
    meta = {p.key: p.value for p in source.metadata_props} if source is not None else {}
    meta.update({p.key: p.value for p in model.metadata_props})
    meta[META_QUANTIZATION] = json.dumps({"format": "int8-qdq", **options})
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    if source is not None:
        _declare_like(model, source)
    onnx.save(model, str(path))
    initializers = {i.name for i in model.graph.initializer}
    dq_of_weight = {t for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in initializers
                    for t in n.output}
    quantized = [n.name for n in model.graph.node
                 if n.op_type not in QDQ_OPS and len(n.input) > 1 and n.input[1] in dq_of_weight]
    return quantized, sum(n.op_type in QDQ_OPS for n in model.graph.node)


def _declare_like(model, source) -> None:
    """The graph inputs and outputs declared as in ``source``: shape inference during
    pre-processing may have fixed a dimension the exporter left symbolic (e.g. "anchors")."""
    declared = {vi.name: vi.type for vi in list(source.graph.input) + list(source.graph.output)}
    for vi in list(model.graph.input) + list(model.graph.output):
        if vi.name in declared:
            vi.type.CopyFrom(declared[vi.name])


def graph_io(model) -> List[Tuple[str, int, Tuple]]:
    """(name, element type, dims) of the graph's inputs (initializers aside) and outputs."""
    inits = {i.name for i in model.graph.initializer}

    def spec(vi):
        dims = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim)
        return vi.name, vi.type.tensor_type.elem_type, dims

    return [spec(vi) for vi in model.graph.input if vi.name not in inits] + [spec(vi) for vi in model.graph.output]


def check_runs(path: Path, source, sig, calib: np.ndarray) -> None:
    """The quantized model loads, keeps the ``source`` model's inputs and outputs (names,
    types, dims: every output of any layout) and gives finite float outputs."""
    import onnx
    import onnxruntime as ort

    got, want = graph_io(onnx.load(str(path), load_external_data=False)), graph_io(source)
    if got != want:
        raise TritonForgeError(f"quantized model changed the interface: {got} != {want}")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = min(sig.batch or 2, len(calib))  # a fixed-batch export runs only its own batch
    outputs = session.run(None, {sig.input_name: calib[:batch]})
    for (name, _, _), y in zip(want[-len(outputs):], outputs):
        if y.shape[:1] != (batch,) or (y.dtype.kind == "f" and not np.isfinite(y).all()):
            raise TritonForgeError(f"quantized model gives {name!r} of shape {y.shape} or non-finite values")
