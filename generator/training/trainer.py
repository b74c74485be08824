"""``tritonforge train``: a detector on a YOLO/COCO dataset, on the CPU (CUDA when present)."""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from generator._cpu import denormals_flushed
from generator._lazy import require
from generator.errors import UsageError


@dataclass
class TrainConfig:
    data: str
    model: str = "yolo-n"  # family name, or a checkpoint to start from
    out: str = "detector.pt"
    imgsz: int = 256
    epochs: int = 80  # with time_budget: the most epochs the budget may choose
    batch: int = 8
    lr: float = 0.01
    final_lr_ratio: float = 0.05
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    mosaic: float = 0.0
    close_mosaic: int = 5  # last epochs without mosaic
    eval_every: int = 0  # 0: only at the end
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    resume: bool = False
    amp: str = "off"  # off | on | force: generator.training.precision
    time_budget: Optional[float] = None  # seconds for the whole run, final validation included


@dataclass
class TrainResult:
    checkpoint: Path
    epochs: int
    seconds: float
    metrics: Dict[str, float] = field(default_factory=dict)
    history: List[Dict[str, float]] = field(default_factory=list)
    precision: str = "fp32"
    plan: Optional[Dict[str, object]] = None  # what --time-budget chose (EpochPlan.to_json)


def _device(torch, wanted: str):
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(wanted)


