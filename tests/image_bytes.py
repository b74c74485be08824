"""Encoded test images built in memory: ordinary ones in every format the server reads,
odd ones (grayscale, alpha, 16-bit, 1x1), and ones whose header claims a huge size."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np

HUGE = 20000  # a header claiming HUGE x HUGE: 400 MP, 1.2 GB as RGB8


def pil(array: np.ndarray, fmt: str, mode=None, **save) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, fmt, **save)
    return buf.getvalue()


def noise(h: int, w: int, c: int = 3, seed: int = 0, dtype=np.uint8) -> np.ndarray:
    top = 65535 if dtype == np.uint16 else 255
    shape = (h, w) if c == 1 else (h, w, c)
    return np.random.default_rng(seed).integers(0, top, shape, dtype=dtype)


def jpeg(h: int, w: int, seed: int = 0) -> bytes:
    return cv2.imencode(".jpg", noise(h, w, seed=seed))[1].tobytes()


def png(array: np.ndarray) -> bytes:
    """Any uint8/uint16 array with 1, 3 or 4 channels (OpenCV's BGR order)."""
    return cv2.imencode(".png", array)[1].tobytes()


def every_format(h: int, w: int, seed: int = 0) -> dict:
    """One image of ``h x w`` per format (and variant) the header reader knows."""
    rgb, rgba = noise(h, w, seed=seed), noise(h, w, 4, seed=seed)
    return {
        "png": png(rgb), "png-gray": png(noise(h, w, 1, seed)), "png-rgba": png(rgba),
        "png-16bit": png(noise(h, w, 3, seed, np.uint16)), "png-palette": _palette_png(rgb),
        "jpeg": jpeg(h, w, seed), "jpeg-progressive": pil(rgb, "JPEG", progressive=True),
        "jpeg-gray": cv2.imencode(".jpg", noise(h, w, 1, seed))[1].tobytes(),
        "bmp": cv2.imencode(".bmp", rgb)[1].tobytes(), "gif": pil(rgb, "GIF"),
        "webp-lossy": pil(rgb, "WEBP"), "webp-lossless": pil(rgb, "WEBP", lossless=True),
        "webp-alpha": pil(rgba, "WEBP", "RGBA"),
    }


def _palette_png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).convert("P").save(buf, "PNG")
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bomb(width: int = HUGE, height: int = HUGE) -> bytes:
    """A *valid* 1-bit grayscale PNG of ``width x height`` (all black): ~50 KB that OpenCV
    would expand to ``width * height * 3`` bytes of RGB."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    rows_per_feed = 1000
    parts = [comp.compress(row * rows_per_feed) for _ in range(height // rows_per_feed)]
    parts.append(comp.compress(row * (height % rows_per_feed)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def jpeg_claiming(width: int = HUGE, height: int = HUGE) -> bytes:
    """A small JPEG whose start-of-frame says ``width x height``."""
    data = bytearray(jpeg(16, 16))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bmp_claiming(width: int = HUGE, height: int = HUGE) -> bytes:
    data = bytearray(cv2.imencode(".bmp", noise(4, 4))[1].tobytes())
    data[18:26] = struct.pack("<ii", width, -height)  # negative: top-down rows
    return bytes(data)


def gif_claiming(width: int = HUGE, height: int = HUGE) -> bytes:
    data = bytearray(pil(noise(4, 4), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def webp_claiming(width: int = HUGE, height: int = HUGE) -> bytes:
    """An extended (VP8X) WebP whose canvas is ``width x height``."""
    data = bytearray(pil(noise(4, 4, 4), "WEBP", "RGBA"))
    assert data[12:16] == b"VP8X"
    data[24:27] = (width - 1).to_bytes(3, "little")
    data[27:30] = (height - 1).to_bytes(3, "little")
    return bytes(data)


CLAIMING_HUGE = {"png": png_bomb, "jpeg": jpeg_claiming, "bmp": bmp_claiming, "gif": gif_claiming,
                 "webp": webp_claiming}
