"""What the build needs to know about the ONNX before choosing a strategy: Q/DQ nodes
(explicit INT8), FP16 types, a fixed batch size. ``onnx`` is imported where used."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from generator.errors import UsageError
from generator.export.tensorrt.options import BuildOptions

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


@dataclass(frozen=True)
class OnnxFacts:
    has_qdq: bool  # QuantizeLinear/DequantizeLinear nodes: explicit INT8
    fp16: bool  # float16 weights or casts (e.g. from ``tritonforge quantize --fp16``)
    batch: Optional[int]  # fixed batch size of the input, None when dynamic


def onnx_facts(path: Path) -> OnnxFacts:
    """Q/DQ, FP16 and fixed batch of a detector ONNX (its contract checked first)."""
    import onnx

    from generator.export.signature import read_signature

    sig = read_signature(path)  # the detector contract, with a clear error when broken
    model = onnx.load(str(path), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    inp = next(i for i in model.graph.input if i.name == sig.input_name)
    dim = inp.type.tensor_type.shape.dim[0]
    batch = dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None
    return OnnxFacts(bool(ops & QDQ_OPS), _is_fp16(onnx, model), batch)


def _is_fp16(onnx, model) -> bool:
    """Marked FP16 by tritonforge, or FP16 weights, or casts to FP16."""
    meta = {p.key: p.value for p in model.metadata_props}
    fp16 = onnx.TensorProto.FLOAT16
    return (meta.get("tritonforge.precision") == "fp16"
            or any(i.data_type == fp16 for i in model.graph.initializer)
            or any(n.op_type == "Cast" and any(a.name == "to" and a.i == fp16 for a in n.attribute)
                   for n in model.graph.node))


def onnx_has_qdq(path: Path) -> bool:
    """True when the ONNX carries Q/DQ nodes (explicit INT8, e.g. from ``tritonforge quantize``)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return any(n.op_type in QDQ_OPS for n in model.graph.node)


def check_batch_range(fixed_batch: Optional[int], opts: BuildOptions, onnx_name: str = "the ONNX") -> None:
    """A fixed-batch ONNX can only be built for that batch."""
    if fixed_batch is not None and (opts.min_batch, opts.opt_batch, opts.max_batch) != (fixed_batch,) * 3:
        raise UsageError(f"{onnx_name} has a fixed batch size of {fixed_batch}: re-export it with a dynamic batch "
                         f"axis (`tritonforge export`) or pass --min-batch {fixed_batch} --opt-batch {fixed_batch} "
                         f"--max-batch {fixed_batch}")
