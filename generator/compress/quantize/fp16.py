"""FP16 conversion of a detector ONNX, float32 input and output kept."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from generator._lazy import require
from generator.atomic import atomic_path
from generator.compress.quantize.graph import HEAD_REASONS, sensitive_nodes
from generator.compress.quantize.qdq import graph_io, quiet
from generator.errors import TritonForgeError, UsageError
from generator.evaluation.ort_only import QUANTIZE_HINT, refuse_trt_plugin

META_PRECISION = "tritonforge.precision"


def convert_fp16(onnx_in: Path, out: Path, keep_decode_float: bool = True, check: bool = True,
                 read_options: Optional[dict] = None) -> Path:
    """Write an FP16 copy of ``onnx_in`` with float32 input and output.

    Uses ``onnxconverter_common`` when installed, else ONNX Runtime's bundled copy
    (``onnxruntime.transformers.float16``). ``keep_decode_float`` keeps the decode tail
    (DFL, anchor arithmetic, sigmoid) in float32: fp16 steps are 0.5 px above 512.
    Checked to load and run in ONNX Runtime before it replaces ``out``. ``read_options``:
    keywords of ``read_signature`` (``layout``, ``imgsz``, ``scores``).
    """
    from generator.export.signature import read_signature

    require("onnxruntime", "to convert to FP16")
    import onnx

    onnx_in, out = Path(onnx_in), Path(out)
    sig = read_signature(onnx_in, **(read_options or {}))
    refuse_trt_plugin(onnx_in, sig, "to check the FP16 copy", QUANTIZE_HINT)
    if sig.input_dtype != "FP32":
        raise UsageError(f"{onnx_in}: already {sig.input_dtype}")
    if not out.parent.is_dir():
        raise UsageError(f"output folder does not exist: {out.parent}")
    model = onnx.load(str(onnx_in))
    source_io = graph_io(model)  # before the converter touches the model
    block = [e.name for e in sensitive_nodes(model) if e.reason not in HEAD_REASONS] if keep_decode_float else []
    with atomic_path(out) as tmp:
        with quiet():
            half = _converter()(model, keep_io_types=True, node_block_list=block or None)
        half.metadata_props.add(key=META_PRECISION, value="fp16")
        onnx.save(half, str(tmp))
        if check:
            _check(tmp, source_io, sig)
    return out


def _converter():
    try:
        from onnxconverter_common.float16 import convert_float_to_float16
    except ImportError:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    return convert_float_to_float16


def _check(path: Path, source_io, sig) -> None:
    """The source's I/O kept (float32 in and out), and finite outputs on a random image
    (fp16 overflows above 65504)."""
    import onnx
    import onnxruntime as ort

    got, want = graph_io(onnx.load(str(path), load_external_data=False)), source_io
    if got != want:
        raise TritonForgeError(f"FP16 conversion changed the inputs / outputs: {got} != {want}")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, sig.height, sig.width), dtype=np.float32)
    if not all(np.isfinite(y).all() for y in session.run(None, {sig.input_name: x}) if y.dtype.kind == "f"):
        raise TritonForgeError("FP16 model gives non-finite outputs (overflow above 65504?)")
