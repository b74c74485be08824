"""Turn the inputs the SDK accepts into encoded image bytes, with numpy only.

Accepted: a file path (``str`` or ``os.PathLike``), encoded bytes (JPEG/PNG/...), or a
numpy array ``HxWx3`` **RGB** (or ``HxW`` grayscale), uint8. Arrays are sent as PNG,
encoded here with zlib, so no image library is needed on the client.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Union

import numpy as np

from client.errors import InvalidImageError

ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, np.ndarray]


def encode_png(array: np.ndarray, level: int = 1) -> bytes:
    """Encode a uint8 ``HxW`` or ``HxWx3`` (RGB) array as PNG."""
    if array.dtype != np.uint8:
        raise InvalidImageError(f"numpy images must be uint8, got {array.dtype}")
    if array.ndim == 2:
        color_type, rows = 0, array
    elif array.ndim == 3 and array.shape[2] == 3:
        color_type, rows = 2, array.reshape(array.shape[0], -1)
    else:
        raise InvalidImageError(f"numpy images must be HxW or HxWx3 (RGB), got shape {array.shape}")
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise InvalidImageError(f"empty image array of shape {array.shape}")
    raw = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    raw[:, 0] = 0  # filter type "None" on every row
    raw[:, 1:] = rows
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + chunk(b"IEND", b""))


def to_bytes(image: ImageInput) -> bytes:
    """Encoded bytes for any accepted input; errors name what was wrong."""
    if isinstance(image, (bytes, bytearray)):
        if not image:
            raise InvalidImageError("empty image bytes")
        return bytes(image)
    if isinstance(image, np.ndarray):
        return encode_png(np.ascontiguousarray(image))
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise InvalidImageError(f"cannot read image file {path}: {exc.strerror}") from exc
    raise InvalidImageError(
        f"unsupported image input of type {type(image).__name__}: give a path, encoded bytes or an RGB uint8 array"
    )
