"""Draw detections onto images (OpenCV)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from generator._lazy import require

_PALETTE = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
            (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0)]


def draw(image_bgr: np.ndarray, detections: Sequence) -> np.ndarray:
    """A copy of ``image_bgr`` with boxes and ``name score`` labels."""
    cv2 = require("cv2", "to draw detections")
    out = image_bgr.copy()
    for det in detections:
        color = _PALETTE[det.class_id % len(_PALETTE)]
        p1, p2 = (int(round(det.x1)), int(round(det.y1))), (int(round(det.x2)), int(round(det.y2)))
        cv2.rectangle(out, p1, p2, color, 2)
        label = f"{det.class_name} {det.score:.2f}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        top = max(p1[1], th + 4)
        cv2.rectangle(out, (p1[0], top - th - 4), (p1[0] + tw + 2, top), color, -1)
        cv2.putText(out, label, (p1[0] + 1, top - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    return out


def draw_file(image_path: Path, detections: Sequence, out_dir: Path) -> Path:
    """Draw onto the image file and save it as PNG in ``out_dir``."""
    cv2 = require("cv2", "to draw detections")
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read {image_path} to draw on it")
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / (Path(image_path).stem + ".png")
    cv2.imwrite(str(dest), draw(image, detections))
    return dest
