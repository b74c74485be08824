"""Typed detection results and their conversions: dicts, JSON, COCO results."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

# class id -> COCO category id: a mapping, a function, or None for "class id + 1"
CategoryIds = Union[None, Mapping[int, int], Callable[[int], int]]


def category_id(class_id: int, category_ids: CategoryIds = None, class_name: str = "") -> int:
    """The COCO ``category_id`` of a class: ``class_id + 1`` by default (as ``tritonforge`` writes
    COCO ground truth), else looked up in ``category_ids``."""
    if category_ids is None:
        return class_id + 1
    if callable(category_ids):
        return int(category_ids(class_id))
    try:
        return int(category_ids[class_id])
    except KeyError:
        raise KeyError(f"category_ids has no entry for class {class_id} ({class_name!r})") from None


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

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def to_coco(self, image_id: int, category_ids: CategoryIds = None) -> Dict[str, Any]:
        """One COCO results entry: ``image_id``, ``category_id``, ``bbox`` [x, y, w, h], ``score``."""
        return {"image_id": int(image_id), "category_id": category_id(self.class_id, category_ids, self.class_name),
                "bbox": [self.x1, self.y1, self.width, self.height], "score": self.score}


@dataclass(frozen=True)
class FrameResult:
    """The outcome for one frame of :meth:`DetectionClient.stream`: its index in the
    input, and either its detections or the error that frame met."""

    index: int
    detections: List[Detection]
    error: Optional[Exception] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> Dict[str, Any]:
        return {"index": self.index, "detections": to_dicts(self.detections),
                "error": None if self.error is None else f"{type(self.error).__name__}: {self.error}"}

    def to_coco(self, image_id: Optional[int] = None, category_ids: CategoryIds = None) -> List[Dict[str, Any]]:
        """COCO results of this frame; ``image_id`` defaults to ``index + 1``."""
        image = self.index + 1 if image_id is None else image_id
        return [d.to_coco(image, category_ids) for d in self.detections]


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


def to_dicts(detections: Sequence[Detection]) -> List[Dict[str, Any]]:
    """Plain dicts (``x1 y1 x2 y2 score class_id class_name``), ready for JSON."""
    return [d.to_dict() for d in detections]


def to_json(detections: Sequence[Detection], **kwargs: Any) -> str:
    """JSON of :func:`to_dicts`; ``kwargs`` go to :func:`json.dumps`."""
    return json.dumps(to_dicts(detections), **kwargs)


def to_coco(per_image: Sequence[Sequence[Detection]], image_ids: Optional[Sequence[int]] = None,
            category_ids: CategoryIds = None) -> List[Dict[str, Any]]:
    """COCO results (the list ``pycocotools`` ``loadRes`` reads) for one list of detections per image.

    ``image_ids`` default to 1, 2, ... in order; ``category_ids`` maps class ids to
    COCO category ids (default: class id + 1).
    """
    ids = list(range(1, len(per_image) + 1)) if image_ids is None else list(image_ids)
    if len(ids) != len(per_image):
        raise ValueError(f"{len(ids)} image_ids for {len(per_image)} images")
    return [d.to_coco(image_id, category_ids) for image_id, dets in zip(ids, per_image) for d in dets]
