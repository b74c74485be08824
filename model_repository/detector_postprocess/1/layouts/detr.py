"""``detr``: set-prediction heads (RT-DETR, D-FINE, the DETR family), one box per query.

Either one output ``[N, Q, 4 + C]`` or two outputs, boxes ``[N, Q, 4]`` and class scores
``[N, Q, C]`` (in either order: the one whose last dim is 4 holds the boxes; when both
have 4, the first). Boxes are centre x, y, width, height normalized to 0..1 of the network
input (the layout's ``width`` and ``height`` scale them to pixels); class scores are
probabilities, or logits with ``scores="logits"`` (then through the sigmoid). Each query
gives its best class; there is no NMS.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from .base import (FLOATS, Candidates, Layout, LayoutMismatch, OutputShape, OutputSpec, check_dims, check_dtype,
                   cxcywh_to_xyxy, pick_rows, top_candidates)


class Detr(Layout):
    """Queries with normalized boxes and per-class scores; no NMS."""

    name = "detr"
    needs_nms = False
    num_outputs = 1
    output_counts = (1, 2)
    outputs_text = ("one output [N, Q, 4+C] (normalized cx, cy, w, h + class scores) or two outputs "
                    "boxes [N, Q, 4] and scores [N, Q, C]")

    def output_shape(self, outputs: List[OutputSpec]) -> OutputShape:
        for spec in outputs:
            check_dtype(spec, FLOATS)
        if len(outputs) == 1:
            check_dims(outputs[0], "[N, Q, 4+C] with C >= 1", 3, at_least=((2, 5),))
            return OutputShape(num_classes=outputs[0].dims[2] - 4, num_candidates=outputs[0].dims[1])
        boxes, scores = _boxes_first(outputs, lambda spec: spec.dims[-1] if spec.dims else None)
        check_dims(boxes, "[N, Q, 4]", 3, equal=((2, 4),))
        check_dims(scores, "[N, Q, C]", 3, fixed=(2,))
        if None not in (boxes.dims[1], scores.dims[1]) and boxes.dims[1] != scores.dims[1]:
            raise LayoutMismatch(f"output {scores.name!r} must be [N, Q, C] with Q = {boxes.dims[1]} as in "
                                 f"{boxes.name!r}, got {scores.dims}")
        return OutputShape(num_classes=scores.dims[2], num_candidates=boxes.dims[1] or scores.dims[1])

    def decode(self, outputs: Sequence[np.ndarray], score_threshold: float, max_candidates: int) -> Candidates:
        """Best class per query (the max of logits is the logit of the max), then the top queries."""
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"layout detr needs the network input size to scale its boxes "
                             f"(height={self.height}, width={self.width})")
        boxes, scores = self._split([np.asarray(o, dtype=np.float32) for o in outputs])
        conf = scores.max(axis=2)
        if self.scores == "logits":
            conf = _sigmoid(conf)
        order, top, valid = top_candidates(conf, score_threshold, max_candidates)
        classes = pick_rows(scores, order).argmax(axis=2)
        b = pick_rows(boxes, order) * np.float32([self.width, self.height, self.width, self.height])
        return Candidates(cxcywh_to_xyxy(b[..., 0], b[..., 1], b[..., 2], b[..., 3]), top, classes, valid)

    @staticmethod
    def _split(arrays: List[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        if len(arrays) == 1:
            return arrays[0][:, :, :4], arrays[0][:, :, 4:]
        return _boxes_first(arrays, lambda a: a.shape[-1])


def _boxes_first(pair, last_dim):
    """``(boxes, scores)`` of two outputs: boxes are the one whose last dim is 4 (the first if both)."""
    first, second = pair
    return (second, first) if last_dim(first) != 4 and last_dim(second) == 4 else (first, second)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow warnings for very negative logits."""
    with np.errstate(over="ignore"):
        return (1 / (1 + np.exp(-x))).astype(np.float32)
