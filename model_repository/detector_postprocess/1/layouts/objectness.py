"""``objectness``: one output ``[N, A, 5 + C]`` (YOLOv5, YOLOv7, decoded YOLOX heads).

Per anchor: box centre x, y, width, height in letterboxed pixels, the objectness, then
``C`` class probabilities (all already through the sigmoid). The score is objectness
times the best class probability, as YOLOv5's own NMS computes it; NMS is still to run.
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np

from .base import (FLOATS, Candidates, Layout, OutputShape, OutputSpec, check_dims, check_dtype, cxcywh_to_xyxy,
                   pick_rows, top_candidates)


class Objectness(Layout):
    """The ``[N, A, 5 + C]`` layout, decoded for the whole batch at once."""

    name = "objectness"
    needs_nms = True
    num_outputs = 1
    outputs_text = "one output [N, A, 5+C] (boxes, objectness, class scores)"

    def output_shape(self, outputs: List[OutputSpec]) -> OutputShape:
        spec = outputs[0]
        check_dims(spec, "[N, A, 5+C] with fixed A and C >= 1", 3, fixed=(1,), at_least=((2, 6),))
        check_dtype(spec, FLOATS)
        return OutputShape(num_classes=spec.dims[2] - 5, num_candidates=spec.dims[1])

    def plausible(self, shape: OutputShape) -> bool:
        """A real head has more anchors than fields per anchor (``[N, 25200, 85]``)."""
        return shape.num_candidates > 5 + shape.num_classes

    def decode(self, outputs: Sequence[np.ndarray], score_threshold: float, max_candidates: int) -> Candidates:
        """Score every anchor (objectness x best class), then gather only the chosen rows."""
        raw = np.asarray(outputs[0], dtype=np.float32)
        conf = raw[:, :, 4] * raw[:, :, 5:].max(axis=2)  # [B, A]
        order, scores, valid = top_candidates(conf, score_threshold, max_candidates)
        picked = pick_rows(raw, order)  # [B, K, 5 + C]
        classes = picked[:, :, 5:].argmax(axis=2)
        xyxy = cxcywh_to_xyxy(picked[..., 0], picked[..., 1], picked[..., 2], picked[..., 3])
        return Candidates(xyxy, scores, classes, valid)
