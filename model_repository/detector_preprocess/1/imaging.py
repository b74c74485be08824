"""Image decoding and letterboxing (numpy + OpenCV), shared by the server and offline code.

The server decodes with a pixel limit (``max_pixels``): the size is read from the
encoded header first (:func:`header_size`, pure Python), so an image whose header
claims 20000x20000 is refused before any pixel memory is allocated.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import cv2
import numpy as np

# the geometry lives in letterbox.py (no cv2 there: the GPU engine and boxes use it too)
try:  # as part of the generator package (tests, offline use)
    from .letterbox import PAD_VALUE, letterbox_params, transform_row
except ImportError:  # inside Triton: the modules are copied beside this file
    from letterbox import PAD_VALUE, letterbox_params, transform_row

try:  # header parsing and the pixel limit are pure Python, shared with the generator
    from .image_header import (  # noqa: F401
        DEFAULT_MAX_PIXELS, HEADER_FORMATS, ImageError, check_pixels, header_size, image_format, item_error, pixel_limit,
    )
except ImportError:
    from image_header import (  # noqa: F401
        DEFAULT_MAX_PIXELS, HEADER_FORMATS, ImageError, check_pixels, header_size, image_format, item_error, pixel_limit,
    )

# ---------------------------------------------------------------- decoding


def _imdecode(data, max_pixels: Optional[int]) -> np.ndarray:
    """OpenCV's decode (any channel count and depth), after the checks."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError(f"expected encoded image bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageError("empty input (0 bytes)")
    if max_pixels is not None:
        check_pixels(data, max_pixels)
    what = image_format(bytes(data[:12])) or "an image"
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # e.g. over OpenCV's own pixel limit
        raise ImageError(f"cannot decode {len(data)} bytes as {what}: OpenCV: {exc.err}") from None
    if img is None:
        raise ImageError(f"cannot decode {len(data)} bytes as {what} (corrupt, truncated or an unsupported format)")
    return img


def decode_image(data: bytes, max_pixels: Optional[int] = None) -> np.ndarray:
    """Encoded JPEG/PNG/... bytes -> ``HxWx3`` uint8 RGB.

    Grayscale, alpha and 16-bit images are converted, not refused. With ``max_pixels``
    (the server), only the formats whose size :func:`header_size` reads are accepted,
    and an image over the limit is refused before decoding.
    """
    return to_rgb8(_imdecode(data, max_pixels), bgr=True)


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


def letterbox_hwc(img: np.ndarray, out_h: int, out_w: int) -> Tuple[np.ndarray, np.ndarray]:
    """HWC uint8 image -> (``out_h x out_w`` HWC uint8 canvas, transform[5]).

    Resize keeping the aspect ratio (bilinear), pad with 114 around it.
    """
    h, w = img.shape[:2]
    geometry = letterbox_params(h, w, out_h, out_w)
    _, new_w, new_h, left, top = geometry
    canvas = np.full((out_h, out_w, 3), PAD_VALUE, dtype=np.uint8)
    resized = img if (new_w, new_h) == (w, h) else cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas[top:top + new_h, left:left + new_w] = resized
    return canvas, transform_row(geometry, h, w)


def letterbox(img: np.ndarray, out_h: int, out_w: int) -> Tuple[np.ndarray, np.ndarray]:
    """RGB uint8 image -> (``3 x out_h x out_w`` float32 in 0..1, transform[5]).

    :func:`letterbox_hwc`, then HWC->CHW and /255.
    """
    canvas, transform = letterbox_hwc(img, out_h, out_w)
    chw = canvas.transpose(2, 0, 1).astype(np.float32) * np.float32(1.0 / 255.0)
    return chw, transform


def letterbox_uint8(data: bytes, out_h: int, out_w: int, max_pixels: Optional[int] = None
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """Encoded bytes -> (``3 x out_h x out_w`` uint8 RGB, transform[5]): the uint8 hand-off,
    where the detector graph applies the input format (``export.uint8_input``)."""
    canvas, transform = letterbox_hwc(decode_image(data, max_pixels), out_h, out_w)
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)), transform


