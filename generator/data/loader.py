"""Training input for torch: ``TrainDataset`` and its ``collate``.

Without augmentation an item is exactly the server's letterbox of the image. With it,
the pipeline is YOLO's: (mosaic of 4 | letterbox) -> random zoom/shift -> HSV jitter
-> horizontal flip. Randomness: each item draws from ``default_rng([seed, epoch,
index, draw])`` where ``draw`` comes from torch's RNG, which DataLoader reseeds per
worker and per epoch from its own generator. So runs are reproducible for a fixed
torch seed, and epochs see different augmentations even with worker processes
(whose copies of the dataset would otherwise replay the same stream every epoch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

from generator._lazy import require
from generator.data import augment
from generator.data.eval_batches import iter_images, read_image_bytes  # noqa: F401  (re-exported)
from generator.data.records import DetectionData
from generator.errors import UsageError
from generator.runtime import boxes as runtime_boxes
from generator.runtime import imaging

torch = require("torch", "to train")


@dataclass
class AugmentConfig:
    """Augmentation strengths (YOLO's defaults)."""

    scale: Tuple[float, float] = (0.5, 1.5)
    translate: float = 0.1
    hsv: Tuple[float, float, float] = (0.015, 0.7, 0.4)
    flip: float = 0.5


class TrainDataset(torch.utils.data.Dataset):
    """Items ``(image [3, S, S] float32 0..1 RGB, targets [n, 5] = cls, x1, y1, x2, y2)``,
    boxes in letterboxed input pixels."""

    def __init__(self, data: DetectionData, imgsz: int, augment: bool, seed: int, mosaic: float = 0.0,
                 hyp: AugmentConfig = None):
        if imgsz < 1:
            raise UsageError(f"imgsz must be >= 1, got {imgsz}")
        if not 0.0 <= mosaic <= 1.0:
            raise UsageError(f"mosaic probability must be in 0..1, got {mosaic}")
        if not data.samples:
            raise UsageError(f"{data.source}: dataset has no images")
        self.data, self.imgsz, self.augment, self.seed, self.mosaic = data, int(imgsz), augment, seed, mosaic
        self.hyp = hyp or AugmentConfig()
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.data.samples)

    def set_epoch(self, epoch: int) -> None:
        """Optional: mix the epoch into the augmentation stream explicitly."""
        self.epoch = int(epoch)

    def load(self, index: int) -> augment.Triple:
        """Decoded RGB image (as the server decodes it) and copies of its boxes and classes."""
        sample = self.data.samples[index]
        try:
            image = imaging.decode_image(read_image_bytes(sample))
        except imaging.ImageError as exc:
            raise UsageError(f"{sample.image_path}: {exc}") from exc
        if image.shape[:2] != (sample.height, sample.width):
            raise UsageError(f"{sample.image_path}: decoded size {image.shape[1]}x{image.shape[0]} differs from "
                             f"the dataset's {sample.width}x{sample.height}")
        return image, sample.boxes.astype(np.float32, copy=True), sample.classes.astype(np.int64, copy=True)

    def _rng(self, index: int) -> np.random.Generator:
        draw = int(torch.randint(0, 2 ** 31 - 1, (1,)).item())
        return np.random.default_rng([self.seed, self.epoch, index, draw])

    def __getitem__(self, index: int):
        if not self.augment:
            image, b, c = self.load(index)
            chw, mapped, _ = augment.letterbox_with_boxes(image, b, self.imgsz)
            return torch.from_numpy(chw), _targets(mapped, c)
        rng = self._rng(index)
        image, b, c = self._base(index, rng)
        hyp = self.hyp
        image, b, c = augment.random_affine(image, b, c, rng, hyp.scale, hyp.translate)
        image, b, c = augment.hsv_jitter(image, b, c, rng, *hyp.hsv)
        image, b, c = augment.random_hflip(image, b, c, rng, hyp.flip)
        chw = np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.float32) * np.float32(1.0 / 255.0)
        return torch.from_numpy(chw), _targets(b, c)

    def _base(self, index: int, rng: np.random.Generator) -> augment.Triple:
        """A square ``imgsz`` uint8 image: a mosaic with the set probability, else the letterbox."""
        if self.mosaic > 0 and rng.random() < self.mosaic:
            others = rng.integers(0, len(self), size=3).tolist()
            parts = [self.load(i) for i in [index, *others]]
            return augment.mosaic4([p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts],
                                   self.imgsz, rng)
        image, b, c = self.load(index)
        canvas, transform = augment.letterbox_uint8(image, self.imgsz)
        return canvas, runtime_boxes.letterbox_boxes(b, transform), c


def _targets(boxes: np.ndarray, classes: np.ndarray):
    """``[n, 5]`` float32 tensor: class, x1, y1, x2, y2."""
    rows = np.concatenate([np.asarray(classes, np.float32).reshape(-1, 1),
                           np.asarray(boxes, np.float32).reshape(-1, 4)], axis=1)
    return torch.from_numpy(np.ascontiguousarray(rows))


def collate(batch: Sequence[Tuple["torch.Tensor", "torch.Tensor"]]):
    """``(images [B, 3, S, S], targets [M, 6] = batch index, cls, x1, y1, x2, y2)``."""
    images = torch.stack([item[0] for item in batch])
    rows: List["torch.Tensor"] = []
    for i, (_, t) in enumerate(batch):
        rows.append(torch.cat([torch.full((t.shape[0], 1), float(i), dtype=t.dtype), t], dim=1))
    targets = torch.cat(rows) if rows else torch.zeros((0, 6), dtype=torch.float32)
    return images, targets
