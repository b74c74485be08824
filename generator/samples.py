"""A few deterministic sample images (shapes on a textured background) for the demo
and the tests; the datasets issue brings the full synthetic dataset."""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np

from generator._lazy import require


def sample_image(seed: int, height: int = 360, width: int = 480) -> np.ndarray:
    """An RGB uint8 image with a few filled shapes."""
    cv2 = require("cv2", "to render sample images")
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, size=3)
    noise = rng.normal(0, 12, size=(height, width, 1))
    img = np.clip(base[None, None, :] + noise, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(2, 6))):
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        cx, cy = int(rng.integers(20, width - 20)), int(rng.integers(20, height - 20))
        size = int(rng.integers(15, min(height, width) // 3))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            cv2.circle(img, (cx, cy), size, color, -1)
        elif kind == 1:
            cv2.rectangle(img, (cx - size, cy - size // 2), (cx + size, cy + size // 2), color, -1)
        else:
            pts = np.array([[cx, cy - size], [cx - size, cy + size], [cx + size, cy + size]], dtype=np.int32)
            cv2.fillPoly(img, [pts], color)
    return img


def write_samples(folder: Path, count: int, seed: int = 0) -> List[Path]:
    """Write ``count`` sample images, alternating JPEG and PNG and varying the size."""
    cv2 = require("cv2", "to write sample images")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        h, w = [(360, 480), (480, 640), (300, 300), (720, 1280)][i % 4]
        img = sample_image(seed + i, h, w)
        path = folder / f"sample_{i:02d}.{'jpg' if i % 2 == 0 else 'png'}"
        cv2.imwrite(str(path), img[:, :, ::-1])
        paths.append(path)
    return paths
