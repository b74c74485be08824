"""Graph analysis for quantization: which nodes stay float, and why.

The detection head's output convolutions and everything after them (DFL softmax and
expectation, anchor arithmetic, sigmoid, output concat) stay float by default: see
``sensitive_nodes``. Pure ONNX protobuf walking; no ONNX Runtime.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Dict, List, Sequence, Set

from generator.errors import UsageError

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
    """A node kept in float, with the reason shown to the user."""

    name: str
    op_type: str
    reason: str


class _Graph:
    """Index of a graph's nodes: producers, consumers, topological order."""

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


def sensitive_nodes(model) -> List[ExcludedNode]:
    """The detection head's output convolutions and the decode tail after them.

    Found from the graph, not from names: a *head output convolution* is a Conv that
    reaches the graph output without passing through another feature Conv (the DFL
    expectation, a Conv fed by a Softmax, does not count as one); the *tail* is every
    node that feeds no head output convolution (softmax, DFL, anchor arithmetic, sigmoid,
    concat). On an Ultralytics-style yolo export these are ``.../box.i.2/Conv``,
    ``.../cls.i.2/Conv`` and everything from the per-level Concat on.
    """
    g = _Graph(model)
    decode_conv = {i for i, n in enumerate(g.nodes) if n.op_type == "Conv" and _fed_by_softmax(n, g)}
    feature_conv = {i for i, n in enumerate(g.nodes) if n.op_type == "Conv" and i not in decode_conv}
    reaches_output, conv_below = _downstream(g, feature_conv)
    heads = [i for i in g.order if i in feature_conv and reaches_output[i] and not conv_below[i]]
    if not heads:
        return []
    feeds_head = g.ancestors(heads)
    excluded = []
    for i in g.order:
        if i in heads or (i not in feeds_head and reaches_output[i]):
            node = g.nodes[i]
            excluded.append(ExcludedNode(node.name, node.op_type, _reason(node, i in heads, i in decode_conv)))
    return excluded


def _downstream(g: _Graph, feature_conv: Set[int]):
    """Per node: does it reach a graph output; is there a feature Conv below it."""
    reaches_output = [False] * len(g.nodes)
    conv_below = [False] * len(g.nodes)
    for i in reversed(g.order):
        succ = g.successors(i)
        reaches_output[i] = any(t in g.outputs for t in g.nodes[i].output) or any(reaches_output[j] for j in succ)
        conv_below[i] = any(j in feature_conv or conv_below[j] for j in succ)
    return reaches_output, conv_below


def _reason(node, is_head: bool, is_decode_conv: bool) -> str:
    if is_head:
        return REASON_HEAD_CONV
    if is_decode_conv or node.op_type == "Softmax":
        return REASON_DFL
    if node.op_type == "Sigmoid":
        return REASON_SCORES
    return REASON_DECODE


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
