"""``prune_model``: remove a fraction of a detector's channels in place, in steps.

Torch-Pruning's ``BasePruner`` ranks channel groups; ``_guarded_indices`` makes sure no
layer is emptied (global ranking and ``round_to`` can otherwise remove every channel of
a small group), and ``_TieBreak`` keeps equal scores from being removed all at once.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable, Dict, List, Optional

from generator._lazy import require
from generator.compress.config import check_prune_args
from generator.compress.prune.importance import make_importance, needs_gradients
from generator.compress.prune.layers import left_alone, traceable
from generator.compress.prune.report import PruneReport, PruneStep
from generator.errors import UsageError
from generator.models.profile import count_params, gflops

torch = require("torch", "to prune a detector")
nn = torch.nn

# a model -> a scalar loss on one batch (its backward fills the gradients Taylor reads)
LossFn = Callable[[Any], Any]


def _tp():
    return require("torch_pruning", "to prune a detector")


@contextlib.contextmanager
def frozen_bn(model):
    """Train mode (raw head outputs) with BatchNorm statistics neither used nor updated."""
    was_training = model.training
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _prunable_channels(model, skip: set) -> int:
    return sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d) and m not in skip)


def _accumulate_gradients(model, loss_fn: LossFn, batches: int) -> None:
    model.zero_grad(set_to_none=True)
    with frozen_bn(model):
        for _ in range(max(1, batches)):
            loss_fn(model).backward()


class _TieBreak:
    """An importance with ties broken by a seeded, negligible jitter (1e-6 of the scores'
    scale): untrained layers (all BatchNorm scales 1, equal norms) otherwise rank many
    channels at exactly the threshold, and global ranking removes all of them."""

    def __init__(self, importance, seed: int = 0):
        self.importance = importance
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, group):
        imp = self.importance(group)
        if imp is None:
            return None
        scale = float(imp.abs().max()) or 1.0
        return imp + 1e-6 * scale * torch.rand(imp.shape, generator=self.gen).to(imp)


def _channel_floor(pruner, module, out_fn: bool, current: int, max_layer_ratio: float) -> int:
    """The fewest channels a layer may keep: (1 - max_layer_ratio) of its initial count."""
    initial = (pruner.layer_init_out_ch if out_fn else pruner.layer_init_in_ch).get(module, current)
    return max(1, math.ceil(initial * (1.0 - max_layer_ratio) - 1e-9))


def _guarded_indices(pruner, group, round_to: Optional[int], max_layer_ratio: float) -> Optional[List[int]]:
    """The root indices to prune, never emptying a layer (global ranking and ``round_to``
    can otherwise remove every channel of a small group); ``None`` to skip the group."""
    dep, idxs = group[0].dep, list(group[0].idxs)
    module, fn, dg = dep.target.module, dep.handler, pruner.DG
    out_fn = dg.is_out_channel_pruning_fn(fn)
    current = dg.get_out_channels(module) if out_fn else dg.get_in_channels(module)
    if current is None or pruner._get_channel_groups(group) > 1:
        return idxs  # grouped channels: Torch-Pruning's own bookkeeping applies
    floor = _channel_floor(pruner, module, out_fn, current, max_layer_ratio)
    if round_to:
        if current <= round_to:
            return None
        floor = max(floor, round_to)
    if current - len(set(idxs)) >= floor:
        return idxs
    keep = min(current, math.ceil(floor / round_to) * round_to if round_to else floor)
    if keep >= current:
        return None
    imp = pruner.estimate_importance(dg.get_pruning_group(module, fn, list(range(current))))
    return None if imp is None else torch.argsort(imp)[: current - keep].tolist()


def prune_model(model, example_input, ratio: float, importance: str = "magnitude", global_pruning: bool = False,
                round_to: Optional[int] = None, steps: int = 1, ignored_layers: Optional[Dict[str, Any]] = None,
                loss_fn: Optional[LossFn] = None, grad_batches: int = 4,
                between_steps: Optional[Callable[[Any, int], None]] = None,
                max_layer_ratio: float = 0.9) -> PruneReport:
    """Remove ``ratio`` of the prunable channels of ``model`` in place, in ``steps`` steps.

    Args:
        model: a detector with a ``DetectHead`` (``model.head.box`` / ``.cls``).
        example_input: ``[1, 3, S, S]`` tensor for tracing and for the GFLOPs figures.
        ratio: channel pruning ratio in (0, 1): per layer group (local) or over all of them
            (``global_pruning``: groups ranked together, so layers end up unevenly thin).
        importance: a registered importance name. ``taylor`` needs ``loss_fn``.
        round_to: keep channel counts a multiple of this (e.g. 8 for tensor cores / SIMD);
            groups with no more than ``round_to`` channels are left whole.
        steps: iterative pruning: step ``k`` reaches ``ratio * k / steps`` (fresh importance
            each step, ``between_steps(model, k)`` runs after every step but the last).
        ignored_layers: extra ``name -> module`` to leave alone, besides the head's outputs
            and the ShuffleNetV2 trunk.
        loss_fn: ``loss_fn(model) -> scalar`` on one training batch (train-mode raw maps);
            called ``grad_batches`` times before each step to accumulate gradients.
        max_layer_ratio: no layer loses more than this fraction of its channels
            (at least ``ratio``); matters for global ranking.
    """
    check_prune_args(ratio, steps, round_to)
    imp = make_importance(importance)
    if needs_gradients(importance) and loss_fn is None:
        raise UsageError(f"importance {importance!r} needs gradients: give a loss_fn (e.g. detection_loss_fn) "
                         "or use magnitude, bn-scale or lamp")
    max_layer_ratio = max(float(max_layer_ratio), float(ratio))
    imgsz = int(example_input.shape[-1])
    modules, ignored, notes = left_alone(model, dict(ignored_layers or {}))
    skip = {m for mod in modules.values() for m in mod.modules()}
    before = (count_params(model), gflops(model, imgsz), _prunable_channels(model, skip))
    was_training = model.training
    model.eval()
    with traceable(model):
        pruner = _tp().pruner.BasePruner(
            model, example_input, importance=_TieBreak(imp), global_pruning=global_pruning, pruning_ratio=float(ratio),
            iterative_steps=int(steps), ignored_layers=list(modules.values()), round_to=round_to,
            max_pruning_ratio=max_layer_ratio,
        )
    schedule = _Schedule(pruner, skip, before[2], imgsz, round_to, max_layer_ratio)
    try:
        history = schedule.run(model, int(steps), loss_fn if needs_gradients(importance) else None, grad_batches,
                               between_steps)
    finally:
        model.train(was_training)
    return PruneReport(importance, float(ratio), bool(global_pruning), round_to, imgsz, before[0],
                       count_params(model), before[1], gflops(model, imgsz), history, ignored, notes)


class _Schedule:
    """The pruning steps of one ``prune_model`` call."""

    def __init__(self, pruner, skip: set, channels0: int, imgsz: int, round_to: Optional[int],
                 max_layer_ratio: float):
        self.pruner, self.skip, self.channels0, self.imgsz = pruner, skip, channels0, imgsz
        self.round_to, self.max_layer_ratio = round_to, max_layer_ratio
        # Torch-Pruning drops every group it would empty; _guarded_indices trims those instead
        self.check_group = pruner.DG.check_pruning_group
        pruner.DG.check_pruning_group = lambda group: True

    def run(self, model, steps: int, loss_fn: Optional[LossFn], grad_batches: int, between_steps) -> List[PruneStep]:
        history: List[PruneStep] = []
        for k in range(steps):
            t0 = time.time()
            if loss_fn is not None:
                _accumulate_gradients(model, loss_fn, grad_batches)
            model.eval()
            self.step()
            model.zero_grad(set_to_none=True)
            history.append(PruneStep(k + 1, float(self.pruner.per_step_pruning_ratio[k + 1]),
                                     1.0 - _prunable_channels(model, self.skip) / self.channels0,
                                     count_params(model), gflops(model, self.imgsz), time.time() - t0))
            if between_steps is not None and k + 1 < steps:
                between_steps(model, k + 1)
        return history

    def step(self) -> None:
        """Prune every group Torch-Pruning proposes, trimmed by ``_guarded_indices``."""
        for group in self.pruner.step(interactive=True):
            idxs = _guarded_indices(self.pruner, group, self.round_to, self.max_layer_ratio)
            if idxs is None:
                continue
            if idxs != list(group[0].idxs):
                dep = group[0].dep
                group = self.pruner.DG.get_pruning_group(dep.target.module, dep.handler, idxs)
            if idxs and self.check_group(group):
                group.prune()
