"""Draw detections onto an RGB image with numpy alone and return PNG bytes.

Labels use a built-in 3x5 bitmap font (upper-case letters, digits, ``. - _ : % /``),
scaled up; no image library is needed.
"""

from __future__ import annotations

import os
from typing import Sequence, Tuple, Union

import numpy as np

from client.detection import Detection
from client.errors import InvalidImageError
from client.images import encode_png

# RGB colours, one per class id (cycled)
PALETTE = ((255, 56, 56), (255, 157, 151), (255, 112, 31), (255, 178, 29), (207, 210, 49), (72, 249, 10),
           (146, 204, 23), (61, 219, 134), (26, 147, 52), (0, 212, 187), (44, 153, 168), (0, 194, 255))

# 3x5 glyphs: five rows, each an octal digit whose bits 4, 2, 1 are the left, middle, right pixel
_GLYPHS = dict(zip(
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ.-_:%/ ?",
    ("75557 26227 71747 71717 55711 74717 74757 71111 75757 75717 25755 65656 34443 65556 74647 74644 "
     "34553 55755 72227 11152 55655 44447 57755 65555 25552 65644 25563 65655 34216 72222 55557 55552 "
     "55775 55255 55222 71247 00002 00700 00007 02020 51245 11244 00000 71202").split()))


def _glyph(char: str) -> np.ndarray:
    rows = _GLYPHS.get(char.upper(), _GLYPHS["?"])
    return np.array([[(int(r, 8) >> s) & 1 for s in (2, 1, 0)] for r in rows], dtype=bool)


def text_mask(text: str, scale: int = 2) -> np.ndarray:
    """A boolean ``H x W`` mask of ``text`` in the bitmap font (1 pixel between glyphs)."""
    if not text:
        return np.zeros((5 * scale, 0), dtype=bool)
    spaced = [np.pad(_glyph(c), ((0, 0), (0, 1))) for c in text]
    mask = np.concatenate(spaced, axis=1)[:, :-1]
    return np.kron(mask, np.ones((scale, scale), dtype=bool)).astype(bool)


def _fill(image: np.ndarray, y1: int, y2: int, x1: int, x2: int, color: Tuple[int, int, int]) -> None:
    h, w = image.shape[:2]
    y1, y2, x1, x2 = max(0, y1), min(h, y2), max(0, x1), min(w, x2)
    if y1 < y2 and x1 < x2:
        image[y1:y2, x1:x2] = color


def _rectangle(image: np.ndarray, box: Tuple[int, int, int, int], color: Tuple[int, int, int], thickness: int) -> None:
    x1, y1, x2, y2 = box
    t = thickness
    _fill(image, y1, y1 + t, x1, x2 + 1, color)
    _fill(image, y2 - t + 1, y2 + 1, x1, x2 + 1, color)
    _fill(image, y1, y2 + 1, x1, x1 + t, color)
    _fill(image, y1, y2 + 1, x2 - t + 1, x2 + 1, color)


def _label(image: np.ndarray, text: str, x: int, y: int, color: Tuple[int, int, int], scale: int) -> None:
    """White text on a ``color`` background, above ``(x, y)`` (inside the box at the top edge)."""
    mask = text_mask(text, scale)
    pad = scale
    box_h, box_w = mask.shape[0] + 2 * pad, mask.shape[1] + 2 * pad
    top = y - box_h if y - box_h >= 0 else y
    h, w = image.shape[:2]
    left = min(max(0, x), max(0, w - box_w))
    _fill(image, top, top + box_h, left, left + box_w, color)
    region = image[top + pad:top + pad + mask.shape[0], left + pad:left + pad + mask.shape[1]]
    region[mask[:region.shape[0], :region.shape[1]]] = (255, 255, 255)


def _as_rgb(image: Union[np.ndarray, bytes, str, "os.PathLike[str]"]) -> np.ndarray:
    if isinstance(image, np.ndarray):
        array = image
    else:
        try:  # encoded images need a decoder; numpy has none
            from PIL import Image
        except ImportError:
            raise InvalidImageError("draw needs the decoded RGB uint8 array (or Pillow installed to draw "
                                    "onto encoded images)") from None
        import io

        source = io.BytesIO(bytes(image)) if isinstance(image, (bytes, bytearray)) else os.fspath(image)
        with Image.open(source) as im:
            array = np.asarray(im.convert("RGB"))
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise InvalidImageError(f"draw needs an HxWx3 RGB (or HxW) uint8 array, got {array.dtype} {array.shape}")
    return np.repeat(array[:, :, None], 3, axis=2) if array.ndim == 2 else array.copy()


def draw_array(image: Union[np.ndarray, bytes, str, "os.PathLike[str]"], detections: Sequence[Detection],
               labels: bool = True, thickness: int = 2, scale: int = 2) -> np.ndarray:
    """A copy of ``image`` (RGB uint8; encoded images need Pillow) with boxes and
    ``NAME 0.87`` labels, as an ``HxWx3`` RGB array."""
    out = _as_rgb(image)
    h, w = out.shape[:2]
    for det in detections:
        color = PALETTE[det.class_id % len(PALETTE)]
        # clipped to the image, so that a box reaching past an edge still shows there
        x1, x2 = (min(max(int(round(v)), 0), w - 1) for v in (det.x1, det.x2))
        y1, y2 = (min(max(int(round(v)), 0), h - 1) for v in (det.y1, det.y2))
        box = (x1, y1, x2, y2)
        _rectangle(out, box, color, thickness)
        if labels:
            _label(out, f"{det.class_name} {det.score:.2f}", box[0], box[1], color, scale)
    return out


def draw(image: Union[np.ndarray, bytes, str, "os.PathLike[str]"], detections: Sequence[Detection],
         labels: bool = True, thickness: int = 2, scale: int = 2) -> bytes:
    """PNG bytes of ``image`` with the detections drawn (see :func:`draw_array`)."""
    return encode_png(draw_array(image, detections, labels, thickness, scale))
