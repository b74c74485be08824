"""Graph analysis for quantization: which nodes stay float, and why.

The detection head's output layers and everything after them stay float by default,
whatever the output layout: DFL softmax and expectation, anchor arithmetic, sigmoid on
logits, objectness x class products, TopK / GatherElements selection, NonMaxSuppression,
output assembly. See ``sensitive_nodes``. Pure ONNX protobuf walking; no ONNX Runtime.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Dict, List, Sequence, Set

from generator.errors import UsageError

REASON_HEAD_CONV = ("head output convolution (raw box distribution / class logits): quantizing it "
                    "costs accuracy and saves little time")
REASON_HEAD_LINEAR = ("head output projection (a decoder's box / class logits, MatMul or Gemm): quantizing it "
                      "costs accuracy and saves little time")
REASON_DFL = "box decode (DFL softmax and expectation): the distribution and its expectation need float range"
REASON_SCORES = ("sigmoid (logits -> class probabilities or normalized box coordinates): int8 steps (~0.004) are "
                 "coarser than the 0.001 score threshold used for mAP and would merge low scores")
REASON_SOFTMAX = "class softmax: probabilities (0..1) next to logits; int8 steps would merge low scores"
REASON_SELECT = ("detection selection (TopK / GatherElements / NonMaxSuppression / ArgMax / ReduceMax): picks "
                 "boxes by comparing scores; int8 ties would reorder or drop detections")
REASON_DECODE = ("box decode / output assembly: raw distributions, logits, pixel coordinates (up to the "
                 "image size) and probabilities (0..1) share these tensors; one int8 scale cannot cover them")
REASON_USER = "excluded by --exclude"
HEAD_REASONS = (REASON_HEAD_CONV, REASON_HEAD_LINEAR)

# ops that only move data around; used to see through them
_LAYOUT_OPS = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Split", "Slice",
               "Concat", "Gather"}
# ops with learned weights: a detector's feature layers, and its head's output layers
_WEIGHTED_OPS = {"Conv": REASON_HEAD_CONV, "ConvTranspose": REASON_HEAD_CONV, "Gemm": REASON_HEAD_LINEAR,
                 "MatMul": REASON_HEAD_LINEAR}
# ops that select detections by score (end-to-end heads, in-graph NMS, efficient-nms emulations)
_SELECT_OPS = {"TopK", "GatherElements", "GatherND", "NonMaxSuppression", "ArgMax", "ReduceMax", "NonZero"}


@dataclass(frozen=True)
class ExcludedNode:
    """A node kept in float, with the reason shown to the user."""

    name: str
    op_type: str
    reason: str


class _Graph:
    """Index of a graph's nodes: producers, consumers, topological order, constant tensors."""

    def __init__(self, model):
        self.nodes = list(model.graph.node)
        self.producer: Dict[str, int] = {}
        self.consumers: Dict[str, List[int]] = {}
        for i, node in enumerate(self.nodes):
            for t in node.output:
                self.producer[t] = i
            for t in node.input:
                if t:
                    self.consumers.setdefault(t, []).append(i)
        self.outputs = {o.name for o in model.graph.output}
        self.order = topological_order(self.nodes, self.producer)
        self.constants = self._constants(model)

    def _constants(self, model) -> Set[str]:
        """Initializers and what Constant nodes (and layout ops on constants) make."""
        constants = {i.name for i in model.graph.initializer}
        for i in self.order:
            node = self.nodes[i]
            if node.op_type == "Constant" or (node.op_type in _LAYOUT_OPS | {"Cast"} and node.input
                                              and all(t in constants for t in node.input if t)):
                constants.update(node.output)
        return constants

    def successors(self, i: int) -> List[int]:
        return [j for t in self.nodes[i].output for j in self.consumers.get(t, ())]

    def ancestors(self, starts: Sequence[int]) -> Set[int]:
        """Every node that feeds one of ``starts`` (not ``starts`` themselves unless they do)."""
        found: Set[int] = set()
        stack = [self.producer[t] for i in starts for t in self.nodes[i].input if t in self.producer]
        while stack:
            i = stack.pop()
            if i not in found:
                found.add(i)
                stack.extend(self.producer[t] for t in self.nodes[i].input if t in self.producer)
        return found

    def weighted(self, node) -> bool:
        """A Conv / Gemm / MatMul with a learned (constant) weight: a feature or head layer.
        A MatMul of two activations (attention) is not one."""
        return node.op_type in _WEIGHTED_OPS and any(t in self.constants for t in node.input[1:2])


