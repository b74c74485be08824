"""Box-preserving augmentations (numpy + OpenCV) and the serving letterbox for training.

Every augmentation takes and returns ``(image HxWx3 uint8 RGB, boxes [n, 4] float32 xyxy
pixels, classes [n])``; the random ones also take ``rng``. Box coordinates are
continuous pixel edges (pixel ``i`` spans ``[i, i + 1)``), the convention of the
readers and of ``cv2.resize``; warps convert to OpenCV's pixel-centre indices so that
boxes stay on the pixels they enclosed.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import cv2
import numpy as np

from generator.runtime import imaging
from generator.runtime.letterbox import PAD_VALUE, letterbox_boxes

Triple = Tuple[np.ndarray, np.ndarray, np.ndarray]
PAD = PAD_VALUE
MIN_BOX_SIDE = 2.0  # px: smaller boxes carry no learnable object
MIN_AREA_RATIO = 0.1  # of the box's area before clipping: mostly cut-off objects are dropped


def filter_boxes(boxes: np.ndarray, classes: np.ndarray, width: int, height: int) -> Tuple[np.ndarray, np.ndarray]:
    """Clip transformed boxes to the image; drop tiny or mostly cut-off ones with their classes."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    clipped = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
    w, h = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    full = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = (w >= MIN_BOX_SIDE) & (h >= MIN_BOX_SIDE) & (w * h >= MIN_AREA_RATIO * full)
    return clipped[keep], np.asarray(classes)[keep]


def hflip(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray) -> Triple:
    """Mirror left-right (its own inverse)."""
    w = image.shape[1]
    out = boxes.astype(np.float32, copy=True)
    out[:, 0], out[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
    return np.ascontiguousarray(image[:, ::-1]), out, classes


def random_hflip(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, rng: np.random.Generator,
                 p: float = 0.5) -> Triple:
    """``hflip`` with probability ``p``."""
    return hflip(image, boxes, classes) if rng.random() < p else (image, boxes, classes)


def random_affine(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, rng: np.random.Generator,
                  scale: Tuple[float, float] = (0.5, 1.5), translate: float = 0.1,
                  out_size: Tuple[int, int] = None) -> Triple:
    """Zoom around the centre by a random factor and shift by up to ``translate`` of the size.

    The output is ``out_size`` (h, w; default the input size), padded with 114; boxes
    follow and are clipped, and those left too small are dropped (``filter_boxes``).
    """
    h, w = image.shape[:2]
    oh, ow = out_size or (h, w)
    s = float(rng.uniform(*scale))
    tx = ow / 2 - s * w / 2 + float(rng.uniform(-translate, translate)) * ow
    ty = oh / 2 - s * h / 2 + float(rng.uniform(-translate, translate)) * oh
    # x_edge' = s * x_edge + t  <=>  x_index' = s * x_index + (t + s/2 - 1/2)
    m = np.array([[s, 0, tx + s / 2 - 0.5], [0, s, ty + s / 2 - 0.5]], dtype=np.float64)
    out = cv2.warpAffine(image, m, (ow, oh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(PAD, PAD, PAD))
    moved = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * s + np.array([tx, ty, tx, ty], np.float32)
    kept, cls = filter_boxes(moved, classes, ow, oh)
    return out, kept, cls


def hsv_jitter(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, rng: np.random.Generator,
               hgain: float = 0.015, sgain: float = 0.7, vgain: float = 0.4) -> Triple:
    """YOLO's colour jitter: random gains on hue, saturation and value, via lookup tables."""
    gains = rng.uniform(-1, 1, 3) * np.array([hgain, sgain, vgain]) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV))
    x = np.arange(256, dtype=np.float64)
    lut_hue = ((x * gains[0]) % 180).astype(np.uint8)  # OpenCV's 8-bit hue is 0..179
    lut_sat = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), boxes, classes


def _fit_long_side(image: np.ndarray, boxes: np.ndarray, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Resize so the long side is ``size``; boxes scaled by the actual per-axis ratios."""
    h0, w0 = image.shape[:2]
    r = size / max(h0, w0)
    nw, nh = max(1, int(round(w0 * r))), max(1, int(round(h0 * r)))
    if (nw, nh) != (w0, h0):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    ratio = np.array([nw / w0, nh / h0, nw / w0, nh / h0], dtype=np.float32)
    return image, np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * ratio


def mosaic4(images: Sequence[np.ndarray], boxes_list: Sequence[np.ndarray], classes_list: Sequence[np.ndarray],
            out_size: int, rng: np.random.Generator) -> Triple:
    """YOLO's 4-image mosaic, returned as the central ``out_size`` square.

    The images (long side ``out_size``) meet at a random centre of a ``2s x 2s`` canvas,
    one per quadrant; the output is the middle ``s x s`` window of it, so each image is
    cut and objects at the cuts are clipped or dropped like in ``random_affine``.
    """
    if len(images) != 4 or len(boxes_list) != 4 or len(classes_list) != 4:
        raise ValueError("mosaic4 needs exactly 4 images, 4 box arrays and 4 class arrays")
    s = int(out_size)
    canvas = np.full((2 * s, 2 * s, 3), PAD, dtype=np.uint8)
    xc, yc = (int(v) for v in rng.integers(s // 2, s + s // 2, size=2))
    all_boxes: List[np.ndarray] = []
    for i, (img, b) in enumerate(zip(images, boxes_list)):
        img, b = _fit_long_side(img, b, s)
        h, w = img.shape[:2]
        # quadrant i: its corner touching the centre is bottom-right, bottom-left, top-right, top-left
        x1a, x2a = (max(xc - w, 0), xc) if i in (0, 2) else (xc, min(xc + w, 2 * s))
        y1a, y2a = (max(yc - h, 0), yc) if i in (0, 1) else (yc, min(yc + h, 2 * s))
        x1b = w - (x2a - x1a) if i in (0, 2) else 0
        y1b = h - (y2a - y1a) if i in (0, 1) else 0
        canvas[y1a:y2a, x1a:x2a] = img[y1b:y1b + (y2a - y1a), x1b:x1b + (x2a - x1a)]
        dx, dy = x1a - x1b - s // 2, y1a - y1b - s // 2  # into the output window's frame
        all_boxes.append(b + np.array([dx, dy, dx, dy], dtype=np.float32))
    out = np.ascontiguousarray(canvas[s // 2:s // 2 + s, s // 2:s // 2 + s])
    boxes, classes = filter_boxes(np.concatenate(all_boxes), np.concatenate([np.asarray(c) for c in classes_list]),
                                  s, s)
    return out, boxes, classes


def letterbox_uint8(image: np.ndarray, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """The serving letterbox (same parameters and interpolation), kept as HWC uint8 for
    further augmentation; returns the canvas and the transform row."""
    return imaging.letterbox_hwc(image, size, size)


def letterbox_with_boxes(image: np.ndarray, boxes: np.ndarray, size: int) -> Triple:
    """Exactly the server's preprocessing, plus the boxes mapped into its frame.

    Returns ``(CHW float32 0..1, boxes in letterboxed pixels, transform [5])``; the
    inverse mapping is ``generator.runtime.letterbox.unletterbox``.
    """
    chw, transform = imaging.letterbox(image, size, size)
    mapped = letterbox_boxes(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), transform)
    return chw, mapped, transform
