"""Image decoding and letterboxing (numpy + OpenCV), shared by the server and offline code.

The server decodes with a pixel limit (``max_pixels``): the size is read from the
encoded header first (:func:`header_size`, pure Python), so an image whose header
claims 20000x20000 is refused before any pixel memory is allocated.
"""

from __future__ import annotations

import struct
from typing import Optional, Tuple

import cv2
import numpy as np

PAD_VALUE = 114
# transform layout: scale, pad_x, pad_y, original width, original height
TRANSFORM_SIZE = 5
# default pixel limit of the preprocess stage: 50 MP is 150 MB as RGB8, 400 MB as 16-bit RGBA
DEFAULT_MAX_PIXELS = 50_000_000
HEADER_FORMATS = "JPEG, PNG, BMP, GIF or WebP"


class ImageError(ValueError):
    """An input that cannot be turned into an image; the message says why."""


# ---------------------------------------------------------------- header sizes

# start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) do not
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# markers without a length field: TEM, SOI, RST0..7
_JPEG_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})


def _png_size(data: bytes) -> Optional[Tuple[int, int]]:
    """IHDR is always the first chunk: width and height at bytes 16..24."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _jpeg_size(data: bytes) -> Optional[Tuple[int, int]]:
    """Walk the marker segments (skipping APPn, so EXIF thumbnails) to the first start-of-frame."""
    pos, end = 2, len(data)
    while pos < end:
        if data[pos] != 0xFF:  # tolerate garbage between segments
            pos += 1
            continue
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= end:
            return None
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        if pos + 2 > end:
            return None
        (length,) = struct.unpack(">H", data[pos:pos + 2])
        if marker in _JPEG_SOF:
            if pos + 7 > end:
                return None
            height, width = struct.unpack(">HH", data[pos + 3:pos + 7])
            return width, height
        if length < 2:
            return None
        pos += length
    return None


def _bmp_size(data: bytes) -> Optional[Tuple[int, int]]:
    """BITMAPCOREHEADER (12 bytes: 16-bit sizes) or a later header (32-bit; negative height = top-down)."""
    if len(data) < 26:
        return None
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)


def _gif_size(data: bytes) -> Optional[Tuple[int, int]]:
    """The logical screen: every frame lies inside it."""
    return struct.unpack("<HH", data[6:10]) if len(data) >= 10 else None


def _webp_size(data: bytes) -> Optional[Tuple[int, int]]:
    """The first chunk: VP8 (lossy), VP8L (lossless) or VP8X (extended: the canvas size)."""
    chunk, payload = data[12:16], data[20:30]
    if chunk == b"VP8 " and len(payload) >= 10 and payload[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", payload[6:10])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(payload) >= 5 and payload[0] == 0x2F:
        (bits,) = struct.unpack("<I", payload[1:5])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(payload) >= 10:
        return (int.from_bytes(payload[4:7], "little") + 1, int.from_bytes(payload[7:10], "little") + 1)
    return None


def image_format(data: bytes) -> Optional[str]:
    """The format named by the magic bytes, among those :func:`header_size` reads."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:2] == b"BM":
        return "BMP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


_SIZE_READERS = {"PNG": _png_size, "JPEG": _jpeg_size, "BMP": _bmp_size, "GIF": _gif_size, "WebP": _webp_size}


def header_size(data: bytes) -> Tuple[str, int, int]:
    """``(format, width, height)`` from the encoded header, without decoding any pixels.

    Raises ImageError for formats other than JPEG, PNG, BMP, GIF and WebP, and for headers
    that are cut short or say nothing sensible.
    """
    data = data if isinstance(data, bytes) else bytes(data)
    fmt = image_format(data)
    if fmt is None:
        raise ImageError(f"cannot decode {len(data)} bytes as an image: not {HEADER_FORMATS} "
                         f"(first bytes {data[:8].hex(' ')})")
    size = _SIZE_READERS[fmt](data)
    if size is None:
        raise ImageError(f"cannot decode {len(data)} bytes as {fmt}: the header is corrupt or truncated")
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"cannot decode {len(data)} bytes as {fmt}: the header says {width}x{height} pixels")
    return fmt, int(width), int(height)


def pixel_limit(value: Optional[str]) -> int:
    """The ``max_pixels`` config parameter of a preprocess stage (absent: the default)."""
    if value is None:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ValueError(f"parameter max_pixels must be a positive integer, got {value!r}")
    return limit


def check_pixels(data: bytes, max_pixels: int) -> Tuple[int, int]:
    """``(width, height)`` from the header; ImageError when over ``max_pixels`` (nothing decoded)."""
    fmt, width, height = header_size(data)
    if width * height > max_pixels:
        raise ImageError(f"{fmt} header says {width}x{height} = {width * height:,} pixels, over the limit of "
                         f"{max_pixels:,} (max_pixels of the preprocess model); refused before decoding")
    return width, height


def item_error(name: str, index: int, exc: BaseException) -> str:
    """The message a bad batch item fails its request with: ``IMAGE[3]: why``."""
    why = str(exc) if isinstance(exc, ImageError) else f"{type(exc).__name__}: {exc}"
    return f"{name}[{index}]: {why}"


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


def preprocess_bytes(data: bytes, out_h: int, out_w: int,
                     max_pixels: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Encoded bytes -> model input and letterbox transform (the preprocess stage's work)."""
    return letterbox(decode_image(data, max_pixels), out_h, out_w)


def decode_bgr(data: bytes, max_pixels: Optional[int] = None) -> np.ndarray:
    """Encoded bytes -> C-contiguous ``HxWx3`` uint8 in OpenCV's **BGR** order.

    What the GPU preprocess uploads (its kernel swaps the channels). Same checks and
    conversions as :func:`decode_image` (grayscale, alpha and 16-bit are converted, not
    refused); ``decode_bgr(x)[:, :, ::-1]`` equals ``decode_image(x)``.
    """
    # to_rgb8 without the flip keeps the decoder's channel order: B, G, R
    return np.ascontiguousarray(to_rgb8(_imdecode(data, max_pixels), bgr=False))
