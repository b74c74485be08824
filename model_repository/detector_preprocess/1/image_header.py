"""Image headers: the format and size of an encoded image, read without decoding a pixel.

Pure Python (no OpenCV, no numpy), so the generator can share the default pixel limit
and the server can refuse an image whose header claims 20000x20000 before any pixel
memory is allocated. Copied into repositories with ``imaging.py``.
"""

from __future__ import annotations

import struct
from typing import Optional, Tuple

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
