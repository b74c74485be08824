"""COCO mAP@0.5:0.95, mAP@0.5 and per-class AP with pycocotools."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np

from generator._lazy import require
from generator.evaluation.predictors import DetectFn


@dataclass
class EvalResult:
    map50_95: float
    map50: float
    per_class: Dict[str, float] = field(default_factory=dict)  # AP@0.5:0.95 per class
    images: int = 0
    detections: int = 0

    def to_json(self) -> dict:
        return {"map50_95": self.map50_95, "map50": self.map50, "per_class": self.per_class,
                "images": self.images, "detections": self.detections}


def coco_results(detections, image_ids: List[int]) -> List[dict]:
    """Per-image (boxes, scores, classes) -> COCO result records (category id = class + 1)."""
    records = []
    for image_id, (b, s, c) in zip(image_ids, detections):
        for box, score, cls in zip(np.asarray(b, float), np.asarray(s, float), np.asarray(c, int)):
            x1, y1, x2, y2 = box.tolist()
            records.append({"image_id": image_id, "category_id": int(cls) + 1,
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    return records


def evaluate(data, detect: DetectFn, batch: int = 8, progress: bool = True, desc: str = "eval") -> EvalResult:
    """Run ``detect`` over every sample of ``data`` (a DetectionData) and score it."""
    from tqdm import tqdm

    from generator.data.dataset import to_coco_json

    gt_dict = to_coco_json(data)
    image_ids = [img["id"] for img in gt_dict["images"]]
    samples = data.samples
    detections = []
    for start in tqdm(range(0, len(samples), batch), desc=desc, disable=not progress, leave=False):
        detections.extend(detect([s.image_path for s in samples[start:start + batch]]))
    return score(gt_dict, coco_results(detections, image_ids), list(data.names))


def score(gt_dict: dict, results: List[dict], names: List[str]) -> EvalResult:
    """pycocotools bbox evaluation (its console output is swallowed)."""
    require("pycocotools", "for COCO mAP")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    n_images = len(gt_dict["images"])
    if not results:
        return EvalResult(0.0, 0.0, {n: 0.0 for n in names}, n_images, 0)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    per_class = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = ev.eval["precision"][:, :, k, 0, -1]  # IoU thresholds x recall, all areas, 100 detections
        per_class[names[cat_id - 1]] = float(p[p > -1].mean()) if (p > -1).any() else 0.0
    return EvalResult(max(0.0, float(ev.stats[0])), max(0.0, float(ev.stats[1])), per_class, n_images, len(results))
