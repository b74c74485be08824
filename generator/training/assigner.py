"""Task-aligned assignment (TOOD, ICCV 2021), as used by anchor-free YOLO heads.

For each ground-truth box, the anchors whose centres lie inside it are ranked by the
alignment metric ``score^alpha * IoU^beta``; the top ``k`` become candidates, an anchor
claimed by several boxes goes to the one it overlaps most, and the class target is the
alignment metric normalised per box to that box's best IoU.
"""

from __future__ import annotations

import torch

from generator.training.boxes import box_iou_pairs


def _centres_inside(points: torch.Tensor, gt: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """``points [A, 2]``, ``gt [B, M, 4]`` -> ``[B, M, A]`` (anchor centre strictly inside the box)."""
    lt = points[None, None] - gt[..., None, :2]
    rb = gt[..., None, 2:] - points[None, None]
    return torch.cat((lt, rb), -1).amin(-1) > eps


class TaskAlignedAssigner:
    def __init__(self, topk: int = 10, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9):
        self.topk, self.alpha, self.beta, self.eps = topk, alpha, beta, eps

    @torch.no_grad()
    def __call__(self, pd_scores, pd_boxes, points, gt_labels, gt_boxes, gt_mask):
        """
        pd_scores ``[B, A, C]`` (sigmoid), pd_boxes ``[B, A, 4]`` and points ``[A, 2]`` in
        pixels, gt_labels ``[B, M]`` (long), gt_boxes ``[B, M, 4]``, gt_mask ``[B, M]`` (bool).
        Returns target boxes ``[B, A, 4]``, target scores ``[B, A, C]``, foreground ``[B, A]``.
        """
        b, a, c = pd_scores.shape
        m = gt_boxes.shape[1]
        if m == 0:
            return (torch.zeros_like(pd_boxes), torch.zeros_like(pd_scores),
                    torch.zeros(b, a, dtype=torch.bool, device=pd_scores.device))
        inside = _centres_inside(points, gt_boxes) & gt_mask[..., None]  # [B, M, A]
        overlaps = box_iou_pairs(gt_boxes[:, :, None, :], pd_boxes[:, None, :, :]).clamp_(0) * inside
        cls_scores = pd_scores.permute(0, 2, 1).gather(1, gt_labels[..., None].expand(b, m, a))  # [B, M, A]
        align = cls_scores.pow(self.alpha) * overlaps.pow(self.beta) * inside
        candidates = self._topk_mask(align, gt_mask) & inside
        mask_pos = candidates.float()
        # an anchor assigned to several boxes keeps the one with the highest IoU
        multi = mask_pos.sum(1) > 1  # [B, A]
        if multi.any():
            best = overlaps.argmax(1)  # [B, A]
            one_hot = torch.zeros_like(mask_pos).scatter_(1, best[:, None, :], 1.0)
            mask_pos = torch.where(multi[:, None, :], one_hot, mask_pos) * inside
        fg = mask_pos.sum(1) > 0  # [B, A]
        gt_index = mask_pos.argmax(1)  # [B, A]
        batch_index = torch.arange(b, device=gt_boxes.device)[:, None]
        target_boxes = gt_boxes[batch_index, gt_index]  # [B, A, 4]
        target_labels = gt_labels[batch_index, gt_index].clamp_(0)
        target_scores = torch.zeros_like(pd_scores).scatter_(2, target_labels[..., None], 1.0) * fg[..., None]
        # normalise the alignment metric per box so its best anchor gets that box's best IoU
        align = align * mask_pos
        best_iou = (overlaps * mask_pos).amax(-1, keepdim=True)
        norm = (align * best_iou / (align.amax(-1, keepdim=True) + self.eps)).amax(1)
        return target_boxes, target_scores * norm[..., None], fg

    def _topk_mask(self, metric: torch.Tensor, gt_mask: torch.Tensor) -> torch.Tensor:
        k = min(self.topk, metric.shape[-1])
        idx = metric.topk(k, dim=-1).indices  # [B, M, k]
        mask = torch.zeros_like(metric, dtype=torch.bool).scatter_(-1, idx, True)
        return mask & gt_mask[..., None]
