"""``end-to-end``: one output ``[N, K, 6]``, one row per object, already through NMS or NMS-free.

Per row: x1, y1, x2, y2 in letterboxed pixels, the score, the class index (stored as a
float, as YOLOv10, Ultralytics' ``nms=False``/``nms=True`` exports and TopK tails write it).
Padding rows have score 0. Nothing is left to do but threshold and keep the best.
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np

from .base import FLOATS, Candidates, Layout, OutputShape, OutputSpec, check_dims, check_dtype, pick_rows, \
    top_candidates


class EndToEnd(Layout):
    """The ``[N, K, 6]`` layout: threshold and sort, no NMS."""

    name = "end-to-end"
    needs_nms = False
    num_outputs = 1
    outputs_text = "one output [N, K, 6] (x1, y1, x2, y2, score, class)"

    def output_shape(self, outputs: List[OutputSpec]) -> OutputShape:
        spec = outputs[0]
        check_dims(spec, "[N, K, 6]", 3, equal=((2, 6),))
        check_dtype(spec, FLOATS)
        return OutputShape(num_classes=None, num_candidates=spec.dims[1])

    def decode(self, outputs: Sequence[np.ndarray], score_threshold: float, max_candidates: int) -> Candidates:
        """The rows above the threshold, best first (the model's order is not relied on)."""
        raw = np.asarray(outputs[0], dtype=np.float32)
        order, scores, valid = top_candidates(raw[:, :, 4], score_threshold, max_candidates)
        picked = pick_rows(raw, order)  # [B, K', 6]
        classes = np.rint(picked[:, :, 5]).astype(np.int64)
        return Candidates(np.ascontiguousarray(picked[:, :, :4]), scores, classes, valid)
