"""Registries for the synthetic dataset: object shapes, background textures, clutter.

Shapes are outlines in unit coordinates (``[-1, 1]`` on both axes) that the renderer
scales, rotates and fills; each comes with the aspect ratios it may be drawn at, so
that e.g. a circle is never confused with an ellipse. Backgrounds and clutter draw
straight onto an RGB image with OpenCV (8-connected, no anti-aliasing: deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import cv2
import numpy as np

Outline = List[Tuple[np.ndarray, int]]  # (polygon [k, 2] in unit coordinates, fill value 1 or 0 = hole)


def _regular(k: int, phase: float = -np.pi / 2) -> np.ndarray:
    t = phase + np.arange(k) * 2 * np.pi / k
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    outer = _regular(2 * points)
    outer[1::2] *= inner
    return outer


def _cross(arm: float = 0.34) -> np.ndarray:
    a = arm
    return np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1],
                     [-a, a], [-1, a], [-1, -a], [-a, -a]], dtype=np.float64)


def _arrow() -> np.ndarray:
    return np.array([[-1, -0.35], [0.2, -0.35], [0.2, -1], [1, 0], [0.2, 1], [0.2, 0.35], [-1, 0.35]],
                    dtype=np.float64)


@dataclass(frozen=True)
class ShapeKind:
    """A class of the synthetic dataset: its outline and the aspect ratios (w/h) it takes."""

    outline: Callable[[], Outline]
    aspect: Tuple[float, float]  # log-uniform range; (1, 1) = always isotropic
    rotate: bool = True


_CIRCLE = _regular(48)
# insertion order = class order; synthesize(classes=k) uses the first k
SHAPES: Dict[str, ShapeKind] = {
    "circle": ShapeKind(lambda: [(_CIRCLE, 1)], (1.0, 1.0), rotate=False),
    "rectangle": ShapeKind(lambda: [(np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float), 1)], (0.4, 2.5)),
    "triangle": ShapeKind(lambda: [(np.array([[0, -1], [1, 1], [-1, 1]], float), 1)], (0.7, 1.5)),
    "ellipse": ShapeKind(lambda: [(_CIRCLE, 1)], (1.8, 2.8)),
    "star": ShapeKind(lambda: [(_star(), 1)], (0.85, 1.2)),
    "cross": ShapeKind(lambda: [(_cross(), 1)], (0.75, 1.33)),
    "hexagon": ShapeKind(lambda: [(_regular(6), 1)], (0.85, 1.2)),
    "ring": ShapeKind(lambda: [(_CIRCLE, 1), (_CIRCLE * 0.55, 0)], (0.85, 1.2)),
    "arrow": ShapeKind(lambda: [(_arrow(), 1)], (1.0, 1.8)),
    "pentagon": ShapeKind(lambda: [(_regular(5), 1)], (0.9, 1.1)),
}
CLASS_NAMES: List[str] = list(SHAPES)


def rand_color(rng: np.random.Generator) -> Tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, size=3))


# ---------------------------------------------------------------- backgrounds (H, W, rng) -> RGB uint8

def _noise_bg(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    base = rng.integers(30, 226, size=3).astype(np.float32)
    noise = rng.standard_normal((h, w, 1), dtype=np.float32) * rng.uniform(5, 25)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _gradient_bg(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    a, b = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = xx * np.cos(angle) + yy * np.sin(angle)
    t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
    return (a + (b - a) * t[..., None]).astype(np.uint8)


def _stripes_bg(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    a, b = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 40)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period))
    return (a + (b - a) * t[..., None]).astype(np.uint8)


def _checker_bg(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    a, b = rng.integers(0, 256, size=(2, 3)).astype(np.uint8)
    cell = int(rng.integers(6, 40))
    yy, xx = np.mgrid[0:h, 0:w]
    odd = ((yy // cell + xx // cell) % 2).astype(bool)
    return np.where(odd[..., None], a, b).astype(np.uint8)


def _blotches_bg(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random colour fields: a tiny random image upsampled."""
    k = int(rng.integers(3, 9))
    small = rng.integers(0, 256, size=(k, k, 3)).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


BACKGROUNDS: Dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = {
    "noise": _noise_bg, "gradient": _gradient_bg, "stripes": _stripes_bg,
    "checker": _checker_bg, "blotches": _blotches_bg,
}


# ---------------------------------------------------------------- clutter (img, rng) -> None, never labelled

def _point(img: np.ndarray, rng: np.random.Generator) -> Tuple[int, int]:
    return int(rng.integers(0, img.shape[1])), int(rng.integers(0, img.shape[0]))


def _line(img: np.ndarray, rng: np.random.Generator) -> None:
    cv2.line(img, _point(img, rng), _point(img, rng), rand_color(rng), int(rng.integers(1, 4)), cv2.LINE_8)


def _blob(img: np.ndarray, rng: np.random.Generator) -> None:
    """An irregular small polygon: shaped unlike any class, and below the smallest object size."""
    r = rng.uniform(0.01, 0.04) * min(img.shape[:2])
    t = np.sort(rng.uniform(0, 2 * np.pi, 7))
    radius = r * rng.uniform(0.3, 1.0, 7)
    cx, cy = _point(img, rng)
    pts = np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], axis=1)
    cv2.fillPoly(img, [np.round(pts).astype(np.int32)], rand_color(rng), cv2.LINE_8)


def _scribble(img: np.ndarray, rng: np.random.Generator) -> None:
    """An open polyline: thin structure with corners, but no filled area."""
    start = np.array(_point(img, rng), dtype=np.float64)
    steps = rng.normal(0, 0.06 * min(img.shape[:2]), size=(int(rng.integers(3, 7)), 2))
    pts = np.round(start + np.cumsum(steps, axis=0)).astype(np.int32)
    cv2.polylines(img, [pts], False, rand_color(rng), 1, cv2.LINE_8)


def _speckle(img: np.ndarray, rng: np.random.Generator) -> None:
    n = int(rng.integers(10, 60))
    ys, xs = rng.integers(0, img.shape[0], n), rng.integers(0, img.shape[1], n)
    img[ys, xs] = rng.integers(0, 256, size=(n, 3), dtype=np.uint8)


CLUTTER: Dict[str, Callable[[np.ndarray, np.random.Generator], None]] = {
    "line": _line, "blob": _blob, "scribble": _scribble, "speckle": _speckle,
}
