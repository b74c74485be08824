"""Public entry points for datasets: the records, the readers, and ``load_dataset``.

Every reader validates everything at load time (files, label lines, class ids, box
geometry) and raises ``UsageError`` naming the file and line, so a training run never
dies halfway through an epoch on a bad label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from generator.data.coco import load_coco, to_coco_json
from generator.data.records import DetectionData, Sample
from generator.data.yolo import load_yolo
from generator.errors import UsageError

__all__ = ["DetectionData", "Sample", "load_coco", "load_dataset", "load_yolo", "to_coco_json"]


def load_dataset(spec: Path, split: str, images_dir: Optional[Path] = None) -> DetectionData:
    """A COCO ``.json`` (images in ``images_dir``, default: the JSON's folder, then its
    ``images/`` subfolder) or a YOLO data YAML / folder with ``data.yaml``.

    ``split`` selects the YOLO split; a COCO JSON is a single split already.
    """
    spec = Path(spec)
    if spec.suffix.lower() == ".json":
        return load_coco(spec, images_dir or _coco_images_dir(spec))
    if spec.is_dir() or spec.suffix.lower() in (".yaml", ".yml"):
        return load_yolo(spec, split)
    if not spec.exists():
        raise UsageError(f"dataset not found: {spec}")
    raise UsageError(f"{spec}: unknown dataset format (expected a COCO .json, a data .yaml or a folder with data.yaml)")


def _coco_images_dir(annotations: Path) -> Path:
    """Where the images of a COCO JSON usually are, when not told."""
    beside = annotations.parent / "images"
    return beside if beside.is_dir() else annotations.parent
