"""What every output layout provides: decoded candidates and a check of output shapes.

A layout turns a detector's raw outputs (in graph order) into :class:`Candidates`:
boxes in letterboxed input pixels with a score and a class, padded to the same count
``K`` per image (``valid`` marks the real ones). ``boxes.postprocess`` then runs NMS
when the layout asks for it (``needs_nms``) and maps the boxes back to the image.

A new layout is one module with a :class:`Layout` subclass, registered in
``layouts/__init__.py``. Everything here is numpy only: it runs inside Triton.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

# (name, dims) of one graph output; None for a dynamic dimension
OutputDims = Tuple[str, Sequence[Optional[int]]]


class Candidates(NamedTuple):
    """Decoded detections before NMS, for a whole batch (``K`` slots per image)."""

    xyxy: np.ndarray  # [B, K, 4] float32, x1, y1, x2, y2 in letterboxed input pixels
    scores: np.ndarray  # [B, K] float32, descending within each image over the valid slots
    classes: np.ndarray  # [B, K] int
    valid: np.ndarray  # [B, K] bool


class OutputShape(NamedTuple):
    """What a layout reads from the output dims (None where the shape does not say)."""

    num_classes: Optional[int]
    num_candidates: Optional[int]


class LayoutMismatch(ValueError):
    """The outputs do not have the shapes a layout decodes; the message says which and why."""


class Layout:
    """Base class: set ``name``, ``needs_nms``, ``num_outputs`` and ``outputs_text`` (what the
    outputs must be, as error messages say it), implement :meth:`output_shape` and :meth:`decode`."""

    name: str = ""
    needs_nms: bool = True
    num_outputs: int = 1
    outputs_text: str = ""

    def check_outputs(self, outputs: Sequence[OutputDims]) -> OutputShape:
        """The shape facts of ``outputs`` (``(name, dims)`` in graph order); LayoutMismatch when
        their number or dims do not fit this layout. Used when a detector is read."""
        if len(outputs) != self.num_outputs:
            raise LayoutMismatch(f"expected {self.outputs_text}, found {[name for name, _ in outputs]}")
        return self.output_shape([(name, list(dims)) for name, dims in outputs])

    def output_shape(self, outputs: List[OutputDims]) -> OutputShape:
        """Check the dims of the right number of outputs; LayoutMismatch naming the output."""
        raise NotImplementedError

    def decode(self, outputs: Sequence[np.ndarray], score_threshold: float, max_candidates: int) -> Candidates:
        """Raw outputs (graph order, batch first) -> the best ``max_candidates`` per image above
        ``score_threshold``, sorted by descending score."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<layout {self.name}>"


def top_candidates(conf: np.ndarray, score_threshold: float, max_candidates: int
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image, the indices of the best scores above the threshold, best first.

    ``conf`` is ``[B, A]``; returns ``order [B, K]``, ``scores [B, K]`` and ``valid [B, K]``,
    with ``K`` the most any image has (at most ``max_candidates``). Ties keep anchor order.
    """
    candidate = conf > score_threshold
    k = int(min(max_candidates, candidate.sum(axis=1).max(initial=0)))
    order = np.argsort(np.where(candidate, -conf, np.inf), axis=1, kind="stable")[:, :k]
    rows = np.arange(conf.shape[0])[:, None]
    return order, conf[rows, order], candidate[rows, order]


def cxcywh_to_xyxy(cx: np.ndarray, cy: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Centre and size -> ``[..., 4]`` corners."""
    half_w, half_h = w / 2, h / 2
    return np.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), axis=-1)
