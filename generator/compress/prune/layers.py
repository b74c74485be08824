"""Which layers pruning leaves alone, and why.

* the head's output convolutions (the last ``nn.Conv2d`` of every ``head.box[i]`` and
  ``head.cls[i]``) and the DFL projection, so the eval output stays ``[N, 4 + C, A]``;
* in ShuffleNetV2, every layer whose output reaches the shuffled trunk (stem, the
  stride-2 left branch, the last 1x1 of each right branch): Torch-Pruning cannot map
  channel indices through the reshape-transpose-reshape shuffle, so only the channels
  inside each right branch (1x1 -> depthwise 3x3) are pruned there. The dependency graph
  is traced with the shuffle replaced by the identity (``traceable``); that mis-maps only
  the trunk channels, which are all left alone.
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, List, Tuple

from generator._lazy import require
from generator.errors import UsageError

torch = require("torch", "to prune a detector")
nn = torch.nn

HEAD_REASON = "head output conv / DFL: keeps the [N, 4+C, A] output contract"
SHUFFLE_REASON = ("feeds the ShuffleNetV2 channel shuffle, which Torch-Pruning cannot map "
                  "through its reshape-transpose; only the channels inside each right branch are pruned")
CALLER_REASON = "ignored by the caller"
SHUFFLE_NOTE = ("ShuffleNetV2: the shuffled trunk channels are kept; branch-internal, lateral, "
                "neck and head channels are pruned")


def head_output_layers(model) -> Dict[str, Any]:
    """Name -> module of the layers whose output channels make the output contract."""
    head = getattr(model, "head", None)
    if head is None or not hasattr(head, "box") or not hasattr(head, "cls"):
        raise UsageError("pruning needs a tritonforge DetectHead (model.head.box / model.head.cls); "
                         f"{type(model).__name__} has none")
    out: Dict[str, Any] = {}
    for kind in ("box", "cls"):
        for i, seq in enumerate(getattr(head, kind)):
            convs = [(n, m) for n, m in seq.named_modules() if isinstance(m, nn.Conv2d)]
            name, conv = convs[-1]
            out[f"head.{kind}.{i}.{name}"] = conv
    if hasattr(head, "dfl"):
        out["head.dfl"] = head.dfl
    return out


def _shuffle_units(model) -> List[Tuple[str, Any]]:
    from generator.models.shufflenetv2 import ShuffleUnit

    return [(n, m) for n, m in model.named_modules() if isinstance(m, ShuffleUnit)]


def shuffle_trunk_layers(model) -> Dict[str, Any]:
    """ShuffleNetV2 layers whose outputs reach the shuffled trunk (see the module doc)."""
    units = _shuffle_units(model)
    if not units:
        return {}
    out: Dict[str, Any] = {}
    backbone = getattr(model, "backbone", None)
    if backbone is not None and hasattr(backbone, "stem"):
        out["backbone.stem"] = backbone.stem
    for name, unit in units:
        if not isinstance(unit.branch1, nn.Identity):
            out[f"{name}.branch1"] = unit.branch1
        out[f"{name}.branch2.{len(unit.branch2) - 1}"] = unit.branch2[-1]
    return out


def left_alone(model, extra: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, str], List[str]]:
    """(name -> module never pruned, name -> reason, notes) for ``model`` plus ``extra``."""
    heads, trunk = head_output_layers(model), shuffle_trunk_layers(model)
    reasons = {**{n: HEAD_REASON for n in heads}, **{n: SHUFFLE_REASON for n in trunk},
               **{n: CALLER_REASON for n in extra}}
    notes = [SHUFFLE_NOTE] if trunk else []
    return {**heads, **trunk, **extra}, reasons, notes


@contextlib.contextmanager
def traceable(model):
    """Trace ShuffleNetV2 with the channel shuffle as the identity (trunk layers are ignored)."""
    if not _shuffle_units(model):
        yield
        return
    import generator.models.shufflenetv2 as shufflenet

    original = shufflenet.channel_shuffle
    shufflenet.channel_shuffle = lambda x, groups=2: x
    try:
        yield
    finally:
        shufflenet.channel_shuffle = original
