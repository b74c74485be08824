"""``prune_and_finetune``: the step behind ``tritonforge prune``.

Load a checkpoint, prune it in ``cfg.steps`` steps (recovering ``cfg.step_iters``
batches between them), fine-tune it with ``generator.training.trainer.train`` and write
the checkpoint atomically, with the pruned layout and the prune report inside.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional

from generator._cpu import denormals_flushed
from generator._lazy import require
from generator.compress.config import PruneConfig
from generator.compress.prune.engine import prune_model
from generator.compress.prune.finetune import ExtraLoss, detection_loss_fn, finetune, kd_factory, release
from generator.compress.prune.importance import needs_gradients
from generator.compress.prune_layout import load_pruned, pruned_layout, save_pruned
from generator.errors import UsageError
from generator.models.checkpoint import Detector

torch = require("torch", "to prune a detector")


def prune_and_finetune(cfg: PruneConfig, *, extra_loss: Optional[ExtraLoss] = None,
                       echo: Callable[[str], None] = print, progress: bool = True, amp: str = "off",
                       time_budget: Optional[float] = None) -> Dict[str, Any]:
    """Prune ``cfg.checkpoint``, fine-tune it on ``cfg.data`` and write ``cfg.out`` atomically.

    ``cfg.teacher`` adds ``generator.compress.distill.ObjectnessScaledKD`` to recovery and
    fine-tuning; ``extra_loss`` (the trainer's ``(model, images, raw, targets) -> scalar``)
    adds any other term instead. ``amp``: the trainer's mixed precision (recovery and
    fine-tuning); ``time_budget``: seconds for the whole call, the fine-tuning's epochs sized
    to what is left after pruning (``cfg.finetune_epochs`` is then the most). Returns a
    JSON-able summary: checkpoint, prune report, metrics, history, seconds, precision, plan.

    Denormal floats are flushed to zero while it runs: trained detectors produce denormal
    activations that slow x86 CPUs down ~40x.
    """
    with denormals_flushed(torch):
        return _PruneRun(cfg, extra_loss, echo, progress, amp, time_budget).run()


class _PruneRun:
    """One ``prune_and_finetune`` call: the loaded model, data and what was measured."""

    def __init__(self, cfg: PruneConfig, extra_loss: Optional[ExtraLoss], echo, progress: bool, amp: str = "off",
                 time_budget: Optional[float] = None):
        from generator.data.dataset import load_dataset
        from generator.training.precision import resolve_precision

        self.cfg, self.extra_loss, self.echo, self.progress = cfg, extra_loss, echo, progress
        self.amp, self.time_budget, self.plan = amp, time_budget, None
        if not cfg.out.parent.is_dir():
            raise UsageError(f"folder of --out does not exist: {cfg.out.parent}")
        self.t_start = time.time()
        self.det = load_pruned(cfg.checkpoint)
        self.imgsz = int(cfg.imgsz or self.det.imgsz)
        if self.imgsz % 32:
            raise UsageError(f"--imgsz must be a multiple of 32, got {self.imgsz}")
        self.train_data = load_dataset(cfg.data, "train")
        if list(self.det.names) != list(self.train_data.names):
            raise UsageError(f"{cfg.checkpoint}: classes {self.det.names} differ from the dataset's "
                             f"{list(self.train_data.names)}")
        self.val_data = load_dataset(cfg.data, "val") if cfg.evaluate else None
        use_kd = cfg.teacher is not None and extra_loss is None
        self.kd_for = kd_factory(cfg.teacher, self.det.names, self.imgsz) if use_kd else None
        torch.manual_seed(cfg.seed)
        self.device = _resolve_device(cfg.device)
        self.precision = resolve_precision(amp, self.device)
        self.loader = self._loader()
        self.metrics: Dict[str, Dict[str, float]] = {}

    def _loader(self):
        from generator.data.loader import TrainDataset, collate

        cfg = self.cfg
        dataset = TrainDataset(self.train_data, self.imgsz, augment=True, seed=cfg.seed)
        return torch.utils.data.DataLoader(dataset, batch_size=cfg.batch, shuffle=True, collate_fn=collate,
                                           num_workers=cfg.workers, generator=torch.Generator().manual_seed(cfg.seed),
                                           drop_last=len(dataset) > cfg.batch)

    def run(self) -> Dict[str, Any]:
        cfg, model = self.cfg, self.det.model.to(self.device)
        if cfg.evaluate:
            self._measure(model, "before", "before pruning")
        example = torch.zeros(1, 3, self.imgsz, self.imgsz, device=self.device)
        loss_fn = detection_loss_fn(self.loader, self.device) if needs_gradients(cfg.importance) else None
        report = prune_model(model, example, cfg.ratio, cfg.importance, cfg.global_pruning, cfg.round_to, cfg.steps,
                             loss_fn=loss_fn, grad_batches=cfg.grad_batches,
                             between_steps=self._recover if cfg.step_iters else None)
        self.echo(report.summary())
        if cfg.evaluate:
            self._measure(model, "pruned", "after pruning")
        det = Detector(model, self.det.family, list(self.det.names), self.imgsz,
                       {**dict(self.det.options), "pruned": pruned_layout(model)})
        info = {"prune": report.to_dict(), "prune_settings": self._settings(), "prune_metrics": dict(self.metrics)}
        history = self._finish(det, info)
        return {"checkpoint": str(cfg.out), "report": report.to_dict(), "metrics": self.metrics, "history": history,
                "seconds": round(time.time() - self.t_start, 1), "precision": self.precision.name, "plan": self.plan}

    def _measure(self, model, key: str, what: str) -> None:
        from generator.training.trainer import validate

        self.metrics[key] = m = validate(model, self.val_data, self.imgsz, self.progress)
        self.echo(f"{what}: mAP50 {m['map50']:.3f}  mAP50-95 {m['map50_95']:.3f}")

    def _extra(self, model):
        """(kd or None, the extra loss, its learnable modules) for a phase of training ``model``."""
        kd = self.kd_for(model) if self.kd_for else None
        if kd is None:
            return None, self.extra_loss, ()
        return kd, kd, [kd.adapters]

    def _recover(self, model, k: int) -> None:
        cfg = self.cfg
        kd, loss, modules = self._extra(model)
        parts = finetune(model, self.loader, cfg.step_iters, cfg.lr, warmup_iters=max(1, cfg.step_iters // 10),
                         extra_loss=loss, extra_modules=modules, device=self.device, progress=self.progress,
                         desc=f"recover {k}/{cfg.steps}", precision=self.precision)
        release(kd)
        self.echo(f"recovered {cfg.step_iters} batches after step {k}/{cfg.steps}: box {parts['box']:.3f} "
                  f"cls {parts['cls']:.3f} dfl {parts['dfl']:.3f}")

    def _settings(self) -> Dict[str, Any]:
        cfg = self.cfg
        return {"checkpoint": str(cfg.checkpoint), "data": str(cfg.data), "finetune_epochs": int(cfg.finetune_epochs),
                "step_iters": int(cfg.step_iters), "grad_batches": int(cfg.grad_batches), "lr": float(cfg.lr),
                "batch": int(cfg.batch), "imgsz": self.imgsz, "teacher": str(cfg.teacher) if cfg.teacher else ""}

    def _finish(self, det: Detector, info: Dict[str, Any]) -> List[Dict[str, float]]:
        """Fine-tune and write (the trainer writes), or write the pruned model as is."""
        from generator.training.trainer import TrainConfig, train

        cfg = self.cfg
        if not cfg.finetune_epochs:
            save_pruned(Detector(det.model.cpu().eval(), det.family, det.names, self.imgsz, det.options), cfg.out,
                        extra=info)
            return []
        kd, loss, modules = self._extra(det.model)
        train_cfg = TrainConfig(data=str(cfg.data), model=str(cfg.checkpoint), out=str(cfg.out), imgsz=self.imgsz,
                                epochs=cfg.finetune_epochs, batch=cfg.batch, lr=cfg.lr, seed=cfg.seed,
                                workers=cfg.workers, device=cfg.device, amp=self.amp, time_budget=self._left())
        result = train(train_cfg, echo=self.echo, progress=self.progress, detector=det, extra_loss=loss,
                       extra_modules=modules, checkpoint_extra=info)
        release(kd)
        self.plan = result.plan
        self.metrics["finetuned"] = dict(result.metrics)
        return list(result.history)


    def _left(self) -> Optional[float]:
        """Seconds of ``time_budget`` left for fine-tuning (at least one: the trainer then runs one epoch)."""
        if self.time_budget is None:
            return None
        return max(1.0, self.time_budget - (time.time() - self.t_start))


def _resolve_device(name: str):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
