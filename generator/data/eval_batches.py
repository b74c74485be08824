"""Evaluation input: batches preprocessed by the server's own code (torch-free).

``iter_images`` reads each file's bytes and calls ``generator.runtime.imaging
.preprocess_bytes``, the function the Triton preprocess stage runs, so offline metrics
are computed on exactly the tensors a deployed model would see.
"""

from __future__ import annotations

from typing import Iterator, Tuple

import numpy as np

from generator.data.records import DetectionData, Sample
from generator.errors import UsageError
from generator.runtime import imaging


def read_image_bytes(sample: Sample) -> bytes:
    """The encoded file; UsageError naming it if it cannot be read."""
    try:
        return sample.image_path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{sample.image_path}: cannot read image: {exc.strerror or exc}") from exc


def preprocess_sample(sample: Sample, imgsz: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(CHW float32, transform [5])`` exactly as the preprocess stage makes them."""
    try:
        return imaging.preprocess_bytes(read_image_bytes(sample), imgsz, imgsz)
    except imaging.ImageError as exc:
        raise UsageError(f"{sample.image_path}: {exc}") from exc


def iter_images(data: DetectionData, imgsz: int, batch_size: int = 16
                ) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(images [B, 3, S, S] float32, transforms [B, 5], sample indices [B])``.

    Transform rows are ``scale, pad_x, pad_y, width, height``, the layout
    ``generator.runtime.boxes.postprocess``/``unletterbox`` take.
    """
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    n = len(data.samples)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        arrays, transforms = zip(*(preprocess_sample(data.samples[i], imgsz) for i in range(start, stop)))
        yield np.stack(arrays), np.stack(transforms), np.arange(start, stop, dtype=np.int64)
