"""A deterministic synthetic shapes dataset in YOLO format.

Every image is rendered from its own generator ``default_rng([seed, index])``, so the
same seed gives byte-identical files and image ``i`` does not depend on the others.
Labels are the tight boxes of each shape's VISIBLE pixels (after later shapes, top
clutter and the image border have hidden parts of it); a shape more than
``MAX_HIDDEN`` hidden gets no label, like an annotator would skip it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np

from generator._lazy import require
from generator.atomic import atomic_dir
from generator.data.shapes import BACKGROUNDS, CLASS_NAMES, CLUTTER, SHAPES, rand_color
from generator.errors import UsageError

SIZE_RANGE = (0.06, 0.5)  # object long side / image short side, log-uniform
IMAGE_ASPECT = (0.75, 1.333)  # width / height; the long side is imgsz
MAX_OBJECTS = 8
MAX_HIDDEN = 0.6
MIN_CONTRAST = 120  # L1 distance between an object's colour and the background under it
JPEG_QUALITY = 95
SUBPIXEL_BITS = 4  # fillPoly's fixed-point shift: smoother outlines, still exact integer maths


@dataclass
class Rendered:
    """One synthetic image (RGB) and its labels: xyxy pixel boxes and class indices."""

    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray


@dataclass
class _Placed:
    index: int  # value in the owner map
    cls: int
    region: Tuple[int, int, int, int]  # x0, y0, x1, y1 of the drawn pixels, clipped to the image
    area: int  # pixel count of the whole shape, including any part outside the image


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of image ``index``: independent per image, fixed by the seed."""
    return np.random.default_rng([seed, index])


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else lo


def _image_shape(rng: np.random.Generator, imgsz: int) -> Tuple[int, int]:
    """``(h, w)`` with the long side ``imgsz`` and a varied aspect, so letterboxing pads."""
    aspect = _log_uniform(rng, *IMAGE_ASPECT)
    if aspect >= 1:
        return max(1, round(imgsz / aspect)), imgsz
    return imgsz, max(1, round(imgsz * aspect))


