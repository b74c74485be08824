"""What every output layout provides: decoded candidates and a check of output shapes.

A layout turns a detector's raw outputs (in graph order) into :class:`Candidates`:
boxes in letterboxed input pixels with a score and a class, padded to the same count
``K`` per image (``valid`` marks the real ones). ``boxes.postprocess`` then runs NMS
when the layout asks for it (``needs_nms``) and maps the boxes back to the image.

A layout is a class: the registry (``layouts/__init__.py``) makes a configured instance
per use with the options every layout accepts (``height``, ``width``: the network input
in pixels; ``scores``: ``probs`` or ``logits``), each free to ignore them. A new layout is
one module with a :class:`Layout` subclass, registered in ``layouts/__init__.py``.
Everything here is numpy only: it runs inside Triton.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

FLOATS = ("FP32", "FP16")
INTEGERS = ("INT32", "INT64")
SCORE_KINDS = ("probs", "logits")


class OutputSpec(NamedTuple):
    """One graph output as a layout checks it."""

    name: str
    dims: List[Optional[int]]  # with the batch axis; None where dynamic
    dtype: Optional[str]  # Triton name; None where the caller did not say


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
    outputs must be, as error messages say it), implement :meth:`output_shape` and :meth:`decode`.

    ``output_counts`` lists every number of outputs accepted when there is more than one form
    (``num_outputs`` is then the usual one). ``runs_in_onnxruntime`` is a property of the
    graph, not the layout: signature reading clears it for TensorRT-only nodes.
    """

    name: str = ""
    needs_nms: bool = True
    num_outputs: int = 1
    output_counts: Tuple[int, ...] = ()
    outputs_text: str = ""
    runs_in_onnxruntime: bool = True

    def __init__(self, height: int = 0, width: int = 0, scores: str = "probs"):
        if scores not in SCORE_KINDS:
            raise ValueError(f"layout {self.name}: scores must be one of {', '.join(SCORE_KINDS)}, not {scores!r}")
        self.height, self.width, self.scores = int(height), int(width), scores

    def check_outputs(self, outputs: Sequence[Tuple]) -> OutputShape:
        """The shape facts of ``outputs`` (``(name, dims[, dtype])`` in graph order, dims with the
        batch axis); LayoutMismatch naming the output when their number, dims or dtypes do not fit."""
        specs = [_spec(o) for o in outputs]
        if len(specs) not in (self.output_counts or (self.num_outputs,)):
            raise LayoutMismatch(f"expected {self.outputs_text}, found {[s.name for s in specs]}")
        return self.output_shape(specs)

    def output_shape(self, outputs: List[OutputSpec]) -> OutputShape:
        """Check the dims of the right number of outputs; LayoutMismatch naming the output."""
        raise NotImplementedError

    def plausible(self, shape: OutputShape) -> bool:
        """Whether outputs of this shape are likely this layout (used to resolve ambiguity)."""
        return True

    def decode(self, outputs: Sequence[np.ndarray], score_threshold: float, max_candidates: int) -> Candidates:
        """Raw outputs (graph order, batch first) -> the best ``max_candidates`` per image above
        ``score_threshold``, sorted by descending score."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<layout {self.name}>"


def _spec(output: Sequence) -> OutputSpec:
    name, dims = output[0], output[1]
    dtype = output[2] if len(output) > 2 else None
    return OutputSpec(str(name), [None if d is None or int(d) < 0 else int(d) for d in dims], dtype)


def check_dims(spec: OutputSpec, pattern: str, rank: int, fixed: Sequence[int] = (),
               equal: Sequence[Tuple[int, int]] = (), at_least: Sequence[Tuple[int, int]] = ()) -> None:
    """LayoutMismatch unless ``spec`` has ``rank`` dims, those at the indices in ``fixed`` known,
    each ``(index, value)`` in ``equal`` equal to ``value`` and each in ``at_least`` known and
    at least ``value``. ``pattern`` is the expected shape as the message shows it."""
    dims = spec.dims
    ok = len(dims) == rank and all(dims[i] is not None for i in fixed) \
        and all(dims[i] == value for i, value in equal) \
        and all(dims[i] is not None and dims[i] >= value for i, value in at_least)
    if not ok:
        raise LayoutMismatch(f"output {spec.name!r} must be {pattern}, got {dims}")


def check_dtype(spec: OutputSpec, allowed: Sequence[str]) -> None:
    """LayoutMismatch unless the output's dtype (when known) is one of ``allowed``."""
    if spec.dtype is not None and spec.dtype not in allowed:
        raise LayoutMismatch(f"output {spec.name!r} must be {' or '.join(allowed)}, got {spec.dtype}")


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


def pick_rows(raw: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``raw [B, A, F]`` -> ``[B, K, F]``, the rows ``order [B, K]`` of each image."""
    return raw[np.arange(raw.shape[0])[:, None], order]


def cxcywh_to_xyxy(cx: np.ndarray, cy: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Centre and size -> ``[..., 4]`` corners."""
    half_w, half_h = w / 2, h / 2
    return np.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), axis=-1)
