"""ShuffleNetV2 backbone (Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN
Architecture Design", ECCV 2018) feeding the YOLO PAN neck and decoupled head.

Stride-1 units split the channels in two, transform one half (1x1 Conv, 3x3 depthwise,
1x1 Conv; ReLU after the 1x1s only), concatenate and shuffle; stride-2 units run two
branches on the full input and so double the width. Features are the outputs of
stage 2, 3 and 4 (strides 8, 16, 32); the paper's conv5 (1x1 to 1024) and pooling belong to
the classifier and are left out.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn

from generator.models.layers import Conv
from generator.models.yolo import YOLO

# the paper's Table 5: output widths of conv1 and stages 2-4 per complexity level
WIDTHS: Dict[float, Tuple[int, int, int, int]] = {
    0.5: (24, 48, 96, 192),
    1.0: (24, 116, 232, 464),
    1.5: (24, 176, 352, 704),
    2.0: (24, 244, 488, 976),
}
REPEATS = (4, 8, 4)


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups (reshape, transpose, reshape).

    Every size comes from ``x.shape`` so that the ONNX trace computes them from the input
    (Shape ops) and the exported graph keeps a dynamic batch axis.
    """
    b, c, h, w = x.shape
    x = x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(b, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: channel split (stride 1) or two branches (stride 2), then shuffle."""

    def __init__(self, c_in: int, c_out: int, s: int):
        super().__init__()
        if s == 1 and c_in != c_out:
            raise ValueError(f"a stride-1 shuffle unit keeps its width, got {c_in} -> {c_out}")
        half = c_out // 2
        self.stride = s
        # stride 2: the left branch downsamples the whole input (3x3 depthwise, then 1x1)
        self.branch1 = nn.Sequential(
            Conv(c_in, c_in, 3, s, g=c_in, act=nn.Identity), Conv(c_in, half, 1, act=nn.ReLU),
        ) if s > 1 else nn.Identity()
        c_right = c_in if s > 1 else half
        self.branch2 = nn.Sequential(
            Conv(c_right, half, 1, act=nn.ReLU),
            Conv(half, half, 3, s, g=half, act=nn.Identity),  # no ReLU after the depthwise conv
            Conv(half, half, 1, act=nn.ReLU),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, 1)
            out = torch.cat((x1, self.branch2(x2)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        return channel_shuffle(out, 2)


def _stage(c_in: int, c_out: int, repeats: int) -> nn.Sequential:
    """One stride-2 unit, then ``repeats - 1`` stride-1 units."""
    return nn.Sequential(ShuffleUnit(c_in, c_out, 2), *(ShuffleUnit(c_out, c_out, 1) for _ in range(repeats - 1)))


class ShuffleNetV2Backbone(nn.Module):
    """ShuffleNetV2 returning ``[P3, P4, P5]``; ``width`` is one of 0.5, 1.0, 1.5, 2.0."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        if width not in WIDTHS:
            raise ValueError(f"ShuffleNetV2 width must be one of {sorted(WIDTHS)}, got {width}")
        c1, c2, c3, c4 = WIDTHS[width]
        self.stem = nn.Sequential(Conv(3, c1, 3, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1))
        self.stage2 = _stage(c1, c2, REPEATS[0])
        self.stage3 = _stage(c2, c3, REPEATS[1])
        self.stage4 = _stage(c3, c4, REPEATS[2])
        self.out_channels = (c2, c3, c4)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        p3 = self.stage2(self.stem(x))
        p4 = self.stage3(p3)
        return [p3, p4, self.stage4(p4)]


def shufflenetv2(num_classes: int, **_: object) -> YOLO:
    """``shufflenetv2``: ShuffleNetV2 1.0x with yolo-n's neck and head (64/128/256, one
    bottleneck per neck block), so that it differs from yolo-n only in the backbone."""
    return YOLO(num_classes, backbone=ShuffleNetV2Backbone(1.0), neck_channels=(64, 128, 256), neck_depth=1)
