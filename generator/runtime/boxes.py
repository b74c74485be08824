"""Class-aware NMS and padded detections for a whole batch.

The detector's outputs are decoded by their output layout (``layouts/``, vectorized
over the batch: the anchor-free decode reads the big ``[B, 4 + C, A]`` tensor once).
Where the model has no NMS of its own (the layout's ``needs_nms``), NMS then runs on
each image's few candidates with OpenCV's class-aware ``cv2.dnn.NMSBoxesBatched`` (C++),
or with an exact greedy pass vectorized over the batch (numpy) where OpenCV is missing;
both keep the same detections (tests/unit/test_boxes.py). Measured in benchmarks/nms.py.
Layouts that end in NMS or are NMS-free only keep their best ``max_detections``.

Output is fixed-size and padded, like TensorRT's EfficientNMS: ``num [B]``,
``boxes [B, D, 4]`` (x1, y1, x2, y2 in original image pixels), ``scores [B, D]``,
``classes [B, D]`` (-1 in padding).
"""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np

try:  # as part of the generator package (tests, offline use)
    from .layouts import DEFAULT_LAYOUT, Candidates, Layout, get_layout
    from .letterbox import letterbox_boxes, unletterbox  # noqa: F401 (letterbox_boxes: re-exported)
except ImportError:  # inside Triton: the modules are copied beside this file
    from layouts import DEFAULT_LAYOUT, Candidates, Layout, get_layout
    from letterbox import letterbox_boxes, unletterbox  # noqa: F401

try:
    import cv2
except ImportError:  # numpy-only NMS
    cv2 = None


def _intersections(boxes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``[B, K, K]`` intersection areas and ``[B, K]`` areas, with few temporaries."""
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[..., i]) for i in range(4))
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    iw = np.minimum(x2[:, :, None], x2[:, None, :])
    iw -= np.maximum(x1[:, :, None], x1[:, None, :])
    np.maximum(iw, 0, out=iw)
    ih = np.minimum(y2[:, :, None], y2[:, None, :])
    ih -= np.maximum(y1[:, :, None], y1[:, None, :])
    np.maximum(ih, 0, out=ih)
    iw *= ih
    return iw, area


def overlaps(boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """``[B, K, K]`` IoU > threshold, without the division: inter * (1 + t) > t * (area_i + area_j)."""
    inter, area = _intersections(boxes)
    t = np.float32(iou_threshold)
    rhs = area[:, :, None] + area[:, None, :]
    rhs *= t
    inter *= np.float32(1) + t
    return inter > rhs


def greedy_keep(boxes: np.ndarray, classes: np.ndarray, valid: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy class-aware NMS for candidates sorted by descending score, whole batch at once.

    Candidate j is kept iff no kept candidate i < j of the same class overlaps it by more
    than ``iou_threshold``. The overlap matrix is computed for the whole batch in one go;
    the greedy pass then visits, in score order, only the candidates that overlap some
    later one in some image, each visit one vectorized update across the batch.
    """
    b, k = valid.shape
    if k == 0:
        return valid.copy()
    overlap = overlaps(boxes, iou_threshold)
    overlap &= classes[:, :, None] == classes[:, None, :]
    overlap &= np.triu(np.ones((k, k), dtype=bool), 1)[None]
    overlap &= valid[:, :, None] & valid[:, None, :]
    keep = valid.copy()
    for i in np.nonzero(overlap.any(axis=(0, 2)))[0]:
        keep &= ~(overlap[:, i, :] & keep[:, i:i + 1])
    return keep


def opencv_keep(xyxy: np.ndarray, classes: np.ndarray, valid: np.ndarray, scores: np.ndarray,
                iou_threshold: float) -> np.ndarray:
    """``greedy_keep`` with OpenCV's C++ NMS, image by image, on the valid candidates only."""
    keep = np.zeros_like(valid)
    for i in range(valid.shape[0]):
        idx = np.nonzero(valid[i])[0]
        if len(idx) == 0:
            continue
        b = xyxy[i, idx]
        tlwh = np.column_stack((b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])).astype(np.float64)
        kept = cv2.dnn.NMSBoxesBatched(tlwh, scores[i, idx].astype(np.float32), classes[i, idx].astype(np.int32),
                                       -1.0, float(iou_threshold))
        keep[i, idx[np.asarray(kept, dtype=np.int64).reshape(-1)]] = True
    return keep


def postprocess(outputs: Union[np.ndarray, Sequence[np.ndarray]], transforms: np.ndarray,
                score_threshold: float = 0.25, iou_threshold: float = 0.45, max_detections: int = 100,
                max_candidates: int = 1024, layout: Union[str, Layout] = DEFAULT_LAYOUT,
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode + NMS + map boxes back to original pixels, for a whole batch.

    ``outputs`` is the detector's output (one array) or all its outputs in graph order;
    ``layout`` (a name, or a configured :class:`layouts.Layout` from ``get_layout(name,
    height=..., width=..., scores=...)``) says how they decode. NMS runs only when the
    layout asks for it (``needs_nms``); otherwise the model already keeps one box per
    object and the best ``max_detections`` valid candidates (decoded best first) are kept.
    """
    decoder = layout if isinstance(layout, Layout) else get_layout(layout)
    arrays = [outputs] if isinstance(outputs, np.ndarray) else list(outputs)
    cand = decoder.decode(arrays, score_threshold, max_candidates)
    keep = nms_keep(cand, iou_threshold) if decoder.needs_nms else cand.valid
    return _gather(keep, cand.xyxy, cand.scores, cand.classes, transforms, max_detections)


def nms_keep(cand: Candidates, iou_threshold: float) -> np.ndarray:
    """``[B, K]`` candidates kept by class-aware NMS: OpenCV's where it is installed, else numpy."""
    if cv2 is not None:
        return opencv_keep(cand.xyxy, cand.classes, cand.valid, cand.scores, iou_threshold)
    return greedy_keep(cand.xyxy, cand.classes, cand.valid, iou_threshold)


def _gather(keep, xyxy, conf, cls, transforms, max_det):
    b = keep.shape[0]
    rank = np.cumsum(keep, axis=1) - 1
    take = keep & (rank < max_det)
    num = take.sum(axis=1).astype(np.int32)
    out_boxes = np.zeros((b, max_det, 4), dtype=np.float32)
    out_scores = np.zeros((b, max_det), dtype=np.float32)
    out_classes = np.full((b, max_det), -1, dtype=np.int32)
    bi, ki = np.nonzero(take)
    slot = rank[bi, ki]
    out_boxes[bi, slot] = unletterbox(xyxy[bi, ki], np.asarray(transforms, np.float32)[bi])
    out_scores[bi, slot] = conf[bi, ki]
    out_classes[bi, slot] = cls[bi, ki]
    return num, out_boxes, out_scores, out_classes
