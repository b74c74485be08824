"""Model size and cost for reports: parameter count and forward GFLOPs.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode``, which counts the
matrix products (convolutions, matmuls) and counts one multiply-add as 2 FLOPs. Reported
GFLOPs are ``flops / 1e9``, i.e. twice the multiply-add count in billions (the convention
of Ultralytics' "GFLOPs"; papers quoting "FLOPs" for MobileNet or ShuffleNet usually mean
multiply-adds, half of this). Elementwise work (BN, activations, pooling, sigmoid) is not
counted, which is the same convention those figures use.
"""

from __future__ import annotations

from generator._lazy import require


def count_params(model, trainable_only: bool = False) -> int:
    """Number of parameters (all of them, or only those that require gradients).

    The head's DFL projection is a fixed (frozen) parameter and counts only in the total.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def gflops(model, imgsz: int) -> float:
    """Forward GFLOPs of ``model`` on one ``imgsz`` x ``imgsz`` RGB image, in eval mode.

    The model's train/eval mode is restored afterwards; no gradients are recorded.
    """
    torch = require("torch", "to count FLOPs")
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    param = next(model.parameters(), None)
    x = torch.zeros(1, 3, imgsz, imgsz, device=param.device if param is not None else "cpu")
    counter = FlopCounterMode(display=False)
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9
