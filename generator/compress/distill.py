"""Knowledge distillation for the anchor-free head: objectness-scaled distillation
(Mehta & Ozturk, "Object detection at 200 Frames Per Second", 2018), adapted, plus
feature imitation on the neck through learned 1x1 adapters.

Adaptation to an anchor-free head without an objectness output: the teacher's
*objectness* at an anchor point is its highest class probability ``o_T = max_c p_T``.

- objectness term: the student's objectness ``o_S = max_c p_S`` is pulled toward
  ``o_T`` at every anchor point (binary cross-entropy with soft targets);
- class term: BCE between the student's class logits and the teacher's probabilities,
  weighted by ``o_T`` so that background points (where the teacher's classes are noise)
  contribute little;
- box term: KL divergence between the teacher's and the student's DFL distributions of
  the four box sides, weighted by ``o_T`` likewise;
- feature-map NMS: before weighting, ``o_T`` is kept only at points that are the maximum
  of their 3x3 neighbourhood on their level (the grid analogue of the paper's NMS over
  neighbouring cells and anchors), so a cluster of duplicate teacher predictions does
  not dominate the loss;
- feature imitation: MSE between ``adapter(student neck level)`` and the teacher's.

A teacher given as an ONNX file (any supported output layout, an Ultralytics export for
instance) teaches through its detections instead: ``compress.distill_onnx``.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from generator.compress.config import DistillConfig, KDWeights
from generator.errors import UsageError
from generator.training.loss import split_raw


class _NeckTap:
    """Keeps the latest output of a model's neck (its P3-P5 features)."""

    def __init__(self, model: nn.Module):
        self.features: Optional[List[torch.Tensor]] = None
        neck = getattr(model, "neck", None)
        self.handle = neck.register_forward_hook(self._keep) if neck is not None else None

    def _keep(self, module, inputs, output):  # noqa: ARG002
        self.features = list(output)


