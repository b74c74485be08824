"""C3F: the fused cross-stage-partial block ("CSPF"), YOLOv5's BottleneckCSP layout.

Compared with C3 (where both CSP paths end in a Conv-BN-SiLU and are simply concatenated),
C3F keeps the two paths linear up to the concatenation and normalises them together:

    bottleneck path:  Conv 1x1 (BN, SiLU) -> n x Bottleneck -> plain Conv2d 1x1
    shortcut path:    plain Conv2d 1x1
    concat -> BatchNorm2d -> SiLU -> Conv 1x1 (BN, SiLU)   # the "fuse"

One BatchNorm over the concatenation lets the two partial paths be rescaled against each
other before the 1x1 fuse mixes them, which is what the lightweight YOLOv5-derived CSP
variants rely on. All layers are plain ``Conv2d`` / ``BatchNorm2d`` so that structured
channel pruning can slice them: the joint BatchNorm's channels map one-to-one onto the
outputs of the two plain 1x1 convs through the concatenation.
"""

from __future__ import annotations

import torch
from torch import nn

from generator.models.layers import Bottleneck, Conv


class C3F(nn.Module):
    """CSP bottleneck, fused variant (BottleneckCSP): same interface as ``C3``."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = True):
        super().__init__()
        hidden = c_out // 2
        self.cv1 = Conv(c_in, hidden, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, shortcut) for _ in range(n)))
        # both partial paths end in bias-free linear 1x1 convs: the joint BN supplies the bias
        self.cv3 = nn.Conv2d(hidden, hidden, 1, bias=False)
        self.cv2 = nn.Conv2d(c_in, hidden, 1, bias=False)
        self.bn = nn.BatchNorm2d(2 * hidden, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()
        self.cv4 = Conv(2 * hidden, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.cv3(self.m(self.cv1(x)))
        y2 = self.cv2(x)
        return self.cv4(self.act(self.bn(torch.cat((y1, y2), 1))))
