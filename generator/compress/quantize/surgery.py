"""Returning nodes of a Q/DQ model to float, by editing the graph.

ONNX Runtime writes the full Q/DQ model once (``qdq.write_qdq``); measured selection and
accuracy control then try many "these nodes stay float" variants of it. Rewriting the
graph takes milliseconds where ``quantize_static`` takes seconds, and every variant, the
final one included, comes from the same full model by the same edit, so what was timed
and validated is what is written.

A node returns to float when each input it reads through a DequantizeLinear reads the
float tensor instead: the QuantizeLinear's input for an activation, the source model's
float initializer for a weight or bias (dequantized when the source has none of that
name). Q/DQ pairs nobody reads any more are then removed; those feeding a node that
stays quantized remain, as ONNX Runtime's own exclusion leaves them.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Set

import numpy as np

from generator.compress.quantize.qdq import QDQ_OPS

QUANTIZED_SUFFIX = "_quantized"
FLOAT_SUFFIX = "_tf_float"


def quantized_nodes(model) -> List[str]:
    """Names of the nodes (not Q/DQ themselves) that read at least one DequantizeLinear output,
    in graph order: the nodes that run in int8."""
    dq_out = {t for n in model.graph.node if n.op_type == "DequantizeLinear" for t in n.output}
    return [n.name for n in model.graph.node
            if n.op_type not in QDQ_OPS and any(t in dq_out for t in n.input)]


def to_float(model, nodes: Iterable[str], float_initializers: Optional[Dict[str, np.ndarray]] = None):
    """A copy of the Q/DQ ``model`` with ``nodes`` (names) computing in float.

    ``float_initializers``: the source model's float initializers by name (a reverted
    weight gets its exact float values back); missing ones are dequantized.
    """
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    names = set(nodes)
    if not names:
        return out
    graph = out.graph
    producer = {t: n for n in graph.node for t in n.output}
    inits = {i.name: i for i in graph.initializer}
    added: Dict[str, str] = {}
    for node in graph.node:
        if node.name not in names or node.op_type in QDQ_OPS:
            continue
        for k, tensor in enumerate(node.input):
            dq = producer.get(tensor)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            source = _float_source(dq, producer, inits, float_initializers or {}, graph, added)
            if source is not None:
                node.input[k] = source
    _drop_dead(graph)
    return out


def _float_source(dq, producer, inits, float_inits, graph, added: Dict[str, str]) -> Optional[str]:
    """The float tensor a DequantizeLinear stands for: the QuantizeLinear's input, or a float
    initializer (added to ``graph`` once, remembered in ``added``)."""
    from onnx import numpy_helper

    src = dq.input[0]
    q = producer.get(src)
    if q is not None and q.op_type == "QuantizeLinear":
        return q.input[0]
    if src not in inits:
        return None
    if src in added:
        return added[src]
    values = _original(dq, inits[src], float_inits)
    if values is None:
        values = dequantize(*(numpy_helper.to_array(inits[t]) if t in inits else None for t in _dq_args(dq)),
                            axis=_axis(dq))
    name = _unique(src + FLOAT_SUFFIX, {i.name for i in graph.initializer})
    graph.initializer.append(numpy_helper.from_array(np.asarray(values, np.float32), name))
    added[src] = name
    return name


def _original(dq, quantized, float_inits) -> Optional[np.ndarray]:
    """The source's float initializer this quantized one came from, when its name is known
    (ORT names it ``<name>_quantized`` or gives the DQ output the original name)."""
    dims = tuple(quantized.dims)
    stem = dq.input[0][:-len(QUANTIZED_SUFFIX)] if dq.input[0].endswith(QUANTIZED_SUFFIX) else None
    for name in (dq.output[0], stem):
        values = float_inits.get(name) if name else None
        if values is not None and tuple(values.shape) == dims and values.dtype.kind == "f":
            return values
    return None


def _dq_args(dq) -> List[str]:
    return [dq.input[i] if i < len(dq.input) else "" for i in range(3)]


def _axis(dq) -> int:
    return next((a.i for a in dq.attribute if a.name == "axis"), 1)


def dequantize(q: np.ndarray, scale: np.ndarray, zero_point: Optional[np.ndarray], axis: int = 1) -> np.ndarray:
    """ONNX DequantizeLinear: ``(q - zero_point) * scale``, per tensor or along ``axis``."""
    q = q.astype(np.float32)
    scale = np.asarray(scale, np.float32)
    zp = np.zeros_like(scale) if zero_point is None else np.asarray(zero_point, np.float32)
    if scale.ndim == 1 and q.ndim > 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return (q - zp) * scale


def _unique(name: str, taken: Set[str]) -> str:
    candidate, i = name, 1
    while candidate in taken:
        candidate, i = f"{name}{i}", i + 1
    return candidate


def _drop_dead(graph) -> None:
    """Remove Q/DQ nodes nobody reads, then initializers nobody reads."""
    outputs = {o.name for o in graph.output}
    while True:
        read = {t for n in graph.node for t in n.input} | outputs
        dead = [i for i, n in enumerate(graph.node) if n.op_type in QDQ_OPS and not any(t in read for t in n.output)]
        if not dead:
            break
        for i in reversed(dead):
            del graph.node[i]
    read = {t for n in graph.node for t in n.input} | outputs
    keep = [i for i in graph.initializer if i.name in read]
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)
