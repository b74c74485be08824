"""Recovering a pruned model: short fine-tuning between steps, Taylor's loss, distillation.

The trainer's recipe (AdamW on ``param_groups``, warm-up + cosine, gradient clipping)
without EMA, for the few batches between pruning steps; the full fine-tune after pruning
is ``generator.training.trainer.train`` itself.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence

from generator._lazy import require
from generator.compress.prune.engine import LossFn
from generator.errors import UsageError

torch = require("torch", "to prune a detector")

# the trainer's extra_loss: (model, images, raw per-level maps, targets) -> scalar added to the loss
ExtraLoss = Callable[[Any, Any, List[Any], Any], Any]


def cycle(loader) -> Iterator:
    """``loader``'s batches, over and over."""
    while True:
        yield from loader


def detection_loss_fn(batches: Iterable, device=None) -> LossFn:
    """``loss_fn`` for Taylor importance: the detection loss on the next batch of ``batches``
    (cycled), computed with a ``DetectionLoss`` built for the model's head."""
    from generator.training.loss import DetectionLoss

    it = cycle(batches)

    def loss_fn(model):
        images, targets = next(it)
        dev = device or next(model.parameters()).device
        loss, _ = DetectionLoss(model.head)(model(images.to(dev)), targets.to(dev))
        return loss

    return loss_fn


def finetune(model, loader, iters: int, lr: float, *, weight_decay: float = 5e-4, final_lr_ratio: float = 0.05,
             warmup_iters: int = 1, extra_loss: Optional[ExtraLoss] = None, extra_modules: Sequence = (),
             device=None, progress: bool = False, desc: str = "recover", precision=None) -> Dict[str, float]:
    """Train ``model`` in place for ``iters`` batches (``loader`` cycled) with the trainer's
    recipe (AdamW on ``param_groups``, ``lr_at`` warm-up + cosine, gradient clipping), no
    EMA: the short recovery between pruning steps. ``extra_loss(model, images, raw,
    targets)`` is added to the detection loss, its ``extra_modules`` are optimised too
    (the trainer's conventions); ``precision`` (``generator.training.precision``; default
    fp32) is the trainer's mixed precision. Returns the mean loss parts."""
    from tqdm import tqdm

    from generator.training.loss import DetectionLoss
    from generator.training.precision import FP32, grad_scaler
    from generator.training.trainer import lr_at, param_groups, train_step

    device = device or next(model.parameters()).device
    model.to(memory_format=torch.channels_last).train()
    criterion = DetectionLoss(model.head)
    groups = param_groups(model, weight_decay)
    for module in extra_modules:
        groups += param_groups(module.to(device), weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.937, 0.999))
    precision = precision or FP32
    scaler = grad_scaler(precision)
    running = torch.zeros(3)
    batches = itertools.islice(cycle(loader), iters)
    for step, (images, targets) in enumerate(tqdm(batches, total=iters, desc=desc, disable=not progress,
                                                   leave=False)):
        for g in optimizer.param_groups:
            g["lr"] = lr_at(step, iters, max(1, warmup_iters), lr, final_lr_ratio)
        running += train_step(model, optimizer, criterion, images, targets, device, extra_loss, precision, scaler)
    model.zero_grad(set_to_none=True)
    running /= max(1, iters)
    return {"box": float(running[0]), "cls": float(running[1]), "dfl": float(running[2])}


def kd_factory(teacher_path: Path, names: Sequence[str], imgsz: int) -> Callable[[Any], Any]:
    """student -> ``generator.compress.distill.ObjectnessScaledKD`` against the teacher. A
    new one per pruning phase: its feature adapters depend on the student's neck widths."""
    from generator.compress.prune_layout import load_pruned

    try:
        from generator.compress.distill import ObjectnessScaledKD
    except ImportError as exc:
        raise UsageError(f"--teacher needs generator.compress.distill (knowledge distillation): {exc}") from exc
    teacher = load_pruned(teacher_path)
    if list(teacher.names) != list(names):
        raise UsageError(f"{teacher_path}: teacher classes {teacher.names} differ from the student's {list(names)}")
    return lambda student: ObjectnessScaledKD(teacher.model, student, imgsz)


def release(kd) -> None:
    """Remove the forward hooks an ObjectnessScaledKD put on teacher and student."""
    for tap in (getattr(kd, "t_tap", None), getattr(kd, "s_tap", None)):
        if tap is not None and tap.handle is not None:
            tap.handle.remove()
