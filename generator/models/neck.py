"""Feature fusion between a backbone's P3/P4/P5 outputs and the detection head."""

from __future__ import annotations

from typing import List, Sequence, Type

import torch
from torch import nn

from generator.models.layers import C3, Conv


class Lateral(nn.Module):
    """Per-level 1x1 Conv from backbone channels to neck channels (identity where equal).

    Lets a backbone with its own channel plan (MobileNetV3, ShuffleNetV2) feed a neck of
    any width; the identity levels add no parameters, so the CSP families are unchanged.
    """

    def __init__(self, c_in: Sequence[int], c_out: Sequence[int]):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Identity() if a == b else Conv(a, b, 1) for a, b in zip(c_in, c_out)
        )

    def forward(self, feats: List[torch.Tensor]) -> List[torch.Tensor]:
        return [conv(f) for conv, f in zip(self.convs, feats)]


class PANNeck(nn.Module):
    """Top-down then bottom-up feature fusion (PANet) over P3-P5.

    ``block`` is the CSP block class used for the four fusion stages (``C3`` or ``C3F``);
    fusion blocks never use residual shortcuts, as in YOLOv5's head.
    """

    def __init__(self, ch: Sequence[int], n: int, block: Type[nn.Module] = C3):
        super().__init__()
        c3, c4, c5 = ch
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.td4 = block(c5 + c4, c4, n, shortcut=False)
        self.td3 = block(c4 + c3, c3, n, shortcut=False)
        self.down3 = Conv(c3, c3, 3, 2)
        self.bu4 = block(c3 + c4, c4, n, shortcut=False)
        self.down4 = Conv(c4, c4, 3, 2)
        self.bu5 = block(c4 + c5, c5, n, shortcut=False)

    def forward(self, feats: List[torch.Tensor]) -> List[torch.Tensor]:
        p3, p4, p5 = feats
        t4 = self.td4(torch.cat((self.up(p5), p4), 1))
        n3 = self.td3(torch.cat((self.up(t4), p3), 1))
        n4 = self.bu4(torch.cat((self.down3(n3), t4), 1))
        n5 = self.bu5(torch.cat((self.down4(n4), p5), 1))
        return [n3, n4, n5]
