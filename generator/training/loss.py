"""Detection loss for the anchor-free head: BCE (classes, soft task-aligned targets),
CIoU (boxes) and distribution focal loss (the DFL bins)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import torch
import torch.nn.functional as F

from generator.models.yolo import make_anchors
from generator.training.assigner import TaskAlignedAssigner
from generator.training.boxes import box_to_dist, ciou, dist_to_box


@dataclass
class LossGains:
    box: float = 7.5
    cls: float = 0.5
    dfl: float = 1.5


def split_raw(raw: List[torch.Tensor], nc: int, reg_max: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-level maps -> box distributions ``[B, A, 4*reg_max]`` and class logits ``[B, A, C]``."""
    flat = torch.cat([r.flatten(2) for r in raw], 2)
    dist, logits = flat.split((4 * reg_max, nc), 1)
    return dist.permute(0, 2, 1).contiguous(), logits.permute(0, 2, 1).contiguous()


def expected_dist(dist: torch.Tensor, reg_max: int) -> torch.Tensor:
    """``[B, A, 4*reg_max]`` logits -> ``[B, A, 4]`` expected distances (in grid units)."""
    b, a, _ = dist.shape
    bins = torch.arange(reg_max, dtype=dist.dtype, device=dist.device)
    return dist.view(b, a, 4, reg_max).softmax(-1).matmul(bins)


def targets_by_image(targets: torch.Tensor, batch: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[M, 6]`` (image index, class, x1, y1, x2, y2) -> padded labels, boxes and mask per image."""
    counts = torch.bincount(targets[:, 0].long(), minlength=batch) if len(targets) else torch.zeros(batch, dtype=torch.long)
    m = int(counts.max()) if len(targets) else 0
    labels = torch.zeros(batch, m, dtype=torch.long)
    boxes = torch.zeros(batch, m, 4)
    mask = torch.zeros(batch, m, dtype=torch.bool)
    for i in range(batch):
        rows = targets[targets[:, 0] == i]
        n = len(rows)
        labels[i, :n] = rows[:, 1].long()
        boxes[i, :n] = rows[:, 2:6]
        mask[i, :n] = True
    return labels, boxes, mask


class DetectionLoss:
    """Callable: (raw per-level maps, targets [M, 6]) -> (total loss, detached parts [box, cls, dfl])."""

    def __init__(self, head, gains: LossGains = LossGains()):
        self.nc, self.reg_max, self.strides = head.nc, head.reg_max, head.strides
        self.gains = gains
        self.assigner = TaskAlignedAssigner(topk=10, alpha=0.5, beta=6.0)

    def __call__(self, raw: List[torch.Tensor], targets: torch.Tensor):
        batch = raw[0].shape[0]
        dist, logits = split_raw(raw, self.nc, self.reg_max)
        points, stride = make_anchors(raw, self.strides)
        points, stride = points[0].T, stride[0].T  # [A, 2], [A, 1] (grid units, pixels per unit)
        pred_boxes = dist_to_box(expected_dist(dist, self.reg_max), points)  # grid units
        labels, gt_boxes, gt_mask = targets_by_image(targets, batch)
        t_boxes, t_scores, fg = self.assigner(
            logits.detach().sigmoid(), (pred_boxes.detach() * stride).to(gt_boxes.dtype),
            points * stride, labels, gt_boxes, gt_mask)
        score_sum = t_scores.sum().clamp(min=1.0)
        loss_cls = F.binary_cross_entropy_with_logits(logits, t_scores.to(logits.dtype), reduction="sum") / score_sum
        loss_box = loss_dfl = logits.new_zeros(())
        if fg.any():
            weight = t_scores.sum(-1)[fg]
            t_grid = t_boxes / stride  # back to grid units
            loss_box = ((1.0 - ciou(pred_boxes[fg], t_grid[fg])) * weight).sum() / score_sum
            loss_dfl = (self._dfl(dist[fg], box_to_dist(points.expand_as(pred_boxes[..., :2])[fg], t_grid[fg],
                                                         self.reg_max)) * weight).sum() / score_sum
        parts = torch.stack((loss_box * self.gains.box, loss_cls * self.gains.cls, loss_dfl * self.gains.dfl))
        return parts.sum() * batch, parts.detach()

    def _dfl(self, dist: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Distribution focal loss (Li et al., NeurIPS 2020): mass on the two bins around the target."""
        n = dist.shape[0]
        logits = dist.view(n * 4, self.reg_max)
        target = target.reshape(-1)
        left = target.long()
        w_right = target - left
        loss = (F.cross_entropy(logits, left, reduction="none") * (1 - w_right)
                + F.cross_entropy(logits, left + 1, reduction="none") * w_right)
        return loss.view(n, 4).mean(-1)
