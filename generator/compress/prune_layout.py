"""The shapes of a pruned model, and how to give a freshly built family model those shapes.

A structurally pruned detector no longer matches its family's factory. Its checkpoint
therefore carries ``pruned_layout(model)`` (in ``Detector.options["pruned"]``: module name
-> ``{"in", "out", "groups"}`` for convolutions, ``{"out"}`` for BatchNorms, ``{"in",
"out"}`` for linear layers; plain str/int, loadable with ``weights_only=True``), and a
loader rebuilds the family model, calls ``apply_layout`` and then ``load_state_dict``.
Only torch is needed here (no Torch-Pruning), so checkpoint loading can use it freely.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from generator._lazy import require
from generator.errors import UsageError

torch = require("torch", "to load a pruned detector")
nn = torch.nn

__all__ = ["apply_layout", "load_pruned", "pruned_layout", "save_pruned"]


def pruned_layout(model) -> Dict[str, Dict[str, int]]:
    """Every Conv2d / BatchNorm2d / Linear shape by module name (str -> int dicts)."""
    layout: Dict[str, Dict[str, int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            layout[name] = {"in": m.in_channels, "out": m.out_channels, "groups": m.groups}
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            layout[name] = {"out": m.num_features}
        elif isinstance(m, nn.Linear):
            layout[name] = {"in": m.in_features, "out": m.out_features}
    return layout


def _new_param(old, shape):
    return nn.Parameter(torch.empty(shape, dtype=old.dtype, device=old.device), requires_grad=old.requires_grad)


def _parse(name: str, shape) -> Tuple[int, int, int]:
    """(in, out, groups) of a layout entry, checked."""
    try:
        return int(shape.get("in", 0)), int(shape["out"]), int(shape.get("groups", 1))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise UsageError(f"pruned layout entry for {name!r} is malformed: {shape!r}") from None


def _resize_conv(m, cin: int, out: int, groups: int) -> None:
    if (cin, out, groups) == (m.in_channels, m.out_channels, m.groups):
        return
    m.in_channels, m.out_channels, m.groups = cin, out, groups
    m.weight = _new_param(m.weight, (out, cin // groups, *m.kernel_size))
    if m.bias is not None:
        m.bias = _new_param(m.bias, (out,))


def _resize_bn(m, cin: int, out: int, groups: int) -> None:  # noqa: ARG001 - one signature for all
    if out == m.num_features:
        return
    m.num_features = out
    if m.affine:
        m.weight, m.bias = _new_param(m.weight, (out,)), _new_param(m.bias, (out,))
    if m.track_running_stats:
        m.running_mean = torch.zeros(out, dtype=m.running_mean.dtype)
        m.running_var = torch.ones(out, dtype=m.running_var.dtype)


def _resize_linear(m, cin: int, out: int, groups: int) -> None:  # noqa: ARG001
    if (cin, out) == (m.in_features, m.out_features):
        return
    m.in_features, m.out_features = cin, out
    m.weight = _new_param(m.weight, (out, cin))
    if m.bias is not None:
        m.bias = _new_param(m.bias, (out,))


# layer type -> how to resize it in place (in, out, groups)
_RESIZERS = ((nn.Conv2d, _resize_conv), (nn.modules.batchnorm._BatchNorm, _resize_bn), (nn.Linear, _resize_linear))


def apply_layout(model, layout: Dict[str, Dict[str, int]]) -> None:
    """Resize the layers of a freshly built model to a stored ``pruned_layout`` (weights
    are left uninitialised: load the state dict next)."""
    modules = dict(model.named_modules())
    for name, shape in layout.items():
        m = modules.get(name)
        if m is None:
            raise UsageError(f"pruned layout names layer {name!r}, which the family's model does not have")
        cin, out, groups = _parse(name, shape)
        needs_in = isinstance(m, (nn.Conv2d, nn.Linear))
        if out < 1 or groups < 1 or cin % groups or out % groups or (needs_in and cin < 1):
            raise UsageError(f"pruned layout entry for {name!r} is impossible: {shape!r}")
        resize = next((fn for kind, fn in _RESIZERS if isinstance(m, kind)), None)
        if resize is None:
            raise UsageError(f"pruned layout: cannot resize layer {name!r} of type {type(m).__name__}")
        resize(m, cin, out, groups)


def save_pruned(det, path: Path, extra: Optional[Dict[str, Any]] = None) -> None:
    """``save_checkpoint`` with the layer shapes in ``det.options["pruned"]`` (atomic write)."""
    from generator.models.checkpoint import save_checkpoint

    det.options = {**dict(det.options), "pruned": pruned_layout(det.model)}
    save_checkpoint(det, Path(path), extra=extra)


def load_pruned(path: Path):
    """Load a checkpoint, pruned (``options["pruned"]``) or not: ``load_checkpoint`` applies the layout."""
    from generator.models.checkpoint import load_checkpoint

    return load_checkpoint(Path(path))
