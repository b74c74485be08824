"""A plain folder of images as an (unlabelled) dataset: for distillation on unlabelled
images and for calibration."""

from __future__ import annotations

from pathlib import Path

from generator.data.imagesize import image_size
from generator.data.records import DetectionData, Sample, empty_boxes, empty_classes
from generator.errors import UsageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")  # what OpenCV decodes


def image_files(folder: Path):
    """Image files below ``folder``, sorted (deterministic)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"image folder not found: {folder}")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_image_folder(folder: Path, names) -> DetectionData:
    """Every image below ``folder`` as a sample without boxes."""
    files = image_files(folder)
    if not files:
        raise UsageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {folder}")
    samples = []
    for path in files:
        width, height = image_size(path)
        samples.append(Sample(path, empty_boxes(), empty_classes(), width, height))
    return DetectionData(list(names), samples, str(folder))
