"""Typed detection results."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import List, Sequence

import numpy as np


@dataclass(frozen=True)
class Detection:
    """One detected object; coordinates in pixels of the original image."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    class_id: int
    class_name: str

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    def to_dict(self) -> dict:
        return asdict(self)


def from_arrays(num: np.ndarray, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                names: Sequence[str]) -> List[List[Detection]]:
    """The ensemble's padded outputs -> one list of detections per image."""
    results = []
    for i in range(boxes.shape[0]):
        n = int(np.asarray(num[i]).reshape(-1)[0])
        dets = []
        for j in range(n):
            cid = int(classes[i, j])
            name = names[cid] if 0 <= cid < len(names) else str(cid)
            x1, y1, x2, y2 = (float(v) for v in boxes[i, j])
            dets.append(Detection(x1, y1, x2, y2, float(scores[i, j]), cid, name))
        results.append(dets)
    return results


def to_json(detections: Sequence[Detection], **kwargs) -> str:
    return json.dumps([d.to_dict() for d in detections], **kwargs)
