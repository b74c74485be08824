"""FP16 conversion of a detector ONNX, float32 input and output kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from generator._lazy import require
from generator.atomic import atomic_path
from generator.compress.quantize.graph import REASON_HEAD_CONV, sensitive_nodes
from generator.compress.quantize.qdq import quiet
from generator.errors import TritonForgeError, UsageError

META_PRECISION = "tritonforge.precision"


def convert_fp16(onnx_in: Path, out: Path, keep_decode_float: bool = True, check: bool = True) -> Path:
    """Write an FP16 copy of ``onnx_in`` with float32 input and output.

    Uses ``onnxconverter_common`` when installed, else ONNX Runtime's bundled copy
    (``onnxruntime.transformers.float16``). ``keep_decode_float`` keeps the decode tail
    (DFL, anchor arithmetic, sigmoid) in float32: fp16 steps are 0.5 px above 512.
    Checked to load and run in ONNX Runtime before it replaces ``out``.
    """
    from generator.export.signature import read_signature

    require("onnxruntime", "to convert to FP16")
    import onnx

    onnx_in, out = Path(onnx_in), Path(out)
    sig = read_signature(onnx_in)
    if sig.input_dtype != "FP32":
        raise UsageError(f"{onnx_in}: already {sig.input_dtype}")
    if not out.parent.is_dir():
        raise UsageError(f"output folder does not exist: {out.parent}")
    model = onnx.load(str(onnx_in))
    block = [e.name for e in sensitive_nodes(model) if e.reason != REASON_HEAD_CONV] if keep_decode_float else []
    with atomic_path(out) as tmp:
        with quiet():
            half = _converter()(model, keep_io_types=True, node_block_list=block or None)
        half.metadata_props.add(key=META_PRECISION, value="fp16")
        onnx.save(half, str(tmp))
        if check:
            _check(tmp, sig)
    return out


def _converter():
    try:
        from onnxconverter_common.float16 import convert_float_to_float16
    except ImportError:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    return convert_float_to_float16


def _check(path: Path, sig) -> None:
    """Float32 I/O kept, and finite outputs on a random image (fp16 overflows above 65504)."""
    import onnxruntime as ort

    from generator.export.signature import read_signature

    got = read_signature(path)
    if (got.input_dtype, got.output_dtype) != ("FP32", "FP32"):
        raise TritonForgeError(f"FP16 conversion changed the I/O types to {got.input_dtype}/{got.output_dtype}")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, sig.height, sig.width), dtype=np.float32)
    y = session.run(None, {sig.input_name: x})[0]
    if not np.isfinite(y).all():
        raise TritonForgeError("FP16 model gives non-finite outputs (overflow above 65504?)")
