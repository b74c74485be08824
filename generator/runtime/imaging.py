"""Image decoding and letterboxing (numpy + OpenCV), shared by the server and offline code."""

from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

PAD_VALUE = 114
# transform layout: scale, pad_x, pad_y, original width, original height
TRANSFORM_SIZE = 5


class ImageError(ValueError):
    """An input that cannot be turned into an image; the message says why."""


def decode_image(data: bytes) -> np.ndarray:
    """Encoded JPEG/PNG/... bytes -> ``HxWx3`` uint8 RGB.

    Grayscale, alpha and 16-bit images are converted, not refused.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError(f"expected encoded image bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageError("empty input (0 bytes)")
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError(f"cannot decode {len(data)} bytes as an image (corrupt, truncated or not JPEG/PNG)")
    return to_rgb8(img, bgr=True)


def to_rgb8(img: np.ndarray, bgr: bool = False) -> np.ndarray:
    """Any 2-D/3-D uint8/uint16/float array -> ``HxWx3`` uint8 RGB."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ImageError(f"unsupported image shape {img.shape}")
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if img.shape[2] == 4:
        img = img[:, :, :3]
    return np.ascontiguousarray(img[:, :, ::-1]) if bgr else img


def letterbox_params(h: int, w: int, out_h: int, out_w: int) -> Tuple[float, int, int, int, int]:
    """Scale, resized size and top/left padding that fit ``h x w`` into ``out_h x out_w``."""
    scale = min(out_h / h, out_w / w)
    new_w, new_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    left = int(round((out_w - new_w) / 2 - 0.1))
    top = int(round((out_h - new_h) / 2 - 0.1))
    return scale, new_w, new_h, left, top


def letterbox(img: np.ndarray, out_h: int, out_w: int) -> Tuple[np.ndarray, np.ndarray]:
    """RGB uint8 image -> (``3 x out_h x out_w`` float32 in 0..1, transform[5]).

    Resize keeping the aspect ratio (bilinear), pad with 114 around it, HWC->CHW.
    """
    h, w = img.shape[:2]
    scale, new_w, new_h, left, top = letterbox_params(h, w, out_h, out_w)
    canvas = np.full((out_h, out_w, 3), PAD_VALUE, dtype=np.uint8)
    resized = img if (new_w, new_h) == (w, h) else cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas[top:top + new_h, left:left + new_w] = resized
    chw = canvas.transpose(2, 0, 1).astype(np.float32) * np.float32(1.0 / 255.0)
    transform = np.array([scale, left, top, w, h], dtype=np.float32)
    return chw, transform


def preprocess_bytes(data: bytes, out_h: int, out_w: int) -> Tuple[np.ndarray, np.ndarray]:
    """Encoded bytes -> model input and letterbox transform (the preprocess stage's work)."""
    return letterbox(decode_image(data), out_h, out_w)


def decode_bgr(data: bytes) -> np.ndarray:
    """Encoded bytes -> C-contiguous ``HxWx3`` uint8 in OpenCV's **BGR** order.

    What the GPU preprocess uploads (its kernel swaps the channels). Same checks and
    conversions as :func:`decode_image` (grayscale, alpha and 16-bit are converted, not
    refused); ``decode_bgr(x)[:, :, ::-1]`` equals ``decode_image(x)``.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError(f"expected encoded image bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageError("empty input (0 bytes)")
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError(f"cannot decode {len(data)} bytes as an image (corrupt, truncated or not JPEG/PNG)")
    # to_rgb8 without the flip keeps the decoder's channel order: B, G, R
    return np.ascontiguousarray(to_rgb8(img, bgr=False))
