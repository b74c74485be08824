"""Structured channel pruning with Torch-Pruning's dependency graph.

``prune_model`` physically removes convolution channels (and everything coupled to them:
BatchNorms, the next layers' input channels, both sides of residual adds and concats),
so the pruned model is an ordinary, smaller PyTorch module that exports to ONNX like any
other. What is never pruned:

* the head's output convolutions (the last ``nn.Conv2d`` of every ``head.box[i]`` and
  ``head.cls[i]``) and the DFL projection, so the eval output stays ``[N, 4 + C, A]``;
* in ShuffleNetV2, every layer whose output reaches the shuffled trunk (stem, the
  stride-2 left branch, the last 1x1 of each right branch): Torch-Pruning cannot map
  channel indices through the reshape-transpose-reshape shuffle, so only the channels
  inside each right branch (1x1 -> depthwise 3x3) are pruned there. The dependency graph
  is traced with the shuffle replaced by the identity; that mis-maps only the trunk
  channels, which are all left alone.

A pruned model no longer fits its family's factory. ``save_pruned`` records every conv /
BatchNorm / linear shape in ``Detector.options["pruned"]`` (``prune_layout``: plain
str/int dicts, loadable with ``weights_only=True``; the trainer carries ``options`` into
every checkpoint it writes); ``load_pruned`` rebuilds the family model, resizes those
layers with ``apply_layout``, then loads the state dict.

``prune_and_finetune`` is the command behind ``tritonforge prune``: load, prune in
``steps`` (optionally recovering for a few batches between steps), fine-tune with
``generator.training.trainer.train`` on the pruned model, optionally distilling from a
teacher (``generator.compress.distill``), and write the checkpoint atomically.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from generator._cpu import denormals_flushed
from generator._lazy import require
from generator.compress.prune_layout import apply_layout, pruned_layout
from generator.errors import UsageError
from generator.models.checkpoint import Detector, load_checkpoint, save_checkpoint
from generator.models.profile import count_params, gflops

torch = require("torch", "to prune a detector")
nn = torch.nn

__all__ = [
    "IMPORTANCES", "PruneReport", "PruneStep", "apply_layout", "detection_loss_fn", "finetune",
    "head_output_layers", "load_pruned", "make_importance", "prune_and_finetune", "prune_model",
    "pruned_layout", "save_pruned",
]


def _tp():
    return require("torch_pruning", "to prune a detector")


# name -> factory of a Torch-Pruning group importance (built per call: some keep state)
IMPORTANCES: Dict[str, Callable[[], Any]] = {
    "magnitude": lambda: _tp().importance.MagnitudeImportance(p=2),
    "bn-scale": lambda: _tp().importance.BNScaleImportance(),
    "taylor": lambda: _tp().importance.TaylorImportance(),
    "lamp": lambda: _tp().importance.LAMPImportance(p=2),
}
# importances that read ``.grad``: gradients of the detection loss are accumulated first
NEEDS_GRADIENTS = frozenset({"taylor"})

# a model -> a scalar loss on one batch (its backward fills the gradients Taylor reads)
LossFn = Callable[[Any], Any]
# the trainer's extra_loss: (model, images, raw per-level maps, targets) -> scalar added to the loss
ExtraLoss = Callable[[Any, Any, List[Any], Any], Any]


def make_importance(name: str):
    """A fresh importance estimator for a registered name; unknown names list the choices."""
    try:
        factory = IMPORTANCES[name]
    except KeyError:
        raise UsageError(f"unknown pruning importance {name!r}; choose from {', '.join(IMPORTANCES)}") from None
    return factory()


@dataclass
class PruneStep:
    """The model after one pruning step."""

    step: int
    target_ratio: float  # channel pruning ratio scheduled for this step
    channel_ratio: float  # fraction of prunable channels actually removed so far
    params: int
    gflops: float
    seconds: float


@dataclass
class PruneReport:
    importance: str
    ratio: float
    global_pruning: bool
    round_to: Optional[int]
    imgsz: int
    params_before: int
    params_after: int
    gflops_before: float
    gflops_after: float
    steps: List[PruneStep] = field(default_factory=list)
    ignored: Dict[str, str] = field(default_factory=dict)  # module name -> why it was left alone
    notes: List[str] = field(default_factory=list)

    @property
    def channel_ratio(self) -> float:
        return self.steps[-1].channel_ratio if self.steps else 0.0

    def to_dict(self) -> Dict[str, Any]:
        """Plain str/int/float/list/dict (fits a ``weights_only`` checkpoint and JSON)."""
        d = asdict(self)
        d["steps"] = [asdict(s) for s in self.steps]
        d["round_to"] = self.round_to or 0
        d["channel_ratio"] = self.channel_ratio
        return d

    def summary(self) -> str:
        lines = [
            f"pruned {self.importance} {'global' if self.global_pruning else 'local'} ratio {self.ratio:g}"
            f"{f' round_to {self.round_to}' if self.round_to else ''} at {self.imgsz}px: "
            f"params {self.params_before:,} -> {self.params_after:,} "
            f"({self.params_after / max(1, self.params_before):.1%}), "
            f"GFLOPs {self.gflops_before:.3f} -> {self.gflops_after:.3f} "
            f"({self.gflops_after / max(1e-12, self.gflops_before):.1%}), "
            f"channels removed {self.channel_ratio:.1%}",
        ]
        for s in self.steps:
            lines.append(f"  step {s.step}: target {s.target_ratio:.3f} removed {s.channel_ratio:.3f} "
                         f"params {s.params:,} GFLOPs {s.gflops:.3f} ({s.seconds:.1f}s)")
        reasons: Dict[str, List[str]] = {}
        for name, why in self.ignored.items():
            reasons.setdefault(why, []).append(name)
        for why, names in reasons.items():
            lines.append(f"  not pruned ({len(names)} layers): {why}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


# ---------------------------------------------------------------------------- layers to leave alone

HEAD_REASON = "head output conv / DFL: keeps the [N, 4+C, A] output contract"
SHUFFLE_REASON = ("feeds the ShuffleNetV2 channel shuffle, which Torch-Pruning cannot map "
                  "through its reshape-transpose; only the channels inside each right branch are pruned")


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


@contextlib.contextmanager
def _traceable(model):
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


@contextlib.contextmanager
def _frozen_bn(model):
    """Train mode (raw head outputs) with BatchNorm statistics neither used nor updated."""
    was_training = model.training
    model.train()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.eval()
    try:
        yield
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------- pruning

def _check_args(ratio: float, steps: int, round_to: Optional[int]) -> None:
    if not isinstance(ratio, (int, float)) or not 0.0 < float(ratio) < 1.0:
        raise UsageError(f"--ratio is the fraction of channels to remove and must be in (0, 1), got {ratio}")
    if int(steps) < 1:
        raise UsageError(f"--steps must be >= 1, got {steps}")
    if round_to is not None and int(round_to) < 1:
        raise UsageError(f"--round-to must be >= 1, got {round_to}")


def _prunable_channels(model, skip: set) -> int:
    return sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d) and m not in skip)


def _accumulate_gradients(model, loss_fn: LossFn, batches: int) -> None:
    model.zero_grad(set_to_none=True)
    with _frozen_bn(model):
        for _ in range(max(1, batches)):
            loss = loss_fn(model)
            loss.backward()


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


def _guarded_indices(pruner, group, round_to: Optional[int], max_layer_ratio: float) -> Optional[List[int]]:
    """The root indices to prune, never emptying a layer (global ranking and ``round_to``
    can otherwise remove every channel of a small group); ``None`` to skip the group."""
    dep, idxs = group[0].dep, list(group[0].idxs)
    module, fn = dep.target.module, dep.handler
    dg = pruner.DG
    out_fn = dg.is_out_channel_pruning_fn(fn)
    current = dg.get_out_channels(module) if out_fn else dg.get_in_channels(module)
    initial = (pruner.layer_init_out_ch if out_fn else pruner.layer_init_in_ch).get(module, current)
    if current is None or pruner._get_channel_groups(group) > 1:
        return idxs  # grouped channels: Torch-Pruning's own bookkeeping applies
    floor = max(1, math.ceil(initial * (1.0 - max_layer_ratio) - 1e-9))
    if round_to:
        if current <= round_to:
            return None
        floor = max(floor, round_to)
    keep = current - len(set(idxs))
    if keep >= floor:
        return idxs
    keep = min(current, math.ceil(floor / round_to) * round_to if round_to else floor)
    if keep >= current:
        return None
    full = dg.get_pruning_group(module, fn, list(range(current)))
    imp = pruner.estimate_importance(full)
    if imp is None:
        return None
    return torch.argsort(imp)[: current - keep].tolist()


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
        importance: a name of ``IMPORTANCES``. ``taylor`` needs ``loss_fn``.
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
    tp = _tp()
    _check_args(ratio, steps, round_to)
    imp = make_importance(importance)
    if importance in NEEDS_GRADIENTS and loss_fn is None:
        raise UsageError(f"importance {importance!r} needs gradients: give a loss_fn (e.g. detection_loss_fn) "
                         "or use magnitude, bn-scale or lamp")
    max_layer_ratio = max(float(max_layer_ratio), float(ratio))
    imgsz = int(example_input.shape[-1])
    ignored: Dict[str, str] = {name: HEAD_REASON for name in head_output_layers(model)}
    ignored.update({name: SHUFFLE_REASON for name in shuffle_trunk_layers(model)})
    modules = {**head_output_layers(model), **shuffle_trunk_layers(model), **dict(ignored_layers or {})}
    ignored.update({name: "ignored by the caller" for name in (ignored_layers or {})})
    notes: List[str] = []
    if shuffle_trunk_layers(model):
        notes.append("ShuffleNetV2: the shuffled trunk channels are kept; branch-internal, lateral, "
                     "neck and head channels are pruned")
    skip = {m for mod in modules.values() for m in mod.modules()}

    was_training = model.training
    params0, flops0 = count_params(model), gflops(model, imgsz)
    channels0 = _prunable_channels(model, skip)
    model.eval()
    with _traceable(model):
        pruner = tp.pruner.BasePruner(
            model, example_input, importance=_TieBreak(imp), global_pruning=global_pruning, pruning_ratio=float(ratio),
            iterative_steps=int(steps), ignored_layers=list(modules.values()), round_to=round_to,
            max_pruning_ratio=max_layer_ratio,
        )
    # Torch-Pruning drops every group it would empty; _guarded_indices trims those instead
    check_group = pruner.DG.check_pruning_group
    pruner.DG.check_pruning_group = lambda group: True
    history: List[PruneStep] = []
    try:
        for k in range(int(steps)):
            t0 = time.time()
            if importance in NEEDS_GRADIENTS:
                _accumulate_gradients(model, loss_fn, grad_batches)
            model.eval()
            target = pruner.per_step_pruning_ratio[k + 1]
            for group in pruner.step(interactive=True):
                idxs = _guarded_indices(pruner, group, round_to, max_layer_ratio)
                if idxs is None:
                    continue
                if idxs != list(group[0].idxs):
                    dep = group[0].dep
                    group = pruner.DG.get_pruning_group(dep.target.module, dep.handler, idxs)
                if idxs and check_group(group):
                    group.prune()
            model.zero_grad(set_to_none=True)
            history.append(PruneStep(k + 1, float(target), 1.0 - _prunable_channels(model, skip) / channels0,
                                     count_params(model), gflops(model, imgsz), time.time() - t0))
            if between_steps is not None and k + 1 < steps:
                between_steps(model, k + 1)
    finally:
        model.train(was_training)
    return PruneReport(importance, float(ratio), bool(global_pruning), round_to, imgsz, params0,
                       count_params(model), flops0, gflops(model, imgsz), history, ignored, notes)


# ---------------------------------------------------------------------------- pruned checkpoints

def save_pruned(det: Detector, path: Path, extra: Optional[Dict[str, Any]] = None) -> None:
    """``save_checkpoint`` with the layer shapes in ``det.options["pruned"]`` (atomic write)."""
    det.options = {**dict(det.options), "pruned": pruned_layout(det.model)}
    save_checkpoint(det, Path(path), extra=extra)


def load_pruned(path: Path) -> Detector:
    """Load a checkpoint, pruned (``options["pruned"]``) or not: ``load_checkpoint`` applies the layout."""
    return load_checkpoint(Path(path))


# ---------------------------------------------------------------------------- fine-tuning

def _cycle(loader) -> Iterator:
    while True:
        yield from loader


def detection_loss_fn(batches: Iterable, device=None) -> LossFn:
    """``loss_fn`` for Taylor importance: the detection loss on the next batch of ``batches``
    (cycled), computed with a ``DetectionLoss`` built for the model's head."""
    from generator.training.loss import DetectionLoss

    it = _cycle(batches)

    def loss_fn(model):
        images, targets = next(it)
        dev = device or next(model.parameters()).device
        loss, _ = DetectionLoss(model.head)(model(images.to(dev)), targets.to(dev))
        return loss

    return loss_fn


