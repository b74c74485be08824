"""The demo's served score threshold, chosen on the validation split (best F1 at IoU 0.5).

A detector trained for a few minutes is right but unsure: its scores for true objects can
all sit below the usual 0.25, and a server at 0.25 would return nothing. The threshold
that best balances precision and recall on validation images is what a user would pick
for such a model; the demo serves at it when it is below the default, and says so.
"""

from __future__ import annotations

from typing import List, NamedTuple, Sequence, Tuple

import numpy as np

IOU = 0.5


class ThresholdChoice(NamedTuple):
    threshold: float
    f1: float
    precision: float
    recall: float


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def match_image(boxes, scores, classes, gt_boxes, gt_classes, iou: float = IOU) -> List[Tuple[float, bool]]:
    """(score, true positive?) per detection of one image: greedy by score, one ground-truth
    box per detection, same class, IoU >= ``iou``."""
    taken = np.zeros(len(gt_boxes), dtype=bool)
    out = []
    for k in np.argsort(-np.asarray(scores), kind="stable"):
        hit = False
        candidates = np.flatnonzero((np.asarray(gt_classes) == classes[k]) & ~taken)
        if len(candidates):
            overlaps = _iou(np.asarray(boxes[k], dtype=np.float64), np.asarray(gt_boxes, np.float64)[candidates])
            best = int(np.argmax(overlaps))
            if overlaps[best] >= iou:
                taken[candidates[best]], hit = True, True
        out.append((float(scores[k]), hit))
    return out


def best_f1_threshold(matches: Sequence[Tuple[float, bool]], positives: int) -> ThresholdChoice:
    """The score threshold with the best F1 over ``matches`` (every detection's score and
    whether it is a true positive) against ``positives`` ground-truth boxes."""
    if not matches or positives == 0:
        return ThresholdChoice(1.0, 0.0, 0.0, 0.0)
    order = sorted(matches, key=lambda m: -m[0])
    tp = np.cumsum([m[1] for m in order])
    n = np.arange(1, len(order) + 1)
    precision, recall = tp / n, tp / positives
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-9)
    i = int(np.argmax(f1))
    return ThresholdChoice(order[i][0], float(f1[i]), float(precision[i]), float(recall[i]))


def choose_threshold(data, detect, batch: int = 8) -> ThresholdChoice:
    """``best_f1_threshold`` of ``detect`` (image paths -> detections, e.g. ``offline_detector``
    at a low score threshold) on ``data``'s samples."""
    matches: List[Tuple[float, bool]] = []
    samples = list(data.samples)
    for start in range(0, len(samples), batch):
        chunk = samples[start:start + batch]
        for s, (boxes, scores, classes) in zip(chunk, detect([s.image_path for s in chunk])):
            matches += match_image(boxes, scores, classes, s.boxes, s.classes)
    return best_f1_threshold(matches, sum(len(s.boxes) for s in samples))