def sensitive_nodes(model) -> List[ExcludedNode]:
    """The detection head's output layers and the decode tail after them, for any layout.

    Found from the graph, not from names: a *head output layer* is a weighted node (Conv,
    or a decoder's Gemm / MatMul with a constant weight) that reaches the graph output
    without passing through another feature layer (the DFL expectation, a Conv fed by a
    Softmax, does not count as one); the *tail* is every node that feeds no head output
    layer (softmax, DFL, anchor arithmetic, sigmoid, objectness products, TopK and
    GatherElements, NonMaxSuppression, concat). On an Ultralytics-style yolo export these
    are ``.../box.i.2/Conv``, ``.../cls.i.2/Conv`` and everything from the per-level Concat on.
    """
    g = _Graph(model)
    decode_conv = {i for i, n in enumerate(g.nodes) if n.op_type == "Conv" and _fed_by_softmax(n, g)}
    feature = {i for i, n in enumerate(g.nodes) if g.weighted(n) and i not in decode_conv}
    reaches_output, feature_below = _downstream(g, feature)
    heads = [i for i in g.order if i in feature and reaches_output[i] and not feature_below[i]]
    if not heads:
        return []
    feeds_head = g.ancestors(heads)
    excluded = []
    for i in g.order:
        if i in heads or (i not in feeds_head and reaches_output[i]):
            node = g.nodes[i]
            excluded.append(ExcludedNode(node.name, node.op_type, _reason(i, g, i in heads, i in decode_conv)))
    return excluded


def _downstream(g: _Graph, feature: Set[int]):
    """Per node: does it reach a graph output; is there a feature layer below it."""
    reaches_output = [False] * len(g.nodes)
    feature_below = [False] * len(g.nodes)
    for i in reversed(g.order):
        succ = g.successors(i)
        reaches_output[i] = any(t in g.outputs for t in g.nodes[i].output) or any(reaches_output[j] for j in succ)
        feature_below[i] = any(j in feature or feature_below[j] for j in succ)
    return reaches_output, feature_below


def _reason(i: int, g: _Graph, is_head: bool, is_decode_conv: bool) -> str:
    """Why head or tail node ``i`` stays float, by what it does."""
    node = g.nodes[i]
    if is_head:
        return _WEIGHTED_OPS[node.op_type]
    if is_decode_conv or (node.op_type == "Softmax" and _feeds_decode_conv(i, g)):
        return REASON_DFL
    if node.op_type == "Softmax":
        return REASON_SOFTMAX
    if node.op_type == "Sigmoid":
        return REASON_SCORES
    if node.op_type in _SELECT_OPS:
        return REASON_SELECT
    return REASON_DECODE


def _feeds_decode_conv(i: int, g: _Graph, depth: int = 8) -> bool:
    """Node ``i`` (a Softmax) reaches a Conv through layout-only ops: the DFL expectation."""
    frontier = g.successors(i)
    for _ in range(depth):
        nxt = []
        for j in frontier:
            op = g.nodes[j].op_type
            if op == "Conv":
                return True
            if op in _LAYOUT_OPS:
                nxt.extend(g.successors(j))
        frontier = nxt
    return False


def topological_order(nodes, producer: Dict[str, int]) -> List[int]:
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


def _fed_by_softmax(node, g: _Graph, depth: int = 8) -> bool:
    """A Conv whose data input comes from a Softmax through layout-only ops (the DFL expectation)."""
    tensor = node.input[0]
    for _ in range(depth):
        i = g.producer.get(tensor)
        if i is None:
            return False
        if g.nodes[i].op_type == "Softmax":
            return True
        if g.nodes[i].op_type not in _LAYOUT_OPS or not g.nodes[i].input:
            return False
        tensor = g.nodes[i].input[0]
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


def excluded_nodes(model, keep_head_float: bool, patterns: Sequence[str]) -> List[ExcludedNode]:
    """What stays float: the head and decode tail (``keep_head_float``), then ``patterns``."""
    excluded = sensitive_nodes(model) if keep_head_float else []
    taken = {e.name for e in excluded}
    op_of = {n.name: n.op_type for n in model.graph.node}
    return excluded + [ExcludedNode(n, op_of.get(n, ""), REASON_USER)
                       for n in resolve_excludes(model, patterns) if n not in taken]


def tensor_order(model) -> List[str]:
    """Graph input first, then every node output in graph order."""
    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    names += [t for n in model.graph.node for t in n.output if t]
    return names