def _shape_mask(cls: int, centre: np.ndarray, side: int, rng: np.random.Generator):
    """Rasterize one shape into a local mask; return ``(mask, x0, y0)``."""
    kind = SHAPES[CLASS_NAMES[cls]]
    size = side * _log_uniform(rng, *SIZE_RANGE)
    aspect = _log_uniform(rng, *kind.aspect)
    half = np.array([size / 2, size / 2 / aspect]) if aspect >= 1 else np.array([size / 2 * aspect, size / 2])
    angle = rng.uniform(0, 2 * np.pi) if kind.rotate else 0.0
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    polys = [((pts * half) @ rot.T + centre, value) for pts, value in kind.outline()]
    allpts = np.concatenate([p for p, _ in polys])
    x0, y0 = np.floor(allpts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(allpts.max(axis=0)).astype(int) + 1
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    scale = 1 << SUBPIXEL_BITS
    for pts, value in polys:
        fixed = np.round((pts - (x0, y0)) * scale).astype(np.int32)
        cv2.fillPoly(mask, [fixed], value, cv2.LINE_8, SUBPIXEL_BITS)
    return mask, int(x0), int(y0)


def _contrast_color(under: np.ndarray, rng: np.random.Generator) -> Tuple[int, int, int]:
    """A random colour that stands out from the pixels it covers (a few tries, deterministic)."""
    mean = under.reshape(-1, 3).mean(axis=0) if under.size else np.full(3, 128.0)
    color = rand_color(rng)
    for _ in range(8):
        if np.abs(np.array(color) - mean).sum() >= MIN_CONTRAST:
            break
        color = rand_color(rng)
    return color


def _place(img, owner, index, cls, centre, rng) -> Optional[_Placed]:
    """Draw shape ``index`` over everything drawn so far and record which pixels it owns."""
    h, w = owner.shape
    mask, x0, y0 = _shape_mask(cls, centre, min(h, w), rng)
    area = int(np.count_nonzero(mask))
    ix0, iy0 = max(x0, 0), max(y0, 0)
    ix1, iy1 = min(x0 + mask.shape[1], w), min(y0 + mask.shape[0], h)
    if area == 0 or ix1 <= ix0 or iy1 <= iy0:
        return None
    m = mask[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0].astype(bool)
    patch = img[iy0:iy1, ix0:ix1]
    patch[m] = _contrast_color(patch[m], rng)
    owner[iy0:iy1, ix0:ix1][m] = index
    return _Placed(index, cls, (ix0, iy0, ix1, iy1), area)


def _centre(rng, h: int, w: int, placed: List[_Placed]) -> np.ndarray:
    """Uniform, or (often) near an earlier shape so that overlaps and occlusion are common."""
    if placed and rng.random() < 0.4:
        x0, y0, x1, y1 = placed[int(rng.integers(len(placed)))].region
        base = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        return base + rng.normal(0, 0.5, 2) * max(x1 - x0, y1 - y0)
    return rng.uniform((0, 0), (w, h))


def _top_line(img: np.ndarray, owner: np.ndarray, rng: np.random.Generator) -> None:
    """An unlabelled line drawn over the objects: it hides the pixels it covers."""
    h, w = owner.shape
    mask = np.zeros((h, w), np.uint8)
    p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
    p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
    cv2.line(mask, p1, p2, 1, int(rng.integers(1, 4)), cv2.LINE_8)
    m = mask.astype(bool)
    img[m] = rand_color(rng)
    owner[m] = -1


def _visible_box(owner: np.ndarray, obj: _Placed) -> Optional[Tuple[int, int, int, int]]:
    """Tight pixel-edge box of what is still visible of ``obj``; None if mostly hidden."""
    x0, y0, x1, y1 = obj.region
    vis = owner[y0:y1, x0:x1] == obj.index
    if np.count_nonzero(vis) < (1 - MAX_HIDDEN) * obj.area:
        return None
    rows, cols = np.flatnonzero(vis.any(axis=1)), np.flatnonzero(vis.any(axis=0))
    box = (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1)
    return box if box[2] - box[0] >= 2 and box[3] - box[1] >= 2 else None


def _sensor(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera-like finish: mild noise, sometimes a slight blur."""
    if rng.random() < 0.7:
        # luminance noise only: a third of the random numbers, and the cost that dominates rendering
        noise = rng.standard_normal((*img.shape[:2], 1), dtype=np.float32) * np.float32(rng.uniform(1, 6))
        img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.2:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    return img


def render_image(rng: np.random.Generator, imgsz: int, classes: int) -> Rendered:
    """Background, clutter, 1..8 shapes (later ones on top), occluding lines, sensor noise."""
    h, w = _image_shape(rng, imgsz)
    img = BACKGROUNDS[list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]](h, w, rng)
    clutter = list(CLUTTER)
    for _ in range(int(rng.integers(2, 10))):
        CLUTTER[clutter[int(rng.integers(len(clutter)))]](img, rng)
    owner = np.full((h, w), -1, dtype=np.int16)
    placed: List[_Placed] = []
    for index in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        obj = _place(img, owner, index, int(rng.integers(classes)), _centre(rng, h, w, placed), rng)
        if obj is not None:
            placed.append(obj)
    for _ in range(int(rng.integers(0, 3))):
        _top_line(img, owner, rng)
    kept = [(box, obj.cls) for obj in placed if (box := _visible_box(owner, obj)) is not None]
    boxes = np.array([b for b, _ in kept], dtype=np.float32).reshape(-1, 4)
    return Rendered(_sensor(img, rng), boxes, np.array([c for _, c in kept], dtype=np.int64))


def render_sample(seed: int, index: int, imgsz: int = 256, classes: int = 3) -> Rendered:
    """Image ``index`` of ``synthesize(..., seed=seed)`` (same pixels before JPEG, same labels)."""
    return render_image(image_rng(seed, index), imgsz, classes)


def yolo_lines(r: Rendered) -> str:
    """Label file text: ``cls cx cy w h`` normalized, 6 decimals."""
    h, w = r.image.shape[:2]
    lines = []
    for (x1, y1, x2, y2), c in zip(r.boxes.tolist(), r.classes.tolist()):
        lines.append(f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
    return "".join(line + "\n" for line in lines)


def _check_args(images: int, imgsz: int, classes: int, val_fraction: float) -> None:
    if int(images) != images or images < 2:
        raise UsageError(f"--images must be an integer >= 2 (train and val need one each), got {images}")
    if int(imgsz) != imgsz or imgsz < 32:
        raise UsageError(f"--imgsz must be an integer >= 32, got {imgsz}")
    if int(classes) != classes or not 1 <= classes <= len(CLASS_NAMES):
        raise UsageError(f"--classes must be between 1 and {len(CLASS_NAMES)} ({', '.join(CLASS_NAMES)}), "
                         f"got {classes}")
    if not 0 < val_fraction < 1:
        raise UsageError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")


def _val_indices(images: int, val_fraction: float, seed: int) -> set:
    """A fixed random subset, at least one image in each split."""
    n_val = min(images - 1, max(1, int(round(images * val_fraction))))
    return set(np.random.default_rng(seed).permutation(images)[:n_val].tolist())


def _check_target(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise UsageError(f"{out_dir} exists and is not empty; pass --force to replace it")


def _write_one(root: Path, split: str, stem: str, r: Rendered) -> None:
    ok, jpg = cv2.imencode(".jpg", r.image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise UsageError(f"OpenCV could not encode {split}/{stem}.jpg")
    (root / "images" / split / f"{stem}.jpg").write_bytes(jpg.tobytes())
    (root / "labels" / split / f"{stem}.txt").write_text(yolo_lines(r), encoding="utf-8")


def _write_yaml(root: Path, classes: int) -> None:
    """``data.yaml`` without a ``path`` key: splits are relative to the YAML's folder for our
    reader and for Ultralytics alike (Ultralytics resolves a relative ``path`` against the
    working directory or its datasets folder, never against the YAML)."""
    yaml = require("yaml", "to write the data YAML")
    cfg = {"train": "images/train", "val": "images/val", "nc": classes,
           "names": CLASS_NAMES[:classes]}
    (root / "data.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")


def synthesize(out_dir: Path, images: int, seed: int, imgsz: int = 256, classes: int = 3,
               val_fraction: float = 0.2, progress: bool = True, force: bool = False) -> Path:
    """Render the dataset into a temporary sibling of ``out_dir``, then rename it into place.

    Returns the path of ``out_dir/data.yaml``. A non-empty ``out_dir`` is refused unless
    ``force``. Nothing is left behind if rendering fails or is interrupted.
    """
    from tqdm import tqdm

    _check_args(images, imgsz, classes, val_fraction)
    out_dir = Path(out_dir).absolute()
    _check_target(out_dir, force)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out_dir) as tmp:
        for kind in ("images", "labels"):
            for split in ("train", "val"):
                (tmp / kind / split).mkdir(parents=True)
        val = _val_indices(images, val_fraction, seed)
        for i in tqdm(range(images), desc="synthesizing", unit="img", disable=not progress, leave=False):
            _write_one(tmp, "val" if i in val else "train", f"{i:06d}", render_image(image_rng(seed, i), imgsz, classes))
        _write_yaml(tmp, classes)
    return out_dir / "data.yaml"
