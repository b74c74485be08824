"""Offline score thresholds (no heavy imports: the CLI takes its defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    """COCO's protocol by default: keep nearly everything and let AP integrate over scores."""

    score: float = 0.001
    iou: float = 0.7
    max_detections: int = 300
