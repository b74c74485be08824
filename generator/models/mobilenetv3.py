"""MobileNetV3-Small backbone (Howard et al., "Searching for MobileNetV3", ICCV 2019)
feeding the YOLO PAN neck and decoupled head.

The layer table is the paper's Table 2 (MobileNetV3-Small): inverted residual blocks
("bneck") with a depthwise conv, optional squeeze-excitation gated by a hard sigmoid, and
ReLU or h-swish. For its SSDLite detection experiments the paper halves the channels of
the layers between C4 and C5 ("reduced tail"); that is the default here. Features are taken at the
output of the last block of each stride (P3: stride 8, P4: stride 16) and, for P5, after
the final 1x1 Conv + h-swish of the table, as SSDLite does.
"""

from __future__ import annotations

from typing import List, NamedTuple

import torch
from torch import nn

from generator.models.layers import Activation, Conv, make_divisible
from generator.models.yolo import YOLO


class BneckConfig(NamedTuple):
    """One row of the paper's table: kernel, expansion width, output width, SE, activation, stride."""

    k: int
    exp: int
    out: int
    se: bool
    act: str  # "RE" (ReLU) or "HS" (h-swish)
    s: int


def small_config(reduced_tail: bool = True) -> List[List[BneckConfig]]:
    """MobileNetV3-Small bneck rows grouped by output stride 8, 16 and 32."""
    d = 2 if reduced_tail else 1
    return [
        [BneckConfig(3, 16, 16, True, "RE", 2),  # stride 4
         BneckConfig(3, 72, 24, False, "RE", 2),
         BneckConfig(3, 88, 24, False, "RE", 1)],  # -> P3
        [BneckConfig(5, 96, 40, True, "HS", 2),
         BneckConfig(5, 240, 40, True, "HS", 1),
         BneckConfig(5, 240, 40, True, "HS", 1),
         BneckConfig(5, 120, 48, True, "HS", 1),
         BneckConfig(5, 144, 48, True, "HS", 1)],  # -> P4
        [BneckConfig(5, 288 // d, 96 // d, True, "HS", 2),
         BneckConfig(5, 576 // d, 96 // d, True, "HS", 1),
         BneckConfig(5, 576 // d, 96 // d, True, "HS", 1)],  # -> final 1x1 Conv -> P5
    ]


_ACTS = {"RE": nn.ReLU, "HS": nn.Hardswish}


class SqueezeExcite(nn.Module):
    """Squeeze-excitation as MobileNetV3 uses it: squeeze to a quarter of the expansion
    width (rounded to 8), ReLU, then a hard-sigmoid gate that rescales the channels."""

    def __init__(self, c: int, c_squeeze: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, c_squeeze, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(c_squeeze, c, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    """bneck: 1x1 expand (skipped when the expansion equals the input width), kxk
    depthwise, optional SE, linear 1x1 projection; residual when shape is kept."""

    def __init__(self, c_in: int, k: int, c_exp: int, c_out: int, se: bool, act: Activation, s: int):
        super().__init__()
        self.expand = Conv(c_in, c_exp, 1, act=act) if c_exp != c_in else nn.Identity()
        self.dw = Conv(c_exp, c_exp, k, s, g=c_exp, act=act)
        self.se = SqueezeExcite(c_exp, make_divisible(c_exp // 4)) if se else nn.Identity()
        self.project = Conv(c_exp, c_out, 1, act=nn.Identity)
        self.add = s == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.add else y


class MobileNetV3Backbone(nn.Module):
    """MobileNetV3-Small returning ``[P3, P4, P5]``; ``width`` is the paper's multiplier."""

    def __init__(self, width: float = 1.0, reduced_tail: bool = True):
        super().__init__()

        def ch(c: int) -> int:  # the paper's width multiplier with MobileNet rounding
            return make_divisible(c * width)

        c = ch(16)
        self.stem = Conv(3, c, 3, 2, act=nn.Hardswish)
        stages, widths = [], []
        for rows in small_config(reduced_tail):
            blocks = []
            for r in rows:
                blocks.append(InvertedResidual(c, r.k, ch(r.exp), ch(r.out), r.se, _ACTS[r.act], r.s))
                c = ch(r.out)
            stages.append(blocks)
            widths.append(c)
        # the table's final 1x1 Conv widens the last block sixfold; its SE mark in Table 2 is
        # left out, as in the reference implementations (it sits just before pooling there)
        c_last = 6 * c
        self.stage3 = nn.Sequential(*stages[0])
        self.stage4 = nn.Sequential(*stages[1])
        self.stage5 = nn.Sequential(*stages[2], Conv(c, c_last, 1, act=nn.Hardswish))
        self.out_channels = (widths[0], widths[1], c_last)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        p3 = self.stage3(self.stem(x))
        p4 = self.stage4(p3)
        return [p3, p4, self.stage5(p4)]


def mobilenetv3(num_classes: int, **_: object) -> YOLO:
    """``mobilenetv3``: MobileNetV3-Small (width 1.0, reduced tail), neck 64/96/128, one
    bottleneck per neck block; about 1.5M parameters at 80 classes."""
    return YOLO(num_classes, backbone=MobileNetV3Backbone(1.0), neck_channels=(64, 96, 128), neck_depth=1)
