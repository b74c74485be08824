"""Box arithmetic for training (torch): IoU/CIoU and the DFL distance encoding."""

from __future__ import annotations

import math

import torch


def box_iou_pairs(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """IoU of broadcastable xyxy boxes ``a[..., 4]`` and ``b[..., 4]``."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter + eps)


def ciou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU (Zheng et al., AAAI 2020) of matching xyxy boxes ``[N, 4]``."""
    iou = box_iou_pairs(a, b, eps)
    enclose = torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])
    c2 = enclose.pow(2).sum(-1) + eps
    rho2 = ((a[:, :2] + a[:, 2:]) - (b[:, :2] + b[:, 2:])).pow(2).sum(-1) / 4
    wa, ha = (a[:, 2] - a[:, 0]).clamp(min=eps), (a[:, 3] - a[:, 1]).clamp(min=eps)
    wb, hb = (b[:, 2] - b[:, 0]).clamp(min=eps), (b[:, 3] - b[:, 1]).clamp(min=eps)
    v = (4 / math.pi ** 2) * (torch.atan(wb / hb) - torch.atan(wa / ha)).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def dist_to_box(dist: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Distances (left, top, right, bottom) from anchor points -> xyxy boxes."""
    lt, rb = dist.chunk(2, -1)
    return torch.cat((points - lt, points + rb), -1)


def box_to_dist(points: torch.Tensor, boxes: torch.Tensor, reg_max: int) -> torch.Tensor:
    """xyxy boxes -> distances from anchor points, clamped to the DFL range."""
    lt = points - boxes[..., :2]
    rb = boxes[..., 2:] - points
    return torch.cat((lt, rb), -1).clamp_(0, reg_max - 1 - 0.01)
