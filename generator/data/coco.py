"""COCO detection JSON: reader, and the ground-truth dict pycocotools evaluates against.

Id mapping (one, used everywhere): class index ``k`` <-> COCO ``category_id = k + 1``;
sample ``i`` of a DetectionData <-> COCO ``image id = i + 1``. When reading, categories
are mapped to contiguous indices in sorted-id order, so COCO's gapped ids 1..90 become
0..79. Crowd annotations are skipped (they are "ignore" regions, not objects); boxes are
clipped to the image and boxes that are empty afterwards are skipped, as Ultralytics'
and mmdetection's COCO readers do (COCO itself holds a few such degenerate boxes).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from generator.data.imagesize import image_size
from generator.data.records import DetectionData, Sample
from generator.errors import UsageError


def load_coco(annotations: Path, images_dir: Path) -> DetectionData:
    """Read a COCO instances JSON whose ``file_name`` entries are relative to ``images_dir``."""
    annotations, images_dir = Path(annotations), Path(images_dir)
    doc = _read_json(annotations)
    names, cat_index = _categories(doc, annotations)
    if not images_dir.is_dir():
        raise UsageError(f"{annotations}: images folder does not exist: {images_dir}")
    samples = _images(doc, images_dir, annotations)
    if not samples:
        raise UsageError(f"{annotations}: no images found under 'images'")
    per_image = _annotations(doc, samples, cat_index, annotations)
    for image_id, sample in samples.items():
        rows = per_image.get(image_id, [])
        if rows:
            sample.classes = np.array([r[0] for r in rows], dtype=np.int64)
            sample.boxes = np.array([r[1] for r in rows], dtype=np.float32)
    ordered = [samples[k] for k in sorted(samples)]
    return DetectionData(names, ordered, f"coco:{annotations}")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise UsageError(f"COCO annotations not found: {path}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read COCO annotations: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) \
            or not isinstance(doc.get("categories"), list):
        raise UsageError(f"{path}: not a COCO detection file (needs 'images' and 'categories' lists)")
    return doc


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _categories(doc: dict, path: Path) -> Tuple[List[str], Dict[int, int]]:
    """Names in sorted category-id order and ``category_id -> class index``."""
    cats = {}
    for cat in doc["categories"]:
        if not isinstance(cat, dict) or not _is_int(cat.get("id")) or "name" not in cat:
            raise UsageError(f"{path}: category without an integer 'id' and a 'name': {cat!r}")
        if cat["id"] in cats:
            raise UsageError(f"{path}: duplicate category id {cat['id']}")
        cats[cat["id"]] = str(cat["name"])
    if not cats:
        raise UsageError(f"{path}: 'categories' is empty")
    ids = sorted(cats)
    return [cats[i] for i in ids], {cid: k for k, cid in enumerate(ids)}


def _images(doc: dict, images_dir: Path, path: Path) -> Dict[int, Sample]:
    """``image id -> Sample`` without boxes; every file must exist."""
    samples: Dict[int, Sample] = {}
    for img in doc["images"]:
        if not isinstance(img, dict) or not _is_int(img.get("id")) or not isinstance(img.get("file_name"), str):
            raise UsageError(f"{path}: image without an integer 'id' and a 'file_name': {img!r}")
        image_id = img["id"]
        if image_id in samples:
            raise UsageError(f"{path}: duplicate image id {image_id}")
        file = images_dir / img["file_name"]
        if not file.is_file():
            raise UsageError(f"{path}: image id {image_id}: {img['file_name']} not found under {images_dir}")
        width, height = img.get("width"), img.get("height")
        if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
            width, height = image_size(file)  # optional in hand-made files
        samples[image_id] = Sample(file, width=width, height=height)
    return samples


def _annotations(doc: dict, samples: Dict[int, Sample], cat_index: Dict[int, int], path: Path):
    """``image id -> [(class, xyxy)]`` for the non-crowd, non-empty boxes."""
    per_image: Dict[int, list] = {}
    annotations = doc.get("annotations", [])
    if not isinstance(annotations, list):
        raise UsageError(f"{path}: 'annotations' must be a list")
    for n, ann in enumerate(annotations):
        where = f"{path}: annotation id {ann.get('id', f'#{n}') if isinstance(ann, dict) else f'#{n}'}"
        if not isinstance(ann, dict):
            raise UsageError(f"{where}: expected an object, got {ann!r}")
        if ann.get("iscrowd", 0):
            continue
        sample = samples.get(ann.get("image_id"))
        if sample is None:
            raise UsageError(f"{where}: unknown image_id {ann.get('image_id')!r}")
        if ann.get("category_id") not in cat_index:
            raise UsageError(f"{where}: unknown category_id {ann.get('category_id')!r}")
        box = _xyxy(ann.get("bbox"), sample, where)
        if box is not None:
            per_image.setdefault(ann["image_id"], []).append((cat_index[ann["category_id"]], box))
    return per_image


def _xyxy(bbox, sample: Sample, where: str):
    """COCO ``[x, y, w, h]`` -> clipped xyxy, or None when nothing is left of it."""
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)
            and all(math.isfinite(v) for v in bbox)):
        raise UsageError(f"{where}: bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    x1, y1 = min(max(x, 0.0), sample.width), min(max(y, 0.0), sample.height)
    x2, y2 = min(max(x + w, 0.0), sample.width), min(max(y + h, 0.0), sample.height)
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def to_coco_json(data: DetectionData) -> dict:
    """A COCO ground-truth dict for pycocotools (ids as in the module docstring)."""
    images, annotations = [], []
    for i, s in enumerate(data.samples):
        images.append({"id": i + 1, "file_name": str(s.image_path), "width": int(s.width), "height": int(s.height)})
        for box, cls in zip(np.asarray(s.boxes, dtype=np.float64), np.asarray(s.classes)):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(cls) + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                "iscrowd": 0})
    categories = [{"id": k + 1, "name": name, "supercategory": ""} for k, name in enumerate(data.names)]
    return {"info": {"description": data.source}, "licenses": [], "images": images,
            "annotations": annotations, "categories": categories}
