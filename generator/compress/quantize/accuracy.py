"""Accuracy control: return the most sensitive layers to float until the mAP drop is within bound.

NNCF's accuracy-aware quantization is the model: measure the float and the int8 model
on the validation split; if the int8 model loses more than ``max_drop`` (absolute
mAP50-95), rank the quantized layers by sensitivity and return them to float greedily,
re-validating, until the drop is within the bound.

Sensitivity (``local_errors``): each quantized node's *own* quantization error, measured
in one run of the float model augmented with a copy of every quantized node that reads
its float inputs through that node's Q/DQ (and writes through its output Q/DQ): the
normalized squared error of the copy's output against the float output, over a few
calibration images. Errors accumulated from upstream layers do not count, so a late
layer is not blamed for an early one.

Reverting grows in steps (1, 2, 4, ... of the ranked layers) until the bound is met, then
bisects between the last failing and the first passing count: the smallest count found
is kept. The bound cannot be met when only every layer in float meets it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from generator.compress.quantize.qdq import QDQ_OPS
from generator.errors import TritonForgeError

SENSITIVITY_IMAGES = 4
_SUFFIX = "~tf_sens"

Echo = Callable[[str], None]


@dataclass
class Step:
    """One validation: the top ``reverted`` ranked layers in float."""

    reverted: int
    map50_95: float
    drop: float
    within: bool
    phase: str  # "start", "grow" or "bisect"

    def to_json(self) -> dict:
        return {"reverted": self.reverted, "map50_95": round(self.map50_95, 5), "drop": round(self.drop, 5),
                "within": self.within, "phase": self.phase}


@dataclass
class AccuracyResult:
    """What accuracy control measured and chose."""

    max_drop: float
    fp32_map: float
    ranking: List[Dict] = field(default_factory=list)  # {"name", "op_type", "error"}, most sensitive first
    steps: List[Step] = field(default_factory=list)
    reverted: List[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> Optional[Step]:
        passing = [s for s in self.steps if s.within]
        return min(passing, key=lambda s: s.reverted) if passing else None

    def reason(self) -> str:
        return (f"accuracy control: among the most sensitive layers (own quantization error), returned to float "
                f"to keep the mAP50-95 drop within {self.max_drop:g}")

    def to_json(self) -> dict:
        final = self.final
        return {"max_drop": self.max_drop, "fp32_map50_95": round(self.fp32_map, 5),
                "steps": [s.to_json() for s in self.steps],
                "final": final.to_json() if final else None, "reverted": list(self.reverted),
                "ranking": [{**r, "error": float(f"{r['error']:.4g}")} for r in self.ranking],
                "seconds": round(self.seconds, 2)}

    def lines(self) -> List[str]:
        lines = [f"  accuracy control (mAP50-95 drop <= {self.max_drop:g}; FP32 {self.fp32_map:.4f}):"]
        for s in self.steps:
            lines.append(f"    {s.phase:<6} {s.reverted:>4} layers float: mAP50-95 {s.map50_95:.4f}, drop {s.drop:+.4f}"
                         f" {'ok' if s.within else 'over'}")
        final = self.final
        if final is not None:
            more = len(self.reverted) - 6
            shown = ", ".join(self.reverted[:6]) + (f", ... (+{more})" if more > 0 else "")
            lines.append(f"    chose {final.reverted} layers in float (drop {final.drop:+.4f})"
                         + (f": {shown}" if shown else ""))
        return lines


def local_errors(float_model, qdq_model, images: np.ndarray, nodes: Sequence[str]) -> Dict[str, float]:
    """Each of ``nodes``' own quantization error (see the module docstring), by name.

    ``float_model``: the model ``qdq_model`` was quantized from (same node and tensor
    names); ``images``: ``[N, 3, H, W]`` float32, run one at a time.
    """
    import onnxruntime as ort

    model, pairs = _augmented(float_model, qdq_model, nodes)
    if not pairs:
        return {}
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    wanted = sorted({t for _, ref, got in pairs for t in (ref, got)})
    err = {name: 0.0 for name, _, _ in pairs}
    ref_energy = {name: 0.0 for name, _, _ in pairs}
    for image in images:
        values = dict(zip(wanted, session.run(wanted, {input_name: image[None]})))
        for name, ref, got in pairs:
            a, b = values[ref], values[got]
            if a.dtype.kind != "f" or a.shape != b.shape:
                continue
            a, b = a.astype(np.float64), b.astype(np.float64)
            err[name] += float(np.sum((a - b) ** 2))
            ref_energy[name] += float(np.sum(a ** 2))
    return {name: err[name] / max(ref_energy[name], 1e-12) for name in err}


def _augmented(float_model, qdq_model, nodes: Sequence[str]):
    """The float model plus, per quantized node, a copy computing through its Q/DQ; returns
    (model, [(node name, float tensor, copy's tensor)])."""
    import onnx
    from onnx import TensorProto, helper

    out = onnx.ModelProto()
    out.CopyFrom(float_model)
    graph = out.graph
    q_graph = qdq_model.graph
    producer = {t: n for n in q_graph.node for t in n.output}
    consumers: Dict[str, List] = {}
    for n in q_graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    q_inits = {i.name: i for i in q_graph.initializer}
    have = ({i.name for i in graph.initializer} | {t for n in graph.node for t in n.output}
            | {i.name for i in graph.input})
    by_name = {n.name: n for n in q_graph.node}
    pairs, copied, outputs = [], set(), {o.name for o in graph.output}
    for k, name in enumerate(nodes):
        node = by_name.get(name)
        if node is None or node.op_type in QDQ_OPS or not all(o in have for o in node.output if o):
            continue
        chain = _input_chain(node, producer) + [node]
        tails = _output_chain(node, consumers)
        produced = {t for n in chain + [x for pair in tails for x in pair] for t in n.output}
        needed = {t for n in chain + [x for pair in tails for x in pair] for t in n.input if t and t not in produced}
        if not all(t in have or t in q_inits for t in needed):
            continue  # reads a tensor only the Q/DQ model has: not comparable to the float model
        rename = {t: f"{t}{_SUFFIX}{k}" for t in produced}
        for n in chain + [x for pair in tails for x in pair]:
            clone = helper.make_node(n.op_type, [rename.get(t, t) for t in n.input],
                                     [rename.get(t, t) for t in n.output], name=f"{n.name}{_SUFFIX}{k}",
                                     domain=n.domain)
            clone.attribute.extend(n.attribute)
            graph.node.append(clone)
            for t in n.input:
                if t and t not in have and t not in rename and t in q_inits and t not in copied:
                    graph.initializer.append(q_inits[t])
                    copied.add(t)
        quantized_out = {q.input[0]: dq.output[0] for q, dq in tails}
        for o in node.output:
            if not o:
                continue
            got = rename[quantized_out.get(o, o)]
            for t in (o, got):
                if t not in outputs:
                    graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
                    outputs.add(t)
            pairs.append((name, o, got))
    # outputs of a node might not be float (Shape, ...); the ones a Q/DQ copy makes are
    _fix_output_types(out)
    return out, pairs


def _input_chain(node, producer) -> List:
    """The DequantizeLinear nodes feeding ``node`` and the QuantizeLinear nodes feeding those."""
    chain = []
    for t in node.input:
        dq = producer.get(t)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producer.get(dq.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            chain.append(q)
        chain.append(dq)
    return chain


def _output_chain(node, consumers) -> List:
    """(QuantizeLinear, DequantizeLinear) pairs on ``node``'s outputs."""
    tails = []
    for o in node.output:
        for q in consumers.get(o, []):
            if q.op_type != "QuantizeLinear":
                continue
            dq = next((d for d in consumers.get(q.output[0], []) if d.op_type == "DequantizeLinear"), None)
            if dq is not None:
                tails.append((q, dq))
                break
    return tails


def _fix_output_types(model) -> None:
    """Graph outputs added without a type get the one shape inference finds (float otherwise)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - float32 is right for every activation we compare
        return
    types = {vi.name: vi.type.tensor_type.elem_type for vi in
             list(inferred.graph.value_info) + list(inferred.graph.output)}
    for vi in model.graph.output:
        elem = types.get(vi.name)
        if elem:
            vi.type.tensor_type.elem_type = elem


def accuracy_control(ranked: Sequence[str], evaluate_reverted: Callable[[Sequence[str]], float], fp32_map: float,
                     max_drop: float, echo: Optional[Echo] = None) -> AccuracyResult:
    """Revert the top-k of ``ranked`` (most sensitive first) with k growing 1, 2, 4, ...
    until ``fp32_map - evaluate_reverted(top_k) <= max_drop``, then bisect for the smallest
    such k. Raises TritonForgeError when only reverting every layer meets the bound."""
    started = time.perf_counter()
    say = echo or (lambda _msg: None)
    result = AccuracyResult(max_drop=float(max_drop), fp32_map=float(fp32_map))
    n = len(ranked)

    def check(k: int, phase: str) -> bool:
        value = float(evaluate_reverted(list(ranked[:k])))
        drop = result.fp32_map - value
        step = Step(k, value, drop, drop <= max_drop + 1e-12, phase)
        result.steps.append(step)
        say(f"  accuracy control [{phase}] {k} of {n} layers float: mAP50-95 {value:.4f}, drop {drop:+.4f} "
            f"({'within' if step.within else 'over'} {max_drop:g})")
        return step.within

    if check(0, "start"):
        result.seconds = time.perf_counter() - started
        return result
    lo, hi, k = 0, None, 1
    while k < n:
        if check(k, "grow"):
            hi = k
            break
        lo, k = k, min(2 * k, n)
    if hi is None:
        raise TritonForgeError(
            f"--max-drop {max_drop:g} cannot be met: with {lo} of the {n} quantized layers returned to float the "
            f"mAP50-95 drop is still {result.steps[-1].drop:.4f} (FP32 {fp32_map:.4f}); only the FP32 model meets "
            "it. Nothing written. Allow a larger drop, calibrate on more images (--samples), or try --method")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if check(mid, "bisect"):
            hi = mid
        else:
            lo = mid
    result.reverted = list(ranked[:hi])
    result.seconds = time.perf_counter() - started
    return result
