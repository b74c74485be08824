"""Distillation from a detector ONNX (``compress.onnx_teacher``): objectness-scaled terms on
the outputs, for any student family (all have the anchor-free DFL head).

An ONNX teacher gives detections, not per-anchor maps, and no DFL distribution. Its
detections are mapped onto the student's anchors with the training assigner (task-aligned,
as for labels); the teacher's score is the *objectness* that scales every term:

- class term: BCE between the student's class logits and soft targets: at the anchors
  assigned to a teacher box, its class gets ``score x alignment`` (the alignment as for
  labels), 0 elsewhere: background where the teacher is sure, weak where it is unsure;
- objectness term: the student's best class probability pulled toward the same target's
  maximum at every anchor;
- box term: CIoU between the student's decoded box and the teacher's box, plus L1 on the
  four sides in grid units (standing in for DFL, which needs the teacher's distribution),
  weighted by the soft target.

Gains follow the detection loss (``training.loss.LossGains``), so a teacher whose detections
equal the labels pulls the student the way the labels do; ``KDWeights`` scale the terms.
No feature imitation: the ONNX teacher's features are not among its outputs.
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from generator.compress.config import KDWeights
from generator.compress.onnx_teacher import OnnxTeacher, TeacherDetections
from generator.errors import UsageError
from generator.models.yolo import make_anchors
from generator.training.assigner import TaskAlignedAssigner
from generator.training.boxes import ciou, dist_to_box
from generator.training.loss import LossGains, expected_dist, split_raw


class OnnxTeacherKD(nn.Module):
    """Callable as the trainer's ``extra_loss`` (``adapters`` is empty: nothing extra to train)."""

    def __init__(self, teacher: OnnxTeacher, student: nn.Module, weights: KDWeights = KDWeights(),
                 gains: LossGains = LossGains()):
        super().__init__()
        if teacher.num_classes != student.head.nc:
            raise UsageError(f"{teacher.path}: the teacher has {teacher.num_classes} classes but the student has "
                             f"{student.head.nc}")
        self.teacher, self.weights, self.gains = teacher, weights, gains
        self.nc, self.reg_max, self.strides = student.head.nc, student.head.reg_max, student.head.strides
        self.assigner = TaskAlignedAssigner(topk=10, alpha=0.5, beta=6.0)
        self.adapters = nn.ModuleList()

    def forward(self, model, images, raw, targets=None):  # noqa: ARG002  (trainer's extra_loss signature)
        """KD loss for the batch the student just saw (its raw per-level maps)."""
        return self.prediction_terms(raw, self.teacher.detections(images)) * images.shape[0]

    def prediction_terms(self, raw: List[torch.Tensor], det: TeacherDetections) -> torch.Tensor:
        """The weighted sum of the objectness, class and box terms against ``det``."""
        dist, logits = split_raw(raw, self.nc, self.reg_max)
        points, stride = make_anchors(raw, self.strides)
        points, stride = points[0].T, stride[0].T  # [A, 2] grid units, [A, 1] pixels per unit
        pred = dist_to_box(expected_dist(dist, self.reg_max), points)  # grid units
        soft, t_boxes, fg = self.soft_targets(logits, pred * stride, points * stride, det)
        score_sum = soft.sum().clamp(min=1.0)
        w, g = self.weights, self.gains
        loss_cls = F.binary_cross_entropy_with_logits(logits, soft.to(logits.dtype), reduction="sum") / score_sum
        loss_obj = F.binary_cross_entropy_with_logits(logits.amax(-1), soft.amax(-1).to(logits.dtype))
        loss_box = logits.new_zeros(())
        if fg.any():
            weight = soft.sum(-1)[fg]
            t_grid = t_boxes[fg] / stride.expand_as(pred[..., :1])[fg]
            iou = (1.0 - ciou(pred[fg], t_grid)) * weight
            l1 = (pred[fg] - t_grid).abs().mean(-1) * weight
            loss_box = (g.box * iou.sum() + g.dfl * l1.sum()) / score_sum
        return w.obj * loss_obj + w.cls * g.cls * loss_cls + w.box * loss_box

    @torch.no_grad()
    def soft_targets(self, logits, pred_px, points_px, det: TeacherDetections):
        """(soft class targets ``[B, A, C]``, assigned teacher boxes ``[B, A, 4]`` px, foreground ``[B, A]``).

        The assigner runs with one "class" per teacher box (the student's probability of
        that box's class), so it reports which box each anchor got; the target is then
        that box's class with ``score x alignment``.
        """
        b, a, c = logits.shape
        m = det.boxes.shape[1]
        if m == 0:
            return logits.new_zeros(b, a, c), pred_px.new_zeros(b, a, 4), torch.zeros(b, a, dtype=torch.bool,
                                                                                        device=logits.device)
        probs = logits.detach().sigmoid()
        per_box = probs.gather(2, det.classes[:, None, :].expand(b, a, m))  # [B, A, M]
        index = torch.arange(m, device=logits.device).expand(b, m)
        t_boxes, aligned, fg = self.assigner(per_box, pred_px.detach().to(det.boxes.dtype), points_px,
                                             index, det.boxes, det.valid)
        box_of = aligned.argmax(-1)  # [B, A]: the teacher box each anchor is assigned to
        strength = aligned.amax(-1) * det.scores.gather(1, box_of) * fg  # alignment x teacher score
        soft = logits.new_zeros(b, a, c).scatter_(2, det.classes.gather(1, box_of)[..., None],
                                                  strength[..., None].to(logits.dtype))
        return soft, t_boxes, fg