def finetune(model, loader, iters: int, lr: float, *, weight_decay: float = 5e-4, final_lr_ratio: float = 0.05,
             warmup_iters: int = 1, extra_loss: Optional[ExtraLoss] = None, extra_modules: Sequence = (),
             device=None, progress: bool = False, desc: str = "recover") -> Dict[str, float]:
    """Train ``model`` in place for ``iters`` batches (``loader`` cycled) with the trainer's
    recipe (AdamW on ``param_groups``, ``lr_at`` warm-up + cosine, gradient clipping), no
    EMA: the short recovery between pruning steps. ``extra_loss(model, images, raw,
    targets)`` is added to the detection loss, its ``extra_modules`` are optimised too
    (the trainer's conventions). Returns the mean loss parts."""
    from tqdm import tqdm

    from generator.training.loss import DetectionLoss
    from generator.training.trainer import lr_at, param_groups, train_step

    device = device or next(model.parameters()).device
    model.to(memory_format=torch.channels_last).train()
    criterion = DetectionLoss(model.head)
    groups = param_groups(model, weight_decay)
    for module in extra_modules:
        groups += param_groups(module.to(device), weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.937, 0.999))
    running = torch.zeros(3)
    batches = itertools.islice(_cycle(loader), iters)
    for step, (images, targets) in enumerate(tqdm(batches, total=iters, desc=desc, disable=not progress,
                                                   leave=False)):
        for g in optimizer.param_groups:
            g["lr"] = lr_at(step, iters, max(1, warmup_iters), lr, final_lr_ratio)
        running += train_step(model, optimizer, criterion, images, targets, device, extra_loss)
    model.zero_grad(set_to_none=True)
    running /= max(1, iters)
    return {"box": float(running[0]), "cls": float(running[1]), "dfl": float(running[2])}


