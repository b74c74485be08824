"""Building blocks shared by the detector families: Conv-BN-activation, the YOLOv5
bottleneck and C3 block, SPPF, and the channel-rounding helpers.

Every block is plain ``Conv2d`` / ``BatchNorm2d`` / activation modules without weight
sharing, so that structured channel pruning (Torch-Pruning) can trace and slice them.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

# an activation is given as its class (called with no arguments), so that every Conv
# owns its own activation module and nothing is shared between layers
Activation = Callable[[], nn.Module]


def scale_width(channels: int, width: float, divisor: int = 8) -> int:
    """YOLO width multiplier: ``channels * width`` rounded up to a multiple of ``divisor``."""
    return max(divisor, int(math.ceil(channels * width / divisor) * divisor))


def scale_depth(n: int, depth: float) -> int:
    """YOLO depth multiplier: number of repeated bottlenecks, at least one."""
    return max(1, round(n * depth))


def make_divisible(v: float, divisor: int = 8) -> int:
    """MobileNet channel rounding: nearest multiple of ``divisor``, never below 90% of ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:  # rounding down must not remove more than 10% of the channels
        new_v += divisor
    return new_v


class Conv(nn.Module):
    """Conv2d (no bias) + BatchNorm + activation (SiLU unless ``act`` says otherwise).

    ``g`` is the number of groups (``g == c_in == c_out`` makes a depthwise conv);
    ``act=nn.Identity`` gives a linear Conv-BN, as in the projection of inverted residuals.
    """

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, g: int = 1,
                 act: Activation = nn.SiLU):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """1x1 then 3x3 Conv, with a residual connection when ``shortcut``."""

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
