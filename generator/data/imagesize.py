"""Image width/height from the file header (PNG, JPEG), without decoding the pixels.

Loading a 100k-image dataset must not decode 100k images. The sizes are those of the
stored pixel grid, which is what ``generator.runtime.imaging.decode_image`` yields
(``IMREAD_UNCHANGED`` ignores EXIF orientation), so labels and serving agree.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO, Optional, Tuple

from generator._lazy import require
from generator.errors import UsageError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) do not
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# markers without a length field
_JPEG_STANDALONE = {0x01, 0xD8} | set(range(0xD0, 0xD8))


def _png_size(f: BinaryIO) -> Optional[Tuple[int, int]]:
    """IHDR is always the first chunk: width and height at bytes 16..24."""
    f.seek(8)
    head = f.read(16)
    if len(head) < 16 or head[4:8] != b"IHDR":
        return None
    return struct.unpack(">II", head[8:16])


def _jpeg_size(f: BinaryIO) -> Optional[Tuple[int, int]]:
    """Walk the marker segments up to the first start-of-frame."""
    f.seek(2)
    while True:
        byte = f.read(1)
        while byte and byte != b"\xff":  # tolerate garbage between segments
            byte = f.read(1)
        while byte == b"\xff":  # fill bytes
            byte = f.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in _JPEG_STANDALONE:
            continue
        raw = f.read(2)
        if len(raw) < 2:
            return None
        (length,) = struct.unpack(">H", raw)
        if marker in _JPEG_SOF:
            frame = f.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return width, height
        f.seek(length - 2, 1)


def _header_size(path: Path) -> Optional[Tuple[int, int]]:
    with open(path, "rb") as f:
        magic = f.read(8)
        if magic == _PNG_SIGNATURE:
            return _png_size(f)
        if magic[:2] == b"\xff\xd8":
            return _jpeg_size(f)
    return None


def _decoded_size(path: Path) -> Optional[Tuple[int, int]]:
    """Other formats (BMP, TIFF, WebP, ...): let OpenCV decode, as the server would."""
    cv2 = require("cv2", "to read image sizes")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return None if img is None else (int(img.shape[1]), int(img.shape[0]))


def image_size(path: Path, shown: Optional[str] = None) -> Tuple[int, int]:
    """``(width, height)`` of an image file; UsageError naming ``shown`` (or the path)."""
    shown = shown or str(path)
    try:
        size = _header_size(path) or _decoded_size(path)
    except OSError as exc:
        raise UsageError(f"{shown}: cannot read image: {exc.strerror or exc}") from exc
    if size is None or size[0] <= 0 or size[1] <= 0:
        raise UsageError(f"{shown}: not a readable image (corrupt, truncated or unsupported format)")
    return int(size[0]), int(size[1])
