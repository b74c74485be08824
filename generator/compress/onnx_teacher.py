"""A detector ONNX as a distillation teacher: run by ONNX Runtime (the runner registry) in any
supported output layout, its decoded detections are the student's soft targets.

The student trains on square batches (``S x S``, 0..1 RGB, letterboxed by the training
loader); the teacher sees each batch as its own preprocessing would make it: letterboxed
again to its input size ``H x W`` when that differs, and in its input format (scale,
channel order, mean / std). Its raw outputs decode through the layout (the same code as
the served postprocess), then NMS where the layout needs it, at a low score threshold so
that uncertain objects still teach, and boxes are mapped back to the student's pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from generator.errors import UsageError

SCORE_THRESHOLD = 0.05  # teacher detections above this become soft targets (weighted by their score)
IOU_THRESHOLD = 0.6  # NMS for layouts that leave it to the postprocess
MAX_DETECTIONS = 100  # per image
MAX_CANDIDATES = 1024  # per image, before NMS
PAD = 114 / 255  # the letterbox grey, in 0..1


class TeacherDetections(NamedTuple):
    """A batch of teacher detections, padded to ``D`` per image, boxes in student pixels."""

    boxes: torch.Tensor  # [B, D, 4] x1, y1, x2, y2
    scores: torch.Tensor  # [B, D]
    classes: torch.Tensor  # [B, D] long
    valid: torch.Tensor  # [B, D] bool


class OnnxTeacher:
    """``detections(images)`` of a detector ONNX. ``read_options``: ``read_signature``
    keywords (``layout``, ``imgsz``, ``scores``) for what the file does not tell; ``names``:
    the dataset's classes, naming the teacher's where the file does not."""

    def __init__(self, path: Path, read_options: Optional[dict] = None, threads: int = 0, names=None):
        from generator.evaluation.ort_only import TEACHER_HINT, read_for_dataset, refuse_trt_plugin
        from generator.evaluation.predictors import open_onnx
        from generator.export.signature import layout_of

        self.path = Path(path)
        self.sig = read_for_dataset(self.path, names, read_options or {})
        refuse_trt_plugin(self.path, self.sig, "as a teacher", TEACHER_HINT)
        self.layout = layout_of(self.sig)
        self.runner = open_onnx(self.path, self.sig, threads)
        self.height, self.width = self.sig.height, self.sig.width

    @property
    def num_classes(self) -> int:
        return int(self.sig.num_classes)

    def student_size(self) -> int:
        """The square training size that holds the teacher's input: its longer side, up to a multiple of 32."""
        return -(-max(self.height, self.width) // 32) * 32

    @torch.no_grad()
    def detections(self, images: torch.Tensor) -> TeacherDetections:
        """Teacher detections for the student's batch ``[B, 3, S, S]`` (0..1 RGB)."""
        x, (scale, pad_x, pad_y) = letterbox_batch(images.detach().float().cpu(), self.height, self.width)
        outputs = self.runner(to_input_format(x, self.sig.input_format).numpy())
        boxes, scores, classes, valid = self.decode(list(outputs))
        boxes = (boxes - np.array([pad_x, pad_y, pad_x, pad_y], np.float32)) / np.float32(scale)
        arrays = (boxes, scores, classes.astype(np.int64), valid)
        return TeacherDetections(*(torch.from_numpy(a).to(images.device) for a in arrays))

    def decode(self, outputs):
        """Layout decode, NMS where the layout needs it, the best ``MAX_DETECTIONS`` kept per image."""
        from generator.runtime.boxes import nms_keep

        cand = self.layout.decode(outputs, SCORE_THRESHOLD, MAX_CANDIDATES)
        keep = nms_keep(cand, IOU_THRESHOLD) if self.layout.needs_nms else cand.valid
        rank = np.cumsum(keep, axis=1) - 1
        take = keep & (rank < MAX_DETECTIONS)
        d = int(take.sum(axis=1).max(initial=0))
        b = take.shape[0]
        boxes, scores = np.zeros((b, d, 4), np.float32), np.zeros((b, d), np.float32)
        classes, valid = np.zeros((b, d), np.int64), np.zeros((b, d), bool)
        bi, ki = np.nonzero(take)
        slot = rank[bi, ki]
        boxes[bi, slot], scores[bi, slot] = cand.xyxy[bi, ki], cand.scores[bi, ki]
        classes[bi, slot], valid[bi, slot] = cand.classes[bi, ki], True
        return boxes, scores, classes, valid


def letterbox_batch(images: torch.Tensor, height: int, width: int) -> Tuple[torch.Tensor, Tuple[float, int, int]]:
    """``[B, 3, S, S']`` -> ``[B, 3, height, width]`` resized keeping the aspect ratio and padded
    with grey, centred like the serving letterbox; and ``(scale, pad_x, pad_y)`` to map back."""
    from generator.runtime.letterbox import letterbox_params

    h, w = images.shape[2:]
    if (h, w) == (height, width):
        return images, (1.0, 0, 0)
    scale, new_w, new_h, left, top = letterbox_params(h, w, height, width)
    resized = F.interpolate(images, size=(new_h, new_w), mode="bilinear", align_corners=False)
    canvas = images.new_full((images.shape[0], 3, height, width), PAD)
    canvas[:, :, top:top + new_h, left:left + new_w] = resized
    return canvas, (float(scale), int(left), int(top))


def to_input_format(x: torch.Tensor, fmt) -> torch.Tensor:
    """0..1 RGB -> the teacher's input: ``((pixel in its channel order) * scale - mean) / std``.
    The default format (RGB, 0..1, no mean/std) is ``x`` itself."""
    if fmt is None or getattr(fmt, "is_default", False):
        return x
    if fmt.channel_order == "BGR":
        x = x.flip(1)
    x = x * (255.0 * fmt.scale)
    mean = torch.tensor(fmt.mean, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(fmt.std, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def check_teacher_classes(teacher: OnnxTeacher, names) -> None:
    """The teacher's class count must be the dataset's; its names too, where its metadata has them."""
    if teacher.num_classes != len(names):
        raise UsageError(f"{teacher.path}: the teacher has {teacher.num_classes} classes but the dataset has "
                         f"{len(names)}: {list(names)}")
    if teacher.sig.source_meta and list(teacher.sig.names) != list(names):
        raise UsageError(f"{teacher.path}: teacher classes {list(teacher.sig.names)} differ from the dataset's "
                         f"{list(names)}")
