"""``efficient-nms``: the four outputs of TensorRT's EfficientNMS, in this order.

``num_dets`` INT32 ``[N, 1]``, ``det_boxes`` FP32 ``[N, K, 4]`` (x1, y1, x2, y2 in letterboxed
pixels), ``det_scores`` FP32 ``[N, K]``, ``det_classes`` INT32 (or INT64) ``[N, K]``: community
YOLO exports ending in the ``EfficientNMS_TRT`` node and plans built with ``--nms engine``.
A slot is a detection when it is below ``num_dets`` and its score above the threshold.
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np

from .base import (FLOATS, INTEGERS, Candidates, Layout, LayoutMismatch, OutputShape, OutputSpec, check_dims,
                   check_dtype, top_candidates)

_PATTERNS = ("[N, 1]", "[N, K, 4]", "[N, K]", "[N, K]")
_DTYPES = (INTEGERS, FLOATS, FLOATS, INTEGERS)


class EfficientNMS(Layout):
    """Detections already through NMS, counted by ``num_dets``."""

    name = "efficient-nms"
    needs_nms = False
    num_outputs = 4
    outputs_text = ("four outputs num_dets [N, 1], det_boxes [N, K, 4], det_scores [N, K], det_classes [N, K] "
                    "(TensorRT's EfficientNMS)")

    def output_shape(self, outputs: List[OutputSpec]) -> OutputShape:
        num, boxes, scores, classes = outputs
        check_dims(num, _PATTERNS[0], 2, equal=((1, 1),))
        check_dims(boxes, _PATTERNS[1], 3, equal=((2, 4),))
        for spec, pattern in zip((scores, classes), _PATTERNS[2:]):
            check_dims(spec, pattern, 2)
        for spec, dtypes in zip(outputs, _DTYPES):
            check_dtype(spec, dtypes)
        k = boxes.dims[1]
        for spec in (scores, classes):
            if None not in (k, spec.dims[1]) and spec.dims[1] != k:
                raise LayoutMismatch(f"output {spec.name!r} must be [N, K] with K = {k} as in {boxes.name!r}, "
                                     f"got {spec.dims}")
        return OutputShape(num_classes=None, num_candidates=k)

    def decode(self, outputs: Sequence[np.ndarray], score_threshold: float, max_candidates: int) -> Candidates:
        """The counted slots above the threshold, best first."""
        num, boxes, scores, classes = outputs
        scores = np.asarray(scores, dtype=np.float32)
        counted = np.arange(scores.shape[1])[None, :] < np.asarray(num).reshape(-1, 1)
        conf = np.where(counted, scores, np.float32(-np.inf))
        order, top, valid = top_candidates(conf, score_threshold, max_candidates)
        rows = np.arange(scores.shape[0])[:, None]
        xyxy = np.asarray(boxes, dtype=np.float32)[rows, order]
        top = np.where(valid, top, np.float32(0))  # no -inf left in the padding
        return Candidates(xyxy, top, np.asarray(classes)[rows, order].astype(np.int64), valid)
