"""Letterbox geometry and the TRANSFORM row: the one copy of these numbers.

Pure numpy (no OpenCV), so the CPU preprocess (``imaging``), the CUDA engine
(``cuda_letterbox``), the postprocess (``boxes``), training augmentation and the
generator's tensor declarations all agree by construction.

A TRANSFORM row is ``(scale, pad_x, pad_y, width, height)``, float32: how an original
``width x height`` image was scaled and padded into the model input.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

# the TRANSFORM tensor's last dimension: scale, pad_x, pad_y, original width, original height
TRANSFORM_SIZE = 5
# grey padding around the resized image, as Ultralytics pads
PAD_VALUE = 114

Geometry = Tuple[float, int, int, int, int]


def letterbox_params(h: int, w: int, out_h: int, out_w: int) -> Geometry:
    """Scale, resized width and height, left and top padding that fit ``h x w`` into ``out_h x out_w``."""
    scale = min(out_h / h, out_w / w)
    new_w, new_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    # -0.1 rounds an odd padding down on the left/top, as Ultralytics does
    left = int(round((out_w - new_w) / 2 - 0.1))
    top = int(round((out_h - new_h) / 2 - 0.1))
    return scale, new_w, new_h, left, top


def transform_row(geometry: Sequence[float], h: int, w: int) -> np.ndarray:
    """The TRANSFORM row (scale, pad_x, pad_y, width, height) of an ``h x w`` image letterboxed
    with ``geometry`` (what :func:`letterbox_params` returns)."""
    scale, _, _, left, top = geometry
    return np.array([scale, left, top, w, h], dtype=np.float32)


def transform_rows(geometries: Sequence[Sequence[float]], sizes: Sequence[Tuple[int, int]]) -> np.ndarray:
    """``[N, TRANSFORM_SIZE]`` rows for images of ``(h, w)`` sizes (``[0, 5]`` for none)."""
    if not len(sizes):
        return np.zeros((0, TRANSFORM_SIZE), np.float32)
    return np.stack([transform_row(g, h, w) for g, (h, w) in zip(geometries, sizes)])


def unletterbox(xyxy: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Boxes in letterboxed pixels -> original pixels, clipped to the image.

    ``transform`` rows are (scale, pad_x, pad_y, width, height); shapes broadcast.
    """
    scale, pad_x, pad_y, w, h = (transform[..., i:i + 1] for i in range(TRANSFORM_SIZE))
    x = (xyxy[..., 0::2] - pad_x) / scale
    y = (xyxy[..., 1::2] - pad_y) / scale
    x = np.clip(x, 0, w)
    y = np.clip(y, 0, h)
    return np.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), axis=-1).astype(np.float32)


def letterbox_boxes(xyxy: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Inverse of :func:`unletterbox` (without clipping): original pixels -> letterboxed pixels."""
    scale, pad_x, pad_y = (transform[..., i:i + 1] for i in range(3))
    out = np.array(xyxy, dtype=np.float32, copy=True)
    out[..., 0::2] = out[..., 0::2] * scale + pad_x
    out[..., 1::2] = out[..., 1::2] * scale + pad_y
    return out
