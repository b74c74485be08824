"""Anchor-free YOLO-style detector: CSP (C3) backbone, SPPF, PAN neck, decoupled
head with distribution focal (DFL) box regression over strides 8, 16 and 32."""

from __future__ import annotations

import math
from typing import List, Sequence

import torch
from torch import nn

STRIDES = (8, 16, 32)
REG_MAX = 16


def _scale(channels: int, width: float, divisor: int = 8) -> int:
    return max(divisor, int(math.ceil(channels * width / divisor) * divisor))


class Conv(nn.Module):
    """Conv2d + BatchNorm + SiLU."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool = True):
        super().__init__()
        self.cv1 = Conv(c, c, 1)
        self.cv2 = Conv(c, c, 3)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with three convolutions (YOLOv5's C3)."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = True):
        super().__init__()
        hidden = c_out // 2
        self.cv1 = Conv(c_in, hidden, 1)
        self.cv2 = Conv(c_in, hidden, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, shortcut) for _ in range(n)))
        self.cv3 = Conv(2 * hidden, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 max-pools."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        hidden = c_in // 2
        self.cv1 = Conv(c_in, hidden, 1)
        self.cv2 = Conv(hidden * 4, c_out, 1)
        self.pool = nn.MaxPool2d(5, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return self.cv2(torch.cat((x, y1, y2, self.pool(y2)), 1))


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


class Backbone(nn.Module):
    """CSP backbone returning P3, P4, P5 features."""

    def __init__(self, ch: Sequence[int], depths: Sequence[int]):
        super().__init__()
        c1, c2, c3, c4, c5 = ch
        self.stem = Conv(3, c1, 3, 2)
        self.stage2 = nn.Sequential(Conv(c1, c2, 3, 2), C3(c2, c2, depths[0]))
        self.stage3 = nn.Sequential(Conv(c2, c3, 3, 2), C3(c3, c3, depths[1]))
        self.stage4 = nn.Sequential(Conv(c3, c4, 3, 2), C3(c4, c4, depths[2]))
        self.stage5 = nn.Sequential(Conv(c4, c5, 3, 2), C3(c5, c5, depths[0]), SPPF(c5, c5))

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        p3 = self.stage3(self.stage2(self.stem(x)))
        p4 = self.stage4(p3)
        return [p3, p4, self.stage5(p4)]


class PANNeck(nn.Module):
    """Top-down then bottom-up feature fusion (PANet) over P3-P5."""

    def __init__(self, ch: Sequence[int], n: int):
        super().__init__()
        c3, c4, c5 = ch
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.td4 = C3(c5 + c4, c4, n, shortcut=False)
        self.td3 = C3(c4 + c3, c3, n, shortcut=False)
        self.down3 = Conv(c3, c3, 3, 2)
        self.bu4 = C3(c3 + c4, c4, n, shortcut=False)
        self.down4 = Conv(c4, c4, 3, 2)
        self.bu5 = C3(c4 + c5, c5, n, shortcut=False)

    def forward(self, feats: List[torch.Tensor]) -> List[torch.Tensor]:
        p3, p4, p5 = feats
        t4 = self.td4(torch.cat((self.up(p5), p4), 1))
        n3 = self.td3(torch.cat((self.up(t4), p3), 1))
        n4 = self.bu4(torch.cat((self.down3(n3), t4), 1))
        n5 = self.bu5(torch.cat((self.down4(n4), p5), 1))
        return [n3, n4, n5]


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

    def forward(self, feats: List[torch.Tensor]):
        raw = [torch.cat((b(x), c(x)), 1) for x, b, c in zip(feats, self.box, self.cls)]
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


class YOLO(nn.Module):
    """The detector: backbone -> PAN neck -> decoupled anchor-free head."""

    def __init__(self, num_classes: int, depth: float = 0.33, width: float = 0.25):
        super().__init__()
        ch = [_scale(c, width) for c in (64, 128, 256, 512, 1024)]
        depths = [max(1, round(n * depth)) for n in (3, 6, 9)]
        self.backbone = Backbone(ch, depths)
        self.neck = PANNeck(ch[2:], depths[0])
        self.head = DetectHead(num_classes, ch[2:])
        self.num_classes = num_classes
        self.stride = max(STRIDES)

    def forward(self, x: torch.Tensor):
        return self.head(self.neck(self.backbone(x)))


def yolo_n(num_classes: int, **_: object) -> YOLO:
    """``yolo-n``: depth 0.33, width 0.25."""
    return YOLO(num_classes, depth=0.33, width=0.25)
