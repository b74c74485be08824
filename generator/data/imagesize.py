"""Image width/height from the file header, without decoding the pixels.

Loading a 100k-image dataset must not decode 100k images. The sizes are those of the
stored pixel grid, which is what ``generator.runtime.imaging.decode_image`` yields
(``IMREAD_UNCHANGED`` ignores EXIF orientation), so labels and serving agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

from generator._lazy import require
from generator.errors import UsageError

_HEAD_BYTES = 1 << 18  # JPEG start-of-frame lies after EXIF/ICC segments, well inside this


def _header_size(path: Path) -> Optional[Tuple[int, int]]:
    """The serving code's header reader (JPEG, PNG, BMP, GIF, WebP) on the file's first bytes."""
    from generator.runtime.imaging import ImageError, header_size

    with open(path, "rb") as f:
        head = f.read(_HEAD_BYTES)
    try:
        _, width, height = header_size(head)
    except ImageError:
        return None
    return width, height


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