def param_groups(model, weight_decay: float):
    """Weight decay on conv/linear weights only, not on BatchNorm parameters or biases."""
    torch = require("torch")
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_weight = name == "weight" and not isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
            (decay if is_weight else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, total: int, warmup: int, base: float, final_ratio: float) -> float:
    """Linear warm-up, then cosine decay to ``base * final_ratio``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# extra_loss(model, images, raw_outputs, targets) -> scalar tensor added to the detection loss
ExtraLoss = Callable[..., "object"]


def train(cfg: TrainConfig, echo: Callable[[str], None] = print, progress: bool = True,
          detector=None, extra_loss: Optional[ExtraLoss] = None, extra_modules: Sequence = (),
          checkpoint_extra: Optional[dict] = None) -> TrainResult:
    """Train and write ``cfg.out`` (EMA weights + state to resume); return metrics.

    ``detector`` starts from an already-built model (e.g. a pruned one) instead of
    ``cfg.model``; ``extra_loss`` adds a term (e.g. distillation) whose learnable
    ``extra_modules`` (e.g. feature adapters) are optimised too; ``checkpoint_extra`` is
    stored in the checkpoint (e.g. the pruned structure). ``cfg.amp`` picks the precision
    (``generator.training.precision``), ``cfg.time_budget`` sizes the epochs to a time
    (``generator.training.budget``).
    """
    torch = require("torch", "to train")
    t_begin = time.time()  # the time budget counts from here: data and model loading included
    _check_config(cfg)
    with denormals_flushed(torch):
        return _Training(cfg, echo, progress, detector, extra_loss, extra_modules, checkpoint_extra, t_begin).run()


def _check_config(cfg: TrainConfig) -> None:
    from generator.training.precision import check_amp

    if cfg.imgsz % 32:
        raise UsageError(f"--imgsz must be a multiple of 32, got {cfg.imgsz}")
    if cfg.epochs < 1 or cfg.batch < 1:
        raise UsageError("--epochs and --batch must be >= 1")
    if cfg.time_budget is not None and cfg.time_budget <= 0:
        raise UsageError(f"--time-budget must be a positive number of seconds, got {cfg.time_budget}")
    if cfg.time_budget is not None and cfg.resume:
        raise UsageError("--resume continues the stored run's epochs; it cannot take a --time-budget")
    check_amp(cfg.amp)
    if not Path(cfg.out).parent.is_dir():
        raise UsageError(f"folder of --out does not exist: {Path(cfg.out).parent}")


class _Training:
    """One ``train`` call: data, model, optimiser, schedule, and what the run measured."""

    def __init__(self, cfg: TrainConfig, echo, progress: bool, detector, extra_loss, extra_modules,
                 checkpoint_extra, t_begin: float):
        from generator.data.dataset import load_dataset
        from generator.training.precision import grad_scaler, resolve_precision

        torch = require("torch", "to train")
        self.cfg, self.echo, self.progress, self.t_begin = cfg, echo, progress, t_begin
        self.extra_loss, self.checkpoint_extra = extra_loss, checkpoint_extra
        self.out = Path(cfg.out)
        self.train_data = load_dataset(Path(cfg.data), "train")
        self.val_data = load_dataset(Path(cfg.data), "val")
        torch.manual_seed(cfg.seed)
        self.device = _device(torch, cfg.device)
        if self.device.type == "cpu":
            torch.set_num_threads(max(1, os.cpu_count() or 1))
        self.det = self._detector(detector)
        self._optimisation(extra_modules)
        self.loader = self._loader()
        self.per_epoch = len(self.loader)
        self.warmup = max(1, int(cfg.warmup_epochs * self.per_epoch))
        self.epochs = cfg.epochs
        self.precision = resolve_precision(cfg.amp, self.device)
        self.scaler = grad_scaler(self.precision)
        self.plan = None
        self.epoch_times: List[float] = []

    def _detector(self, detector):
        from generator.models.checkpoint import build_detector, load_checkpoint

        cfg = self.cfg
        det = detector or _initial_detector(cfg, self.train_data.names, build_detector, load_checkpoint)
        if list(det.names) != list(self.train_data.names):
            source = cfg.model if detector is None else "the given model"
            raise UsageError(f"{source}: classes {list(det.names)} differ from the dataset's "
                             f"{list(self.train_data.names)}")
        det.imgsz = cfg.imgsz
        return det

    def _optimisation(self, extra_modules) -> None:
        """Model (channels-last), its EMA, AdamW, the loss, and the state to resume."""
        from generator.training.ema import ModelEMA
        from generator.training.loss import DetectionLoss

        torch = require("torch")
        cfg = self.cfg
        # channels-last convolutions run ~15% faster on x86 CPUs with oneDNN
        self.model = self.det.model.to(self.device, memory_format=torch.channels_last)
        self.ema = ModelEMA(self.model)
        groups = param_groups(self.model, cfg.weight_decay)
        for module in extra_modules:
            module.to(self.device)
            groups += param_groups(module, cfg.weight_decay)
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.937, 0.999))
        self.start_epoch, self.history = _maybe_resume(cfg, self.model, self.ema, self.optimizer, self.out, torch)
        self.criterion = DetectionLoss(self.model.head)

    def _loader(self):
        from generator.data.loader import TrainDataset, collate

        torch = require("torch")
        cfg = self.cfg
        self.dataset = TrainDataset(self.train_data, cfg.imgsz, augment=True, seed=cfg.seed, mosaic=cfg.mosaic)
        gen = torch.Generator().manual_seed(cfg.seed)
        return torch.utils.data.DataLoader(self.dataset, batch_size=cfg.batch, shuffle=True, collate_fn=collate,
                                           num_workers=cfg.workers, generator=gen,
                                           drop_last=len(self.dataset) > cfg.batch)

    def run(self) -> TrainResult:
        if self.precision.name != "fp32" or self.cfg.amp != "off":
            self.echo(f"precision {self.precision.name}: {self.precision.reason}")
        metrics: Dict[str, float] = {}
        epoch = self.start_epoch
        while epoch < self.epochs:
            t_epoch = time.time()
            record = self._epoch(epoch)
            self._keep_to_budget(epoch, time.time() - t_epoch)
            if epoch + 1 == self.epochs or (self.cfg.eval_every and (epoch + 1) % self.cfg.eval_every == 0):
                metrics = validate(self.ema.ema, self.val_data, self.cfg.imgsz, self.progress)
                record.update(metrics)
            record["seconds"] = round(time.time() - self.t_begin, 1)
            self.history.append(record)
            self.echo(_format(record))
            self._save(epoch)
            epoch += 1
        return TrainResult(self.out, self.epochs, time.time() - self.t_begin, metrics, self.history,
                           self.precision.name, self.plan.to_json() if self.plan else None)

    def _epoch(self, epoch: int) -> Dict[str, float]:
        """Train one epoch; the first one also measures the speed for a time budget."""
        from tqdm import tqdm

        from generator.training.budget import SpeedProbe

        torch = require("torch")
        cfg = self.cfg
        if cfg.mosaic and epoch >= self.epochs - cfg.close_mosaic:
            self.dataset.mosaic = 0.0
        probe = SpeedProbe() if cfg.time_budget and self.plan is None else None
        after_probe = None  # (time, batches) when the speed measurement completed
        self.model.train()
        running = torch.zeros(3)
        bar = tqdm(self.loader, desc=f"epoch {epoch + 1}/{self.epochs}", disable=not self.progress, leave=False)
        for i, (images, targets) in enumerate(bar):
            step = epoch * self.per_epoch + i
            for g in self.optimizer.param_groups:
                g["lr"] = lr_at(step, self.per_epoch * self.epochs, self.warmup, cfg.lr, cfg.final_lr_ratio)
            running += train_step(self.model, self.optimizer, self.criterion, images, targets, self.device,
                                  self.extra_loss, self.precision, self.scaler)
            self.ema.update(self.model)
            if probe is not None and probe.tick():
                self._plan_epochs(probe.batch_s, i + 1)
                after_probe = (time.perf_counter(), i + 1)
            bar.set_postfix(box=f"{running[0] / (i + 1):.3f}", cls=f"{running[1] / (i + 1):.3f}",
                            dfl=f"{running[2] / (i + 1):.3f}")
        if probe is not None and self.plan is None and probe.finish_early():
            self._plan_epochs(probe.batch_s, self.per_epoch)
        if probe is not None and after_probe is not None and self.per_epoch - after_probe[1] >= 2:
            # the first epoch's speed once measuring was done: re-checked like a whole epoch's
            batch_s = (time.perf_counter() - after_probe[0]) / (self.per_epoch - after_probe[1])
            self.epoch_times.append(batch_s * self.per_epoch)
        n = max(1, self.per_epoch)
        record = {"epoch": epoch + 1, "box": float(running[0] / n), "cls": float(running[1] / n),
                  "dfl": float(running[2] / n)}
        if self.precision.name != "fp32":
            record["precision"] = self.precision.name
        return record

    def _plan_epochs(self, batch_s: float, batches_done: int) -> None:
        """Size the run to the time budget from the measured speed (see ``budget``)."""
        from generator.training.budget import EpochPlan, epochs_that_fit

        cfg = self.cfg
        one_val_s = self._validation_s()
        elapsed = time.time() - self.t_begin
        epochs, val_s = cfg.epochs, one_val_s
        for _ in range(2 if cfg.eval_every else 1):  # with --eval-every: again, counting the periodic validations
            val_s = one_val_s * (1 + (epochs // cfg.eval_every if cfg.eval_every else 0))
            epochs = epochs_that_fit(cfg.time_budget, elapsed, batch_s, self.per_epoch, batches_done, val_s, cfg.epochs)
        self.plan = EpochPlan(float(cfg.time_budget), batch_s, self.per_epoch, val_s, epochs, cfg.epochs)
        self.epochs = epochs
        self.echo(f"time budget: {self.plan.summary()}")

    def _validation_s(self) -> float:
        """Seconds for one validation: a real one on a few images, scaled to the split. An
        early model's many low-score boxes make its postprocessing slow: an upper bound."""
        from generator.data.records import DetectionData
        from generator.training.budget import VALIDATION_PROBE_IMAGES

        samples = self.val_data.samples
        probe = DetectionData(self.val_data.names, samples[:VALIDATION_PROBE_IMAGES], self.val_data.source)
        t0 = time.perf_counter()
        validate(self.ema.ema, probe, self.cfg.imgsz, progress=False)
        return (time.perf_counter() - t0) * len(samples) / max(1, len(probe.samples))

    def _keep_to_budget(self, epoch: int, epoch_s: float) -> None:
        """After an epoch's batches: re-size the run to the measured epoch time (``budget.replan``)."""
        from generator.training.budget import replan

        if self.plan is None:
            return
        if epoch != self.start_epoch:  # the first epoch's warm-up and measuring are not typical: see _epoch
            self.epoch_times.append(epoch_s)
        if not self.epoch_times:
            return
        mean = sum(self.epoch_times) / len(self.epoch_times)
        epochs = replan(self.plan, epoch + 1, time.time() - self.t_begin, mean)
        if epochs is not None and epochs != self.epochs:
            self.echo(f"time budget: epochs take {mean:.1f} s; {epochs} epochs instead of {self.epochs}")
            self.plan.epochs, self.plan.replanned = epochs, self.plan.replanned + 1
            self.epochs = epochs

    def _save(self, epoch: int) -> None:
        from generator.models.checkpoint import Detector, save_checkpoint

        det = Detector(self.ema.ema, self.det.family, list(self.train_data.names), self.cfg.imgsz, self.det.options)
        run = {"precision": self.precision.to_json(), "epochs": self.epochs,
               "time_budget": self.plan.to_json() if self.plan else None}
        _save(det, self.out, self.cfg, self.model, self.optimizer, self.ema, epoch, self.history, save_checkpoint,
              {**(self.checkpoint_extra or {}), "train_run": run})