def feature_map_nms(objectness: List[torch.Tensor], kernel: int) -> torch.Tensor:
    """Per-level ``[B, H, W]`` objectness -> flattened ``[B, A]``, zero where not a local maximum."""
    kept = []
    for o in objectness:
        peak = F.max_pool2d(o[:, None], kernel, 1, kernel // 2)[:, 0]
        kept.append((o * (o >= peak)).flatten(1))
    return torch.cat(kept, 1)


class ObjectnessScaledKD(nn.Module):
    """Callable as the trainer's ``extra_loss``; its adapters are trained with the student."""

    def __init__(self, teacher: nn.Module, student: nn.Module, imgsz: int, weights: KDWeights = KDWeights()):
        super().__init__()
        if teacher.head.nc != student.head.nc:
            raise UsageError(f"teacher has {teacher.head.nc} classes but the student has {student.head.nc}")
        if teacher.head.reg_max != student.head.reg_max or teacher.head.strides != student.head.strides:
            raise UsageError("teacher and student heads differ in DFL bins or strides")
        self.teacher = [teacher.eval().requires_grad_(False)]  # a list: not a registered submodule
        self.weights = weights
        self.t_tap, self.s_tap = _NeckTap(teacher), _NeckTap(student)
        self.adapters = self._make_adapters(teacher, student, imgsz)

    def _make_adapters(self, teacher, student, imgsz: int) -> nn.ModuleList:
        if self.weights.feat <= 0 or self.t_tap.handle is None or self.s_tap.handle is None:
            return nn.ModuleList()
        probe = torch.zeros(1, 3, imgsz, imgsz)
        was = student.training
        with torch.no_grad():
            teacher(probe)
            student.eval()(probe)
        student.train(was)
        pairs = zip(self.s_tap.features, self.t_tap.features)
        return nn.ModuleList(nn.Conv2d(s.shape[1], t.shape[1], 1) for s, t in pairs)

    def teacher_outputs(self, images: torch.Tensor):
        teacher = self.teacher[0]
        if next(teacher.parameters()).device != images.device:
            teacher.to(images.device)
        with torch.no_grad():
            teacher(images)
            feats = self.t_tap.features
            # fp32 targets also under autocast (--amp): soft targets need more than bf16's 8 bits
            return [r.float() for r in teacher.head.raw_maps(feats)], [f.float() for f in feats]

    def forward(self, model, images, raw, targets=None):  # noqa: ARG002  (trainer's extra_loss signature)
        """KD loss for the batch the student just saw (its raw maps and neck features)."""
        t_raw, t_feats = self.teacher_outputs(images)
        loss = self.prediction_terms(raw, t_raw)
        if len(self.adapters) and self.s_tap.features is not None:
            loss = loss + self.weights.feat * self.feature_term(self.s_tap.features, t_feats)
        return loss * images.shape[0]

    def prediction_terms(self, s_raw: List[torch.Tensor], t_raw: List[torch.Tensor]) -> torch.Tensor:
        head, w = self.teacher[0].head, self.weights
        s_dist, s_logits = split_raw(s_raw, head.nc, head.reg_max)
        t_dist, t_logits = split_raw(t_raw, head.nc, head.reg_max)
        t_prob = t_logits.sigmoid()
        o_t = t_prob.amax(-1)  # [B, A]
        loss_obj = F.binary_cross_entropy_with_logits(s_logits.amax(-1), o_t)
        levels = [r.shape[2:] for r in t_raw]
        per_level = o_t.split([h * wd for h, wd in levels], 1)
        weight = feature_map_nms([o.view(-1, h, wd) for o, (h, wd) in zip(per_level, levels)], w.nms_kernel)
        norm = weight.sum().clamp(min=1e-6)
        loss_cls = (F.binary_cross_entropy_with_logits(s_logits, t_prob, reduction="none").sum(-1) * weight).sum() / norm
        b, a, _ = s_dist.shape
        s_log = F.log_softmax(s_dist.view(b, a, 4, head.reg_max), -1)
        t_soft = F.softmax(t_dist.view(b, a, 4, head.reg_max), -1)
        kl = (t_soft * (t_soft.clamp(min=1e-9).log() - s_log)).sum(-1).mean(-1)  # [B, A]
        loss_box = (kl * weight).sum() / norm
        return w.obj * loss_obj + w.cls * loss_cls + w.box * loss_box

    def feature_term(self, s_feats: List[torch.Tensor], t_feats: List[torch.Tensor]) -> torch.Tensor:
        terms = [F.mse_loss(adapter(s).float(), t) for adapter, s, t in zip(self.adapters, s_feats, t_feats)]
        return sum(terms) / len(s_feats)


class WithUnlabelled:
    """KD on labelled batches plus, each step, one batch of unlabelled images (teacher targets only)."""

    def __init__(self, kd: ObjectnessScaledKD, loader):
        self.kd, self.loader, self._it = kd, loader, iter(loader)

    def _next(self):
        try:
            return next(self._it)
        except StopIteration:
            self._it = iter(self.loader)
            return next(self._it)

    def __call__(self, model, images, raw, targets=None):
        loss = self.kd(model, images, raw, targets)
        extra, _ = self._next()
        extra = extra.to(images.device, memory_format=torch.channels_last)
        return loss + self.kd(model, extra, model(extra), None)


def run_distill(cfg: DistillConfig, *, echo=print, progress: bool = True, amp: str = "off",
                time_budget: Optional[float] = None):
    """Train ``cfg.student`` (family name or checkpoint) on ``cfg.data`` with KD from
    ``cfg.teacher`` (a checkpoint, or a detector ONNX); returns the trainer's ``TrainResult``.
    ``amp`` and ``time_budget`` (seconds; ``cfg.epochs`` is then the most it may choose) are
    the trainer's (``TrainConfig``)."""
    from generator.training.trainer import TrainConfig, train

    run = {"amp": amp, "time_budget": time_budget}
    if cfg.onnx_teacher:
        return _run_onnx_distill(cfg, echo, progress, run)
    if cfg.layout or cfg.scores or isinstance(cfg.imgsz, tuple):
        raise UsageError("--layout, --scores and a non-square --imgsz H,W apply to an ONNX teacher only")
    teacher, det, names = _load_pair(cfg)
    size = cfg.imgsz or teacher.imgsz
    kd = ObjectnessScaledKD(teacher.model, det.model, size, cfg.weights)
    loss = WithUnlabelled(kd, _unlabelled_loader(cfg, names, size)) if cfg.unlabelled else kd
    train_cfg = TrainConfig(data=cfg.data, model=cfg.student, out=str(cfg.out), imgsz=size, epochs=cfg.epochs,
                            batch=cfg.batch, lr=cfg.lr, seed=cfg.seed, **run)
    info = {"distilled_from": str(cfg.teacher), "kd_weights": {k: float(v) for k, v in vars(cfg.weights).items()}}
    return train(train_cfg, echo=echo, progress=progress, detector=det, extra_loss=loss,
                 extra_modules=[kd.adapters], checkpoint_extra=info)


def _run_onnx_distill(cfg: DistillConfig, echo, progress: bool, run: dict):
    """KD from a detector ONNX run by ONNX Runtime, at the teacher's input size."""
    from generator.compress.distill_onnx import OnnxTeacherKD
    from generator.compress.onnx_teacher import OnnxTeacher, check_teacher_classes
    from generator.data.dataset import load_dataset
    from generator.training.trainer import TrainConfig, train

    names = load_dataset(Path(cfg.data), "train").names
    teacher = OnnxTeacher(cfg.teacher, cfg.read_options(), names=names)
    asked = cfg.read_options().get("imgsz")
    if asked and tuple(asked) != (teacher.height, teacher.width):
        raise UsageError(f"--imgsz {asked[0]},{asked[1]}: the ONNX teacher {cfg.teacher} runs at its input size "
                         f"{teacher.height},{teacher.width}; the student trains at the teacher's size")
    check_teacher_classes(teacher, names)
    weights = cfg.weights
    if weights.feat > 0:
        echo("--kd-feat set to 0: feature imitation needs a PyTorch teacher (an ONNX teacher's features are not "
             "among its outputs); distilling its outputs only")
        weights = KDWeights(obj=weights.obj, cls=weights.cls, box=weights.box, feat=0.0, nms_kernel=weights.nms_kernel)
    size = teacher.student_size()
    det = _student(cfg, names, size)
    kd = OnnxTeacherKD(teacher, det.model, weights)
    loss = WithUnlabelled(kd, _unlabelled_loader(cfg, names, size)) if cfg.unlabelled else kd
    echo(f"teacher {cfg.teacher}: layout {teacher.sig.layout}, input {teacher.height}x{teacher.width}, "
         f"{teacher.num_classes} classes (ONNX Runtime); student trains at {size}x{size}")
    train_cfg = TrainConfig(data=cfg.data, model=cfg.student, out=str(cfg.out), imgsz=size, epochs=cfg.epochs,
                            batch=cfg.batch, lr=cfg.lr, seed=cfg.seed, **run)
    info = {"distilled_from": str(cfg.teacher), "teacher_layout": teacher.sig.layout,
            "kd_weights": {k: float(v) for k, v in vars(weights).items()}}
    return train(train_cfg, echo=echo, progress=progress, detector=det, extra_loss=loss, checkpoint_extra=info)


def _student(cfg: DistillConfig, names, size: int):
    """The student: a checkpoint, or a family name built at ``size``."""
    from generator.models.checkpoint import build_detector, load_checkpoint

    if cfg.student.endswith((".pt", ".pth")):
        return load_checkpoint(Path(cfg.student))
    return build_detector(cfg.student, len(names), size, list(names), seed=cfg.seed)


def _load_pair(cfg: DistillConfig):
    """(teacher, student detector, class names), checked against the dataset's classes."""
    from generator.data.dataset import load_dataset
    from generator.models.checkpoint import build_detector, load_checkpoint

    teacher = load_checkpoint(cfg.teacher)
    names = load_dataset(Path(cfg.data), "train").names
    if list(teacher.names) != list(names):
        raise UsageError(f"{cfg.teacher}: teacher classes {teacher.names} differ from the dataset's {list(names)}")
    if cfg.student.endswith((".pt", ".pth")):
        det = load_checkpoint(Path(cfg.student))
    else:
        det = build_detector(cfg.student, len(names), cfg.imgsz or teacher.imgsz, list(names), seed=cfg.seed)
    if det.num_classes != teacher.num_classes:
        raise UsageError(f"teacher has {teacher.num_classes} classes but student {cfg.student} "
                         f"has {det.num_classes}")
    return teacher, det, names


def _unlabelled_loader(cfg: DistillConfig, names, size: int):
    """Batches of ``cfg.unlabelled`` images, augmented like the training set."""
    from generator.data.folder import load_image_folder
    from generator.data.loader import TrainDataset, collate

    extra = TrainDataset(load_image_folder(Path(cfg.unlabelled), names), size, augment=True, seed=cfg.seed + 1)
    return torch.utils.data.DataLoader(extra, batch_size=cfg.batch, shuffle=True, collate_fn=collate,
                                       generator=torch.Generator().manual_seed(cfg.seed))
