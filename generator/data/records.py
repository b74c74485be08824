"""The plain, torch-free representation every reader produces and every consumer reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List

import numpy as np


def empty_boxes() -> np.ndarray:
    """A ``[0, 4]`` float32 box array (an image without objects)."""
    return np.zeros((0, 4), dtype=np.float32)


def empty_classes() -> np.ndarray:
    """A ``[0]`` int64 class array."""
    return np.zeros((0,), dtype=np.int64)


@dataclass
class Sample:
    """One image and its ground truth.

    ``boxes`` are ``x1, y1, x2, y2`` in pixels of the original (stored) image, float32
    ``[n, 4]``; ``classes`` are contiguous class indices, int64 ``[n]``.
    """

    image_path: Path
    boxes: np.ndarray = field(default_factory=empty_boxes)
    classes: np.ndarray = field(default_factory=empty_classes)
    width: int = 0
    height: int = 0


@dataclass
class DetectionData:
    """A split of a detection dataset: class names, samples, and where it came from."""

    names: List[str]
    samples: List[Sample]
    source: str = ""

    @property
    def nc(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return len(self.samples)