def _kd_factory(teacher_path: Path, names: Sequence[str], imgsz: int) -> Callable[[Any], Any]:
    """student -> ``generator.compress.distill.ObjectnessScaledKD`` against the teacher. A
    new one per pruning phase: its feature adapters depend on the student's neck widths."""
    try:
        from generator.compress.distill import ObjectnessScaledKD
    except ImportError as exc:
        raise UsageError(f"--teacher needs generator.compress.distill (knowledge distillation): {exc}") from exc
    teacher = load_pruned(teacher_path)
    if list(teacher.names) != list(names):
        raise UsageError(f"{teacher_path}: teacher classes {teacher.names} differ from the student's {list(names)}")
    return lambda student: ObjectnessScaledKD(teacher.model, student, imgsz)


def _release(kd) -> None:
    """Remove the forward hooks an ObjectnessScaledKD put on teacher and student."""
    for tap in (getattr(kd, "t_tap", None), getattr(kd, "s_tap", None)):
        if tap is not None and tap.handle is not None:
            tap.handle.remove()


def _resolve_device(name: str):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _prune_and_finetune(checkpoint: Path, data: Path, ratio: float, importance: str = "magnitude",
                       global_pruning: bool = False, round_to: Optional[int] = None, steps: int = 1,
                       finetune_epochs: int = 10, out: Path = Path("pruned.pt"), teacher: Optional[Path] = None,
                       imgsz: Optional[int] = None, batch: int = 8, lr: float = 0.002, step_iters: int = 0,
                       grad_batches: int = 4, extra_loss: Optional[ExtraLoss] = None, evaluate: bool = True,
                       seed: int = 0, workers: int = 0, device: str = "auto",
                       echo: Callable[[str], None] = print, progress: bool = True) -> Dict[str, Any]:
    """Prune a trained checkpoint, fine-tune it on ``data`` and write ``out`` atomically.

    Pruning runs in ``steps`` steps with ``step_iters`` recovery batches between them;
    then ``finetune_epochs`` epochs of ``generator.training.trainer.train`` on the pruned
    model (0: none; the checkpoint is written as pruned). ``teacher`` (a checkpoint) adds
    ``generator.compress.distill.ObjectnessScaledKD`` to both; ``extra_loss`` (the
    trainer's ``(model, images, raw, targets) -> scalar``) adds any other term instead.
    ``evaluate``: mAP before and right after pruning too (after fine-tuning it always is).
    Returns a JSON-able summary: checkpoint, prune report, metrics, history, seconds.
    """
    from generator.data.dataset import load_dataset
    from generator.data.loader import TrainDataset, collate
    from generator.training.trainer import TrainConfig, train, validate

    _check_args(ratio, steps, round_to)
    make_importance(importance)
    if finetune_epochs < 0 or step_iters < 0 or grad_batches < 1 or batch < 1:
        raise UsageError("--finetune-epochs and the recovery iterations must be >= 0, --batch >= 1")
    out = Path(out)
    if not out.parent.is_dir():
        raise UsageError(f"folder of --out does not exist: {out.parent}")
    t_start = time.time()
    det = load_pruned(Path(checkpoint))
    imgsz = int(imgsz or det.imgsz)
    if imgsz % 32:
        raise UsageError(f"--imgsz must be a multiple of 32, got {imgsz}")
    train_data = load_dataset(Path(data), "train")
    if list(det.names) != list(train_data.names):
        raise UsageError(f"{checkpoint}: classes {det.names} differ from the dataset's {list(train_data.names)}")
    val_data = load_dataset(Path(data), "val") if evaluate else None
    kd_for = _kd_factory(Path(teacher), det.names, imgsz) if teacher is not None and extra_loss is None else None
    torch.manual_seed(seed)
    dev = _resolve_device(device)

    model = det.model.to(dev)
    dataset = TrainDataset(train_data, imgsz, augment=True, seed=seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, collate_fn=collate,
                                         num_workers=workers, generator=torch.Generator().manual_seed(seed),
                                         drop_last=len(dataset) > batch)
    metrics: Dict[str, Dict[str, float]] = {}

    def measure(key: str, what: str) -> None:
        metrics[key] = validate(model, val_data, imgsz, progress)
        echo(f"{what}: mAP50 {metrics[key]['map50']:.3f}  mAP50-95 {metrics[key]['map50_95']:.3f}")

    if evaluate:
        measure("before", "before pruning")

    def recover(m, k):
        kd = kd_for(m) if kd_for else None
        parts = finetune(m, loader, step_iters, lr, warmup_iters=max(1, step_iters // 10),
                         extra_loss=kd if kd is not None else extra_loss,
                         extra_modules=[kd.adapters] if kd is not None else (), device=dev, progress=progress,
                         desc=f"recover {k}/{steps}")
        _release(kd)
        echo(f"recovered {step_iters} batches after step {k}/{steps}: box {parts['box']:.3f} "
             f"cls {parts['cls']:.3f} dfl {parts['dfl']:.3f}")

    example = torch.zeros(1, 3, imgsz, imgsz, device=dev)
    report = prune_model(model, example, ratio, importance, global_pruning, round_to, steps,
                         loss_fn=detection_loss_fn(loader, dev) if importance in NEEDS_GRADIENTS else None,
                         grad_batches=grad_batches, between_steps=recover if step_iters else None)
    echo(report.summary())
    if evaluate:
        measure("pruned", "after pruning")
    det = Detector(model, det.family, list(det.names), imgsz,
                   {**dict(det.options), "pruned": pruned_layout(model)})
    settings = {"checkpoint": str(checkpoint), "data": str(data), "finetune_epochs": int(finetune_epochs),
                "step_iters": int(step_iters), "grad_batches": int(grad_batches), "lr": float(lr),
                "batch": int(batch), "imgsz": imgsz, "teacher": str(teacher) if teacher else ""}
    info = {"prune": report.to_dict(), "prune_settings": settings, "prune_metrics": dict(metrics)}
    history: List[Dict[str, float]] = []
    if finetune_epochs:
        kd = kd_for(model) if kd_for else None
        cfg = TrainConfig(data=str(data), model=str(checkpoint), out=str(out), imgsz=imgsz, epochs=finetune_epochs,
                          batch=batch, lr=lr, seed=seed, workers=workers, device=device)
        result = train(cfg, echo=echo, progress=progress, detector=det,
                       extra_loss=kd if kd is not None else extra_loss,
                       extra_modules=[kd.adapters] if kd is not None else (), checkpoint_extra=info)
        _release(kd)
        metrics["finetuned"], history = dict(result.metrics), list(result.history)
    else:
        save_pruned(Detector(model.cpu().eval(), det.family, det.names, imgsz, det.options), out, extra=info)
    return {"checkpoint": str(out), "report": report.to_dict(), "metrics": metrics, "history": history,
            "seconds": round(time.time() - t_start, 1)}


def prune_and_finetune(*args, **kwargs) -> Dict[str, Any]:
    """Prune a checkpoint and fine-tune it (see ``_prune_and_finetune`` for the arguments).

    Denormal floats are flushed to zero while it runs: trained detectors produce denormal
    activations that slow x86 CPUs down ~40x.
    """
    with denormals_flushed(_tp_torch()):
        return _prune_and_finetune(*args, **kwargs)


def _tp_torch():
    return require("torch", "to prune")