def train_step(model, optimizer, criterion, images, targets, device, extra_loss=None, precision=None, scaler=None):
    """One optimisation step (channels-last, gradient clipping); returns the detached loss parts.

    With a reduced ``precision`` the forward passes (the model's and ``extra_loss``'s, e.g. a
    teacher) run under autocast; the detection loss is computed in fp32 from the raw
    outputs cast back, and ``scaler`` (fp16) scales the loss before backward.
    """
    from generator.training.precision import FP32, autocast

    torch = require("torch")
    precision = precision or FP32
    images = images.to(device, memory_format=torch.channels_last)
    with autocast(precision):
        raw = model(images)
        if precision.autocast is not None:
            raw = [r.float() for r in raw]
        extra = extra_loss(model, images, raw, targets) if extra_loss is not None else None
    loss, parts = criterion(raw, targets.to(device))
    if extra is not None:
        loss = loss + extra.float()
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    return parts.cpu()


def _initial_detector(cfg, names, build_detector, load_checkpoint):
    if cfg.model.endswith((".pt", ".pth")):
        return load_checkpoint(Path(cfg.model))
    return build_detector(cfg.model, len(names), cfg.imgsz, list(names), seed=cfg.seed)


def _maybe_resume(cfg, model, ema, optimizer, out: Path, torch):
    """With ``--resume``, continue from the training state stored in ``--out``."""
    if not cfg.resume:
        return 0, []
    if not out.is_file():
        raise UsageError(f"--resume: no checkpoint to resume at {out}")
    payload = torch.load(out, map_location="cpu", weights_only=True)
    state = payload.get("extra", {}).get("train_state")
    if not state:
        raise UsageError(f"--resume: {out} has no training state (it was not written by tritonforge train)")
    model.load_state_dict(state["model"])
    ema.ema.load_state_dict(payload["state_dict"])
    ema.updates = int(state["ema_updates"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"]) + 1, list(state["history"])


def _save(det, out, cfg, model, optimizer, ema, epoch, history, save_checkpoint, extra=None) -> None:
    state = {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "ema_updates": ema.updates, "history": history, "config": asdict(cfg)}
    save_checkpoint(det, out, extra={**(extra or {}), "train_state": state})


def validate(model, data, imgsz: int, progress: bool = True) -> Dict[str, float]:
    """mAP of ``model`` on ``data`` with the serving pre/postprocessing."""
    from generator.evaluation.coco import evaluate
    from generator.evaluation.predictors import offline_detector
    from generator.runners import open_runner

    was_training = model.training
    result = evaluate(data, offline_detector(open_runner("torch", model), imgsz, imgsz), progress=progress, desc="val")
    model.train(was_training)
    return {"map50_95": result.map50_95, "map50": result.map50}


def _format(record: Dict[str, float]) -> str:
    text = (f"epoch {record['epoch']:>3}  box {record['box']:.3f}  cls {record['cls']:.3f}  "
            f"dfl {record['dfl']:.3f}  {record['seconds']:.0f}s")
    if "map50" in record:
        text += f"  mAP50 {record['map50']:.3f}  mAP50-95 {record['map50_95']:.3f}"
    return text
