"""Detector output decoding and class-aware NMS for a whole batch.

Decoding (best class per anchor, threshold, top-K, gather) is vectorized over the batch
in numpy: it reads the big ``[B, 4 + C, A]`` tensor once. NMS then runs on each image's
few candidates with OpenCV's class-aware ``cv2.dnn.NMSBoxesBatched`` (C++), or with an
exact greedy pass vectorized over the batch (numpy) where OpenCV is missing; both keep
the same detections (tests/unit/test_boxes.py). Measured in benchmarks/nms.py.

Input follows the output contract: ``raw [B, 4 + C, A]`` with boxes as cx, cy, w, h in
letterboxed pixels and class probabilities. Output is fixed-size and padded, like
TensorRT's EfficientNMS: ``num [B]``, ``boxes [B, D, 4]`` (x1, y1, x2, y2 in original
image pixels), ``scores [B, D]``, ``classes [B, D]`` (-1 in padding).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

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


def postprocess(raw: np.ndarray, transforms: np.ndarray, score_threshold: float = 0.25,
                iou_threshold: float = 0.45, max_detections: int = 100,
                max_candidates: int = 1024) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode + NMS + map boxes back to original pixels, for a whole batch.

    One pass over the class scores (their max per anchor); the winning class is looked
    up only for the candidates above the threshold.
    """
    raw = np.ascontiguousarray(raw, dtype=np.float32)
    b, fields, anchors = raw.shape
    conf = raw[:, 4:, :].max(axis=1)  # [B, A]
    candidate = conf > score_threshold
    k = int(min(max_candidates, candidate.sum(axis=1).max(initial=0)))
    order = np.argsort(np.where(candidate, -conf, np.inf), axis=1, kind="stable")[:, :k]
    rows = np.arange(b)[:, None]
    conf_k, valid = conf[rows, order], candidate[rows, order]
    # one flat gather of the candidates' fields: [B, 4 + C, K]
    flat = (rows * (fields * anchors))[:, None, :] + (np.arange(fields) * anchors)[None, :, None] + order[:, None, :]
    picked = raw.reshape(-1).take(flat)
    cls_k = picked[:, 4:, :].argmax(axis=1)  # [B, K]
    cx, cy, w, h = picked[:, 0], picked[:, 1], picked[:, 2] / 2, picked[:, 3] / 2
    xyxy = np.stack((cx - w, cy - h, cx + w, cy + h), axis=-1)
    if cv2 is not None:
        keep = opencv_keep(xyxy, cls_k, valid, conf_k, iou_threshold)
    else:
        keep = greedy_keep(xyxy, cls_k, valid, iou_threshold)
    return _gather(keep, xyxy, conf_k, cls_k, transforms, max_detections)


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


def unletterbox(xyxy: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Boxes in letterboxed pixels -> original pixels, clipped to the image.

    ``transform`` rows are (scale, pad_x, pad_y, width, height); shapes broadcast.
    """
    scale, pad_x, pad_y, w, h = (transform[..., i:i + 1] for i in range(5))
    x = (xyxy[..., 0::2] - pad_x) / scale
    y = (xyxy[..., 1::2] - pad_y) / scale
    x = np.clip(x, 0, w)
    y = np.clip(y, 0, h)
    return np.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), axis=-1).astype(np.float32)


def letterbox_boxes(xyxy: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Inverse of ``unletterbox`` (without clipping): original pixels -> letterboxed pixels."""
    scale, pad_x, pad_y = (transform[..., i:i + 1] for i in range(3))
    out = np.array(xyxy, dtype=np.float32, copy=True)
    out[..., 0::2] = out[..., 0::2] * scale + pad_x
    out[..., 1::2] = out[..., 1::2] * scale + pad_y
    return out


def rescale_detections(num: np.ndarray, xyxy: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                       transforms: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Padded detections already through NMS (TensorRT's EfficientNMS inside the plan),
    boxes in letterboxed pixels -> the same layout as ``postprocess``: boxes in original
    pixels, padding zeroed with class -1."""
    num = np.asarray(num, dtype=np.int32).reshape(-1)
    b, d = np.asarray(scores).shape
    num = np.clip(num, 0, d)
    real = np.arange(d)[None, :] < num[:, None]  # [B, D]
    boxes = unletterbox(np.asarray(xyxy, np.float32), np.asarray(transforms, np.float32)[:, None, :])
    boxes = np.where(real[..., None], boxes, np.float32(0))
    out_scores = np.where(real, np.asarray(scores, np.float32), np.float32(0))
    out_classes = np.where(real, np.asarray(classes).astype(np.int32), np.int32(-1))
    return num, boxes.astype(np.float32), out_scores.astype(np.float32), out_classes.astype(np.int32)