def preprocess_bytes(data: bytes, out_h: int, out_w: int, max_pixels: Optional[int] = None,
                     input_format=None) -> Tuple[np.ndarray, np.ndarray]:
    """Encoded bytes -> model input and letterbox transform (the preprocess stage's work).

    ``input_format`` (anything with ``scale``, ``channel_order``, ``mean``, ``std``, e.g.
    :class:`PixelFormat` or the signature's ``InputFormat``; None: the default) says what
    the network expects; the default (RGB, /255, no mean/std) takes the same path as
    before, so its results stay bit-identical.
    """
    fmt = pixel_format(input_format)
    if fmt == DEFAULT_FORMAT:
        return letterbox(decode_image(data, max_pixels), out_h, out_w)
    canvas, transform = letterbox_hwc(decode_image(data, max_pixels), out_h, out_w)
    return apply_format(canvas, fmt), transform


# ---------------------------------------------------------------- input format


class PixelFormat(NamedTuple):
    """What the network input is made of: ``((pixel RGB-or-BGR uint8) * scale - mean) / std``
    per channel, ``mean``/``std`` in the network's channel order and in units of pixel * scale."""

    scale: float = 1.0 / 255.0
    channel_order: str = "RGB"
    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: Tuple[float, float, float] = (1.0, 1.0, 1.0)


DEFAULT_FORMAT = PixelFormat()
CHANNEL_ORDERS = ("RGB", "BGR")


def pixel_format(fmt=None) -> PixelFormat:
    """``fmt`` (any object with the four fields, or None for the default) as a checked
    :class:`PixelFormat`; ValueError naming the field and what is allowed."""
    if fmt is None:
        return DEFAULT_FORMAT
    order = str(fmt.channel_order).upper()
    if order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {', '.join(CHANNEL_ORDERS)}, got {fmt.channel_order!r}")
    mean, std = _triple(fmt.mean, "mean"), _triple(fmt.std, "std")
    if any(s == 0 for s in std):
        raise ValueError(f"std must not hold 0, got {list(std)}")
    scale = float(fmt.scale)
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {fmt.scale!r}")
    return PixelFormat(scale, order, mean, std)


def parse_pixel_format(scale: str, channel_order: str, mean: str, std: str) -> PixelFormat:
    """The preprocess stages' config parameters (``"0.0039..."``, ``"RGB"``, ``"0,0,0"``,
    ``"1,1,1"``) as a :class:`PixelFormat`."""
    def numbers(text: str, what: str):
        try:
            return tuple(float(v) for v in str(text).split(","))
        except ValueError:
            raise ValueError(f"{what} must be three numbers separated by commas, got {text!r}") from None

    try:
        scale_value = float(scale)
    except ValueError:
        raise ValueError(f"scale must be a number, got {scale!r}") from None
    return pixel_format(PixelFormat(scale_value, channel_order, numbers(mean, "mean"), numbers(std, "std")))


def _triple(values, what: str) -> Tuple[float, float, float]:
    values = tuple(float(v) for v in values)
    if len(values) != 3:
        raise ValueError(f"{what} must have 3 values (one per channel), got {list(values)}")
    return values  # type: ignore[return-value]


def apply_format(canvas: np.ndarray, fmt: PixelFormat) -> np.ndarray:
    """Letterboxed HWC RGB uint8 canvas -> ``3 x H x W`` float32 network input in ``fmt``."""
    if fmt.channel_order == "BGR":
        canvas = canvas[:, :, ::-1]
    chw = canvas.transpose(2, 0, 1).astype(np.float32) * np.float32(fmt.scale)
    if fmt.mean != DEFAULT_FORMAT.mean:
        chw -= np.asarray(fmt.mean, np.float32)[:, None, None]
    if fmt.std != DEFAULT_FORMAT.std:
        chw /= np.asarray(fmt.std, np.float32)[:, None, None]
    return chw


def decode_bgr(data: bytes, max_pixels: Optional[int] = None) -> np.ndarray:
    """Encoded bytes -> C-contiguous ``HxWx3`` uint8 in OpenCV's **BGR** order.

    What the GPU preprocess uploads (its kernel swaps the channels). Same checks and
    conversions as :func:`decode_image` (grayscale, alpha and 16-bit are converted, not
    refused); ``decode_bgr(x)[:, :, ::-1]`` equals ``decode_image(x)``.
    """
    # to_rgb8 without the flip keeps the decoder's channel order: B, G, R
    return np.ascontiguousarray(to_rgb8(_imdecode(data, max_pixels), bgr=False))
