"""``anchor-free``: one output ``[N, 4 + C, A]`` (YOLOv8/11-style heads, our own families).

Per anchor: box centre x, y, width, height in letterboxed pixels, then ``C`` class
probabilities (already through the sigmoid). The score is the best class probability;
NMS is still to run.
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np

from .base import (FLOATS, Candidates, Layout, LayoutMismatch, OutputShape, OutputSpec, check_dtype,
                   cxcywh_to_xyxy, top_candidates)


class AnchorFree(Layout):
    """The ``[N, 4 + C, A]`` layout, decoded for the whole batch at once."""

    name = "anchor-free"
    needs_nms = True
    num_outputs = 1
    outputs_text = "one output [N, 4+C, A] (boxes + class scores)"

    def output_shape(self, outputs: List[OutputSpec]) -> OutputShape:
        name, dims, _ = outputs[0]
        if len(dims) != 3 or dims[1] is None or dims[2] is None or dims[1] < 5:
            raise LayoutMismatch(f"output {name!r} must be [N, 4+C, A] with fixed C and A, got {dims}")
        check_dtype(outputs[0], FLOATS)
        return OutputShape(num_classes=dims[1] - 4, num_candidates=dims[2])

    def plausible(self, shape: OutputShape) -> bool:
        """A real head has more anchors than fields per anchor (``[N, 84, 8400]``, not ``[N, 300, 6]``)."""
        return shape.num_candidates > 4 + shape.num_classes

    def decode(self, outputs: Sequence[np.ndarray], score_threshold: float, max_candidates: int) -> Candidates:
        """One pass over the class scores (their max per anchor); the winning class and the box
        are looked up only for the candidates above the threshold."""
        raw = np.ascontiguousarray(outputs[0], dtype=np.float32)
        b, fields, anchors = raw.shape
        conf = raw[:, 4:, :].max(axis=1)  # [B, A]
        order, scores, valid = top_candidates(conf, score_threshold, max_candidates)
        rows = np.arange(b)[:, None]
        # one flat gather of the candidates' fields, [B, 4 + C, K]: reads the big tensor once
        flat = (rows * (fields * anchors))[:, None, :] + (np.arange(fields) * anchors)[None, :, None] \
            + order[:, None, :]
        picked = raw.reshape(-1).take(flat)
        classes = picked[:, 4:, :].argmax(axis=1)  # [B, K]
        xyxy = cxcywh_to_xyxy(picked[:, 0], picked[:, 1], picked[:, 2], picked[:, 3])
        return Candidates(xyxy, scores, classes, valid)
