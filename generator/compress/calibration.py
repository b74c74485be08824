"""Calibration images for post-training quantization, preprocessed exactly as the server
does (``runtime.imaging.preprocess_bytes``: decode, letterbox, CHW float32 in the model's
input format: 0..1 RGB by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from generator.errors import UsageError

DATASET_SUFFIXES = (".json", ".yaml", ".yml")
DATA_YAML_NAMES = ("data.yaml", "data.yml")
MIN_IMAGES = 8


def calibration_paths(source: Path, count: int, min_images: int = MIN_IMAGES,
                      num_classes: Optional[int] = None) -> List[Path]:
    """The image files calibration uses: ``count`` evenly spaced over the sorted list.

    ``source`` is a dataset (COCO JSON, data YAML, folder with data.yaml: its train split)
    or a plain folder of images (searched recursively). A dataset whose class count is not
    the model's ``num_classes`` is refused: most likely the wrong dataset.
    """
    source = Path(source)
    if count < 1:
        raise UsageError(f"calibration needs at least one image, asked for {count}")
    if not source.exists():
        raise UsageError(f"calibration source not found: {source}")
    if _is_dataset(source):
        from generator.data.dataset import load_dataset

        dataset = load_dataset(source, "train")
        if num_classes is not None and len(dataset.names) != num_classes:
            raise UsageError(f"--data {source}: the dataset has {len(dataset.names)} classes but the model has "
                             f"{num_classes}; calibrate on the model's own data (a plain folder of images is taken "
                             "as is)")
        paths = [Path(s.image_path) for s in dataset.samples]
        where = f"in the train split of {source}"
    elif source.is_dir():
        from generator.data.folder import image_files

        paths = image_files(source)
        where = f"under {source}"
    else:
        raise UsageError(f"{source}: not a folder of images or a dataset (COCO .json, data .yaml, "
                         "folder with data.yaml)")
    if len(paths) < min_images:
        raise UsageError(f"found {len(paths)} images {where}; calibration needs at least {min_images}")
    if count >= len(paths):
        return paths
    # evenly spaced, so a dataset sorted by scene or class is still covered end to end
    picks = np.linspace(0, len(paths) - 1, count).round().astype(int)
    return [paths[i] for i in picks]


def dataset_names(source: Path) -> Optional[List[str]]:
    """The class names when ``source`` is a dataset (they name a model's classes where its
    outputs and metadata do not), else None (a plain folder of images)."""
    source = Path(source)
    if not source.exists() or not _is_dataset(source):
        return None
    from generator.data.dataset import load_dataset

    return list(load_dataset(source, "train").names)


def _is_dataset(source: Path) -> bool:
    if source.is_file():
        return source.suffix.lower() in DATASET_SUFFIXES
    return any((source / name).is_file() for name in DATA_YAML_NAMES)


def calibration_images(source: Path, height: int, width: int, count: int,
                       min_images: int = MIN_IMAGES, num_classes: Optional[int] = None,
                       input_format=None) -> np.ndarray:
    """``[N, 3, height, width]`` float32, letterboxed like the serving preprocess: 0..1 RGB,
    or the model's ``input_format`` (an ``export.signature.InputFormat``: scale, channel
    order, mean / std), applied by the same code as the server's.

    N = min(count, images available). Raises UsageError when ``source`` is missing, has
    fewer than ``min_images`` images, or one of the chosen files cannot be decoded.
    """
    from generator.runtime.imaging import ImageError, preprocess_bytes

    paths = calibration_paths(source, count, min_images, num_classes)
    batch = np.empty((len(paths), 3, height, width), dtype=np.float32)
    for i, path in enumerate(paths):
        try:
            batch[i] = preprocess_bytes(path.read_bytes(), height, width, None, input_format)[0]
        except ImageError as exc:
            raise UsageError(f"{path}: cannot decode as an image for calibration ({exc})") from exc
        except OSError as exc:
            raise UsageError(f"{path}: cannot read calibration image ({exc})") from exc
    return batch


class ImageBatchReader:
    """Feeds calibration images to ONNX Runtime's calibrators, ``batch_size`` at a time.

    ONNX Runtime's ``CalibrationDataReader`` recognises any class with ``get_next`` as a
    subclass (its ``__subclasshook__``), so this needs no onnxruntime import. Batch size 1
    is what ORT's histogram calibrators (entropy, percentile) require unless every batch
    has the same size: they stack the per-batch outputs with ``np.asarray``.
    """

    def __init__(self, input_name: str, images: np.ndarray, batch_size: int = 1,
                 start: int = 0, end: Optional[int] = None):
        if images.ndim != 4:
            raise ValueError(f"expected [N, 3, H, W] images, got shape {images.shape}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.input_name = input_name
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self.batch_size = batch_size
        self.set_range(start, len(images) if end is None else end)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Restrict to images ``[start_index, end_index)`` and rewind (ORT's strided calibration)."""
        self.start, self.end = max(0, start_index), min(len(self.images), end_index)
        self.position = self.start

    def rewind(self) -> None:
        self.position = self.start

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self.position >= self.end:
            return None
        stop = min(self.position + self.batch_size, self.end)
        batch = self.images[self.position:stop]
        self.position = stop
        return {self.input_name: batch}

    def __iter__(self):
        return self

    def __next__(self) -> Dict[str, np.ndarray]:
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item

    def __len__(self) -> int:
        """Number of batches in the current range."""
        return -(-(self.end - self.start) // self.batch_size)
