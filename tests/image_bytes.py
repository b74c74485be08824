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


# ------------------------------------------------------------------ the fault load (tests/integration/test_load.py,
# benchmarks/replica_load.py): bad images interleaved with good ones

BOMB = 60000  # header bombs: 60000 x 60000 = 3.6 GP, 10.8 GB as RGB8, in a few hundred bytes


def png_claiming(width: int = BOMB, height: int = BOMB) -> bytes:
    """A PNG whose IHDR says ``width x height`` (8-bit RGB) with a tiny IDAT: a header bomb
    with no body to speak of (unlike :func:`png_bomb`, which is a whole valid image)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + _chunk(b"IEND", b""))


def faulty_images() -> dict:
    """name -> (bytes of one bad image, a phrase the server's refusal of it must contain)."""
    whole_jpeg, whole_png = jpeg(64, 64, seed=3), png(noise(64, 64, seed=4))
    cut_png = whole_png[:-30]
    text = b"GET / HTTP/1.1\r\n\r\n"
    return {
        "truncated JPEG": (whole_jpeg[:400], "IMAGE[0]: cannot decode 400 bytes as JPEG"),
        "truncated PNG": (cut_png, f"IMAGE[0]: cannot decode {len(cut_png)} bytes as PNG"),
        "not an image": (text, f"IMAGE[0]: cannot decode {len(text)} bytes as an image"),
        f"PNG header {BOMB}x{BOMB}": (png_claiming(), f"IMAGE[0]: PNG header says {BOMB}x{BOMB}"),
        f"JPEG header {BOMB}x{BOMB}": (jpeg_claiming(BOMB, BOMB), f"IMAGE[0]: JPEG header says {BOMB}x{BOMB}"),
    }


def is_bad(index: int, bad_fraction: float) -> bool:
    """Whether request ``index`` of a fault load carries a bad image: spread evenly, so any
    ``n`` consecutive requests hold ``n * bad_fraction`` bad ones, rounded either way."""
    return int((index + 1) * bad_fraction) > int(index * bad_fraction)


def fault_plan(count: int, bad_fraction: float, good: list) -> list:
    """``count`` requests as ``(key, image bytes, refusal phrase)``: ``key`` is the index into
    ``good`` (phrase None) for a good image, the name of the bad one otherwise. Deterministic:
    bad images at evenly spaced positions, cycling through :func:`faulty_images`."""
    bad = list(faulty_images().items())
    plan, n_bad = [], 0
    for i in range(count):
        if is_bad(i, bad_fraction):
            name, (data, phrase) = bad[n_bad % len(bad)]
            plan.append((name, data, phrase))
            n_bad += 1
        else:
            k = (i - n_bad) % len(good)
            plan.append((k, good[k], None))
    return plan
