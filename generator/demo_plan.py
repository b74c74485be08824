"""The demo's budget in time: what each step may spend, decided from measured speed.

The demo has a budget in minutes. Its fixed costs (export, quantization, serving,
measuring the variants) are estimated up front from a timed inference pass of the student
family; what remains goes to the four training steps in fixed shares. Each step's share
is taken of the time that is *left* when it starts, so a step that ran long or short
moves the others; within its share, the trainer sizes its epochs from its own measured
speed (``generator.training.budget``).

The two students are compared at equal epochs: the plain student gets its share, the
distilled one then trains the same epochs (a distillation epoch costs ``KD_COST`` plain
ones: the teacher's forward pass), with its share as a cap that shortens it only when
the machine got slower.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Optional

TRAINING_STEPS = ("teacher", "student", "student_kd", "pruned_kd")
KD_COST = 1.35  # a distillation epoch / a plain one, same-family teacher (measured 1.25-1.45 on 2 cores)
KD_SLACK = 1.2  # the distilled student's time cap over the plain one's time x KD_COST
MIN_STEP_S = 5.0  # a step never gets less: the trainer then runs one epoch
MARGIN = 0.03  # of the budget, for the estimate's misses
LATENCY_RUNS = 6  # report.measure_variants' runs per round


@dataclass(frozen=True)
class FixedCosts:
    """The steps after training, in seconds: a constant part (server start-up, exports'
    tracing, process overheads) and a part proportional to inference time per image."""

    export_s: float
    quantize_s: float
    serve_s: float
    report_s: float

    @property
    def total(self) -> float:
        return self.export_s + self.quantize_s + self.serve_s + self.report_s

    def to_json(self) -> Dict[str, float]:
        return {k: round(v, 1) for k, v in vars(self).items()}


def estimate_fixed(image_s: float, heldout: int, calib: int, requests: int, checkpoints: int = 4,
                   variants: int = 5, latency_rounds: int = 5) -> FixedCosts:
    """The fixed costs for ``image_s`` seconds per image of (PyTorch, fp32, batch 8)
    inference; constants and factors fitted to the phases of measured demo runs (2-core x86)."""
    held = heldout * image_s
    timed = latency_rounds * LATENCY_RUNS * 9 * image_s  # images through each variant at batch 1 and 8
    return FixedCosts(
        export_s=checkpoints * (1.7 + image_s * 85),  # tracing, ONNX checker, PyTorch vs ORT on 8 images
        quantize_s=1.5 + calib * image_s * 3.5,  # calibration passes with the activations as outputs
        serve_s=3.5 + held * 1.7 + requests * 2 * image_s,  # Triton start-up, held-out set through gRPC
        report_s=1.0 + variants * (1.5 + held + timed * 0.13),  # per variant: ORT session, mAP, latency rounds
    )


@dataclass
class DemoPlan:
    """The budget, the fixed costs' estimate, the training shares, and, as the demo runs,
    each step's budget and what it did."""

    budget_s: float
    fixed: FixedCosts
    shares: Dict[str, float]
    image_s: float
    t_start: float = field(default_factory=time.time)
    steps: Dict[str, dict] = field(default_factory=dict)
    actual: Dict[str, float] = field(default_factory=dict)

    def elapsed(self) -> float:
        return time.time() - self.t_start

    def training_left(self) -> float:
        """Seconds left for training: the budget less what was spent and the fixed costs to come."""
        return self.budget_s * (1 - MARGIN) - self.elapsed() - self.fixed.total

    def budget_for(self, step: str) -> float:
        """``step``'s share of the training time left (shares of the steps still to run)."""
        todo = [s for s in TRAINING_STEPS if s not in self.steps and s != step] + [step]
        share = self.shares[step] / sum(self.shares[s] for s in todo)
        return max(MIN_STEP_S, self.training_left() * share)

    def lap(self, phase: str) -> None:
        """Record the seconds ``phase`` took: since the previous lap (or the start)."""
        self.actual[phase] = self.elapsed() - sum(self.actual.values())

    def record(self, step: str, budget_s: float, result_epochs: int, seconds: float,
               plan: Optional[dict]) -> None:
        """What a training step was given and did (its ``EpochPlan`` when time-sized)."""
        self.steps[step] = {"budget_s": round(budget_s, 1), "epochs": int(result_epochs),
                            "seconds": round(seconds, 1), "time_sizing": plan}

    def summary(self) -> str:
        f = self.fixed
        train_s = self.training_left()
        parts = ", ".join(f"{name} {share:.0%}" for name, share in self.shares.items())
        return (f"budget {self.budget_s / 60:.1f} min: measured {self.image_s * 1000:.1f} ms/image inference; "
                f"fixed steps estimated at {f.total:.0f} s (export {f.export_s:.0f}, quantize {f.quantize_s:.0f}, "
                f"serve {f.serve_s:.0f}, report {f.report_s:.0f}); {train_s:.0f} s for training ({parts})")

    def to_json(self) -> dict:
        return {"budget_s": round(self.budget_s, 1), "inference_ms_per_image": round(self.image_s * 1000, 2),
                "fixed_estimate_s": self.fixed.to_json(), "shares": dict(self.shares), "steps": dict(self.steps),
                "actual_s": {k: round(v, 1) for k, v in self.actual.items()}, "seconds": round(self.elapsed(), 1)}


def inference_image_s(family: str, imgsz: int, classes: int, batch: int = 8, reps: int = 3) -> float:
    """Seconds per image of a fresh ``family`` detector's fp32 inference at ``imgsz`` (best
    of ``reps`` batches, after one untimed): the demo's measure of this machine's speed."""
    import torch

    from generator.models.checkpoint import build_detector

    model = build_detector(family, classes, imgsz).model.eval().to(memory_format=torch.channels_last)
    x = torch.rand(batch, 3, imgsz, imgsz).to(memory_format=torch.channels_last)
    best = float("inf")
    with torch.no_grad():
        model(x)
        for _ in range(reps):
            t0 = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - t0)
    return best / batch
