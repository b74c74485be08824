"""Anchor-free YOLO-style detector: a pluggable backbone giving P3/P4/P5 (strides 8, 16,
32), a PAN neck, and a decoupled head with distribution focal (DFL) box regression.

The default backbone is YOLOv5's CSP backbone built from ``C3`` (or ``C3F``) blocks,
scaled by depth and width multipliers; ``generator.models.mobilenetv3`` and
``generator.models.shufflenetv2`` plug lightweight backbones into the same neck and head.
Every family therefore shares the head's training output (three raw maps) and the eval
output contract (see ``generator.models.contract``).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Type

import torch
from torch import nn

from generator.models.c3f import C3F
from generator.models.layers import C3, SPPF, Bottleneck, Conv, scale_depth, scale_width
from generator.models.neck import Lateral, PANNeck

__all__ = [
    "BLOCKS", "Backbone", "Bottleneck", "C3", "C3F", "CSPBackbone", "Conv", "DFL", "DetectHead",
    "Lateral", "PANNeck", "REG_MAX", "SPPF", "STRIDES", "YOLO", "make_anchors",
    "yolo_m", "yolo_n", "yolo_n_c3f", "yolo_s",
]

STRIDES = (8, 16, 32)
REG_MAX = 16

# CSP block choices for the YOLO backbone and neck
BLOCKS: Dict[str, Type[nn.Module]] = {"c3": C3, "c3f": C3F}


class DFL(nn.Module):
    """Expected value of a discrete distribution over ``reg_max`` bins (fixed 1x1 conv)."""

    def __init__(self, reg_max: int = REG_MAX):
        super().__init__()
        self.reg_max = reg_max
        self.conv = nn.Conv2d(reg_max, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(reg_max, dtype=torch.float32).view(1, reg_max, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape  # x: [B, 4*reg_max, A]
        x = x.view(b, 4, self.reg_max, a).transpose(2, 1).softmax(1)
        return self.conv(x).view(b, 4, a)


class CSPBackbone(nn.Module):
    """YOLOv5 CSP backbone returning P3, P4, P5 features.

    ``ch`` are the five stage widths, ``depths`` the bottleneck counts of the C3 stages at
    strides 4, 8 and 16 (the stride-32 stage repeats the first), ``block`` the CSP block.
    """

    def __init__(self, ch: Sequence[int], depths: Sequence[int], block: Type[nn.Module] = C3):
        super().__init__()
        c1, c2, c3, c4, c5 = ch
        self.out_channels = (c3, c4, c5)
        self.stem = Conv(3, c1, 3, 2)
        self.stage2 = nn.Sequential(Conv(c1, c2, 3, 2), block(c2, c2, depths[0]))
        self.stage3 = nn.Sequential(Conv(c2, c3, 3, 2), block(c3, c3, depths[1]))
        self.stage4 = nn.Sequential(Conv(c3, c4, 3, 2), block(c4, c4, depths[2]))
        self.stage5 = nn.Sequential(Conv(c4, c5, 3, 2), block(c5, c5, depths[0]), SPPF(c5, c5))

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        p3 = self.stage3(self.stage2(self.stem(x)))
        p4 = self.stage4(p3)
        return [p3, p4, self.stage5(p4)]


Backbone = CSPBackbone  # the name the first release used


class DetectHead(nn.Module):
    """Decoupled anchor-free head. Training: raw per-level maps. Eval: the output contract."""

    def __init__(self, num_classes: int, ch: Sequence[int], strides: Sequence[int] = STRIDES):
        super().__init__()
        self.nc = num_classes
        self.reg_max = REG_MAX
        self.strides = tuple(strides)
        c_box = max(16, ch[0] // 4, 4 * REG_MAX)
        c_cls = max(ch[0], min(num_classes, 100))
        self.box = nn.ModuleList(
            nn.Sequential(Conv(c, c_box, 3), Conv(c_box, c_box, 3), nn.Conv2d(c_box, 4 * REG_MAX, 1))
            for c in ch
        )
        self.cls = nn.ModuleList(
            nn.Sequential(Conv(c, c_cls, 3), Conv(c_cls, c_cls, 3), nn.Conv2d(c_cls, num_classes, 1))
            for c in ch
        )
        self.dfl = DFL(REG_MAX)
        self._init_biases()

    def _init_biases(self) -> None:
        # class prior: about 5 objects per 640-px image, spread over the level's cells
        for box, cls, stride in zip(self.box, self.cls, self.strides):
            box[-1].bias.data[:] = 1.0
            cls[-1].bias.data[: self.nc] = math.log(5 / self.nc / (640 / stride) ** 2)

    def raw_maps(self, feats: List[torch.Tensor]) -> List[torch.Tensor]:
        """Per-level maps ``[B, 4*reg_max + C, H, W]`` (what training and distillation use)."""
        return [torch.cat((b(x), c(x)), 1) for x, b, c in zip(feats, self.box, self.cls)]

    def forward(self, feats: List[torch.Tensor]):
        raw = self.raw_maps(feats)
        if self.training:
            return raw
        return self.decode(raw)

    def decode(self, raw: List[torch.Tensor]) -> torch.Tensor:
        """Per-level maps -> ``[N, 4 + C, A]`` (cx, cy, w, h in pixels, class probabilities)."""
        points, stride = make_anchors(raw, self.strides)
        flat = torch.cat([r.flatten(2) for r in raw], 2)
        dist, logits = flat.split((4 * self.reg_max, self.nc), 1)
        lt, rb = self.dfl(dist).chunk(2, 1)
        x1y1 = points - lt
        x2y2 = points + rb
        boxes = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * stride
        return torch.cat((boxes, logits.sigmoid()), 1)


def make_anchors(raw: List[torch.Tensor], strides: Sequence[int], offset: float = 0.5):
    """Anchor points (cell centres, in grid units) ``[1, 2, A]`` and their strides ``[1, 1, A]``."""
    points, stride_list = [], []
    for r, s in zip(raw, strides):
        h, w = r.shape[2:]
        ys = torch.arange(h, dtype=r.dtype, device=r.device) + offset
        xs = torch.arange(w, dtype=r.dtype, device=r.device) + offset
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((gx, gy), 0).view(2, -1))
        stride_list.append(torch.full((1, h * w), float(s), dtype=r.dtype, device=r.device))
    return torch.cat(points, 1).unsqueeze(0), torch.cat(stride_list, 1).unsqueeze(0)


def _block(name: str) -> Type[nn.Module]:
    try:
        return BLOCKS[name]
    except KeyError:
        raise ValueError(f"unknown CSP block {name!r}; choose from {', '.join(sorted(BLOCKS))}") from None


class YOLO(nn.Module):
    """The detector: backbone -> (lateral 1x1) -> PAN neck -> decoupled anchor-free head.

    Args:
        num_classes: number of classes ``C`` of the output contract.
        depth, width: YOLOv5-style multipliers of the default CSP backbone (and, through
            ``depth``, of the neck's bottleneck count).
        block: ``"c3"`` or ``"c3f"``, the CSP block of the default backbone and the neck.
        backbone: any module whose forward returns ``[P3, P4, P5]`` at strides 8/16/32 and
            that has ``out_channels`` (their channel counts); replaces the CSP backbone.
        neck_channels: P3/P4/P5 widths of the neck and head; defaults to the backbone's.
            Where they differ a 1x1 Conv (``lateral``) adapts the level.
        neck_depth: bottlenecks per neck fusion block; defaults to ``round(3 * depth)``.
    """

    def __init__(self, num_classes: int, depth: float = 0.33, width: float = 0.25, block: str = "c3",
                 backbone: Optional[nn.Module] = None, neck_channels: Optional[Sequence[int]] = None,
                 neck_depth: Optional[int] = None):
        super().__init__()
        block_cls = _block(block)
        if backbone is None:
            ch = [scale_width(c, width) for c in (64, 128, 256, 512, 1024)]
            backbone = CSPBackbone(ch, [scale_depth(n, depth) for n in (3, 6, 9)], block_cls)
        feat_ch = tuple(backbone.out_channels)
        neck_ch = tuple(neck_channels) if neck_channels else feat_ch
        self.backbone = backbone
        self.lateral = Lateral(feat_ch, neck_ch)
        self.neck = PANNeck(neck_ch, neck_depth or scale_depth(3, depth), block_cls)
        self.head = DetectHead(num_classes, neck_ch)
        self.num_classes = num_classes
        self.stride = max(STRIDES)

    def forward(self, x: torch.Tensor):
        return self.head(self.neck(self.lateral(self.backbone(x))))


def yolo_n(num_classes: int, **_: object) -> YOLO:
    """``yolo-n``: depth 0.33, width 0.25, C3 blocks."""
    return YOLO(num_classes, depth=0.33, width=0.25)


def yolo_s(num_classes: int, **_: object) -> YOLO:
    """``yolo-s``: depth 0.33, width 0.50, C3 blocks."""
    return YOLO(num_classes, depth=0.33, width=0.50)


def yolo_m(num_classes: int, **_: object) -> YOLO:
    """``yolo-m``: depth 0.67, width 0.75, C3 blocks."""
    return YOLO(num_classes, depth=0.67, width=0.75)


def yolo_n_c3f(num_classes: int, **_: object) -> YOLO:
    """``yolo-n-c3f``: yolo-n's scale with the fused CSP block (C3F) in backbone and neck."""
    return YOLO(num_classes, depth=0.33, width=0.25, block="c3f")
