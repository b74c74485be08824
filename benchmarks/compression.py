"""The headline: a big teacher distilled into a small student, pruned and INT8, on every runtime, in one run.

Synthetic shapes -> teacher (``yolo-s``) -> student (``yolo-n``) without and with knowledge
distillation from the teacher -> the distilled student pruned (global LAMP) and fine-tuned
with distillation from its unpruned self -> INT8 Q/DQ of it. Every variant then runs on every
runtime this host has (PyTorch eager, TorchScript when the exporter is there, ONNX Runtime,
OpenVINO, OpenVINO BF16 on CPUs with bfloat16 units), each row scored on held-out images from
another seed and timed at batch 1 and 8 in interleaved rounds (``report.measure_variants``).
Prints the table and "compressed vs teacher in PyTorch: N× faster, M% of its mAP"; writes
the rows as JSON and the speed-versus-mAP scatter with its Pareto front as PNG.

    python benchmarks/compression.py [--minutes 60] [--quick] [--out benchmarks/results/compression]
        [--imgsz 256] [--teacher yolo-s] [--student yolo-n] [--final ROW] [--amp off|on]

``--minutes`` is the budget of the whole run: training gets what is left after a reserve
for export, INT8 and measurement, shared between the steps by ``SHARES`` and re-split before
each step (what one step saves or overruns moves to the next); each step sizes its epochs
to its seconds by timing its first batches (``TrainConfig.time_budget``). The student
without distillation trains as many epochs as the distilled one, so the two differ only in
the teacher. ``--quick`` is a smoke run of a few minutes (tiny images, few of them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generator.atomic import write_text  # noqa: E402
from generator.report import (format_table, headline, headline_figures, measure_variants,  # noqa: E402
                              plot_tradeoff)

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = ("teacher", "student", "student_kd", "pruned_kd", "int8")
# shares of the training time; the plain student's is what it is expected to take (it trains
# the distilled student's epochs, each cheaper: no teacher forward pass)
SHARES = {"teacher": 0.40, "student_kd": 0.22, "student": 0.14, "pruned_kd": 0.24}
MIN_STEP_S = 20.0  # a step never gets less (it still completes at least one epoch)
TARGET_SPEEDUP, TARGET_KEPT = 5.0, 0.95  # issue 13: >= 5x the teacher in PyTorch at >= 95% of its mAP


@dataclass(frozen=True)
class Plan:
    """What the run does besides its time budget."""

    minutes: float = 60.0
    imgsz: int = 256
    train_images: int = 600
    heldout_images: int = 200
    batch: int = 8
    lr: float = 0.01
    teacher: str = "yolo-s"
    student: str = "yolo-n"
    prune_ratio: float = 0.4
    calib_images: int = 64
    reserve: float = 0.2  # of the budget: export, INT8 and measuring every row (~18 rows)
    quant_seconds: float = 30.0  # measured INT8 selection: timing the node groups
    rounds: int = 5
    runs: int = 6
    max_epochs: int = 300  # the time budget decides; this only caps it
    amp: str = "off"


FULL = Plan()
# a smoke run: every step and every row, each training step about one epoch (mAP near 0)
QUICK = Plan(minutes=6.0, imgsz=128, train_images=96, heldout_images=16, calib_images=16, reserve=0.5,
             quant_seconds=4.0, rounds=2, runs=2)


class Clock:
    """Training seconds per step: the time left before the reserve, shared by ``SHARES``."""

    def __init__(self, total_s: float, reserve_s: float):
        self.start = time.time()
        self.deadline = self.start + total_s - reserve_s
        self.shares = dict(SHARES)

    def budget(self, step: str) -> float:
        share = self.shares[step]
        left = sum(self.shares.values())
        del self.shares[step]
        return max(MIN_STEP_S, (self.deadline - time.time()) * share / left)

    def elapsed(self) -> float:
        return time.time() - self.start


def _timed(fn: Callable, *args, **kwargs):
    t0 = time.time()
    result = fn(*args, **kwargs)
    return result, round(time.time() - t0, 1)


def _quiet(_line: str) -> None:
    pass


def train_teacher(plan: Plan, data: Path, work: Path, seconds: float):
    from generator.training.trainer import TrainConfig, train

    cfg = TrainConfig(data=str(data), model=plan.teacher, out=str(work / "teacher.pt"), imgsz=plan.imgsz,
                      epochs=plan.max_epochs, batch=plan.batch, lr=plan.lr, amp=plan.amp, time_budget=seconds)
    return train(cfg, echo=_quiet, progress=False)


def train_student(plan: Plan, data: Path, work: Path, epochs: int):
    from generator.training.trainer import TrainConfig, train

    cfg = TrainConfig(data=str(data), model=plan.student, out=str(work / "student.pt"), imgsz=plan.imgsz,
                      epochs=epochs, batch=plan.batch, lr=plan.lr, amp=plan.amp)
    return train(cfg, echo=_quiet, progress=False)


def distill_student(plan: Plan, data: Path, work: Path, seconds: float):
    from generator.compress.config import DistillConfig
    from generator.compress.distill import run_distill

    cfg = DistillConfig(teacher=work / "teacher.pt", student=plan.student, data=str(data), out=work / "student_kd.pt",
                        epochs=plan.max_epochs, imgsz=plan.imgsz, batch=plan.batch, lr=plan.lr)
    return run_distill(cfg, echo=_quiet, progress=False, amp=plan.amp, time_budget=seconds)


def prune_student(plan: Plan, data: Path, work: Path, seconds: float) -> dict:
    """The demo's recipe: global LAMP, channels in multiples of 8, KD from the unpruned model."""
    from generator.compress.config import PruneConfig
    from generator.compress.prune.run import prune_and_finetune

    cfg = PruneConfig(checkpoint=work / "student_kd.pt", data=data, ratio=plan.prune_ratio, importance="lamp",
                      global_pruning=True, round_to=8, steps=1, finetune_epochs=plan.max_epochs,
                      out=work / "pruned_kd.pt", teacher=work / "student_kd.pt", imgsz=plan.imgsz, batch=plan.batch,
                      evaluate=False)
    return prune_and_finetune(cfg, echo=_quiet, progress=False, amp=plan.amp, time_budget=seconds)


def compress_chain(plan: Plan, data: Path, work: Path, clock: Clock, echo) -> Dict[str, dict]:
    """Train, distill, prune; returns per step: epochs, seconds, val mAP50, time-budget plan."""
    steps = {}
    r, s = _timed(train_teacher, plan, data, work, clock.budget("teacher"))
    steps["teacher"] = _step(r.epochs, s, r.metrics, r.plan)
    echo(f"[2/6] teacher {plan.teacher}: {_summary(steps['teacher'])}")
    r, s = _timed(distill_student, plan, data, work, clock.budget("student_kd"))
    steps["student_kd"] = _step(r.epochs, s, r.metrics, r.plan)
    echo(f"[3/6] student {plan.student} distilled from the teacher: {_summary(steps['student_kd'])}")
    clock.budget("student")  # its share is spent by training, not sized by it
    r, s = _timed(train_student, plan, data, work, r.epochs)
    steps["student"] = _step(r.epochs, s, r.metrics, None)
    echo(f"      student {plan.student} without distillation, same epochs: {_summary(steps['student'])}")
    p, s = _timed(prune_student, plan, data, work, clock.budget("pruned_kd"))
    rep = p["report"]
    steps["pruned_kd"] = _step(len(p.get("history") or []), s, (p.get("metrics") or {}).get("finetuned", {}),
                               p.get("plan"))
    steps["pruned_kd"]["gflops_kept"] = round(rep["gflops_after"] / rep["gflops_before"], 3)
    echo(f"[4/6] pruned student_kd (global LAMP, ratio {plan.prune_ratio}) to {steps['pruned_kd']['gflops_kept']:.0%} "
         f"of its GFLOPs, fine-tuned with KD: {_summary(steps['pruned_kd'])}")
    return steps


def _step(epochs: int, seconds: float, metrics: dict, budget_plan: Optional[dict]) -> dict:
    return {"epochs": int(epochs), "seconds": seconds, "val_map50": (metrics or {}).get("map50"),
            "time_budget": budget_plan}


def _summary(step: dict) -> str:
    m = step["val_map50"]
    chosen = step["time_budget"] or {}
    budget = f" (budget {chosen['budget_s']:.0f} s)" if chosen.get("budget_s") else ""
    score = "-" if m is None else f"{m:.3f}"
    return f"{step['epochs']} epochs in {step['seconds']:.0f} s{budget}, val mAP50 {score}"


def export_variants(plan: Plan, work: Path, echo) -> Dict[str, dict]:
    """ONNX (checked against PyTorch on held-out images) and TorchScript where the exporter
    exists, for every checkpoint; the INT8 Q/DQ of pruned_kd."""
    from generator.export.onnx_export import check_images_from, export_onnx
    from generator.models.checkpoint import load_checkpoint

    check = check_images_from(work / "heldout" / "data.yaml", plan.imgsz)
    to_torchscript = torchscript_exporter()
    variants = {}
    for name in VARIANTS[:-1]:
        det = load_checkpoint(work / f"{name}.pt")
        export_onnx(det, work / f"{name}.onnx", check_images=check)
        variants[name] = {"onnx": work / f"{name}.onnx", "model": det.model}
        if to_torchscript is not None:
            to_torchscript(det, work / f"{name}.torchscript", check_images=check)
            variants[name]["torchscript"] = work / f"{name}.torchscript"
    traced = "and TorchScript " if to_torchscript else ""
    echo(f"[5/6] exported ONNX {traced}for {len(variants)} models"
         + ("" if to_torchscript else " (no TorchScript exporter in this tritonforge: no torchscript rows)"))
    variants["int8"] = {"onnx": work / "int8.onnx", "model": variants["pruned_kd"]["model"]}
    variants["int8"]["quantize"] = quantize(plan, work, echo)
    return variants


def torchscript_exporter() -> Optional[Callable]:
    """``generator.export.torchscript``'s ``export_torchscript(det, out)``, if this tritonforge has it."""
    try:
        from generator.export import torchscript
    except ImportError:
        return None
    return getattr(torchscript, "export_torchscript", None)


def quantize(plan: Plan, work: Path, echo) -> dict:
    """INT8 Q/DQ of pruned_kd, node selection measured on the fastest INT8 runtime where the
    quantizer offers it (OpenVINO when installed)."""
    from generator.compress.calibration import calibration_images
    from generator.compress.config import QuantizeConfig
    from generator.compress.quantize import quantize_onnx
    from generator.runtime.runners import available_runtimes

    calib = calibration_images(work / "data", plan.imgsz, plan.imgsz, plan.calib_images)
    fields = {f.name for f in dataclasses.fields(QuantizeConfig)}
    options = {"method": "entropy"}
    if {"select", "runtime", "measure_seconds"} <= fields:
        runtime = "openvino" if "openvino" in available_runtimes(work / "pruned_kd.onnx") else "onnxruntime"
        options.update(select="measured", runtime=runtime, measure_seconds=plan.quant_seconds)
    (q, s) = _timed(quantize_onnx, work / "pruned_kd.onnx", work / "int8.onnx", calib, QuantizeConfig(**options))
    how = f", nodes selected by timing on {options['runtime']}" if "select" in options else ""
    echo(f"      INT8 Q/DQ of pruned_kd: {len(calib)} calibration images{how}, {len(q.excluded)} nodes kept float, "
         f"{s:.0f} s")
    return {**options, "calibration_images": int(len(calib)), "kept_float": len(q.excluded), "seconds": s}


def row_entries(variants: Dict[str, dict]) -> Dict[str, dict]:
    """measure_variants entries ``VARIANT (runtime)``: every variant on every runtime that can
    run it here (PyTorch eager for those with a module of their own: not the INT8 graph)."""
    from generator.runtime.runners import available_runtimes

    entries = {}
    for name, v in variants.items():
        runtimes = (["pytorch"] if name != "int8" else []) + available_runtimes(v["onnx"], v.get("torchscript"))
        for runtime in runtimes:
            # the module gives every row of a variant the same params and GFLOPs (int8: pruned_kd's)
            entries[f"{name} ({runtime})"] = {"runtime": runtime, "model": v["model"], "onnx": v["onnx"],
                                              "torchscript": v.get("torchscript"), "variant": name}
    return entries


def _unavailable(variants: Dict[str, dict]) -> Dict[str, str]:
    """Runtimes of the registry this host cannot run, and why (never a faked figure)."""
    from generator.runtime.runners import available_runtimes

    why = {}
    have = set(available_runtimes(variants["teacher"]["onnx"], variants["teacher"].get("torchscript")))
    if "openvino" not in have:
        why["openvino"] = "the openvino package is not installed (pip install openvino)"
    elif "openvino-bf16" not in have:
        from generator.runtime.runners.openvino_runner import cpu_capabilities

        caps = ", ".join(cpu_capabilities())
        why["openvino-bf16"] = f"this CPU has no bfloat16 units (OpenVINO capabilities: {caps})"
    if "torchscript" not in have:
        why["torchscript"] = "no TorchScript file (generator.export.torchscript missing)"
    return why


def measure(plan: Plan, variants: Dict[str, dict], heldout, echo) -> Tuple[List[dict], Dict[str, str]]:
    """Every row measured in one run; and the runtimes left out, with why."""
    from generator.bench import cpu_threads

    left_out = _unavailable(variants)
    for runtime, why in left_out.items():
        echo(f"      {runtime}: skipped, {why}")
    rows = measure_variants(row_entries(variants), heldout, plan.imgsz, plan.imgsz, echo=echo, threads=cpu_threads(),
                            rounds=plan.rounds, runs=plan.runs)
    return rows, left_out


def prepare_data(plan: Plan, work: Path, echo):
    """The training set (its data.yaml) and the held-out set (another seed, both splits)."""
    from generator.data.synth import synthesize
    from generator.demo import heldout_set

    data = synthesize(work / "data", plan.train_images, seed=0, imgsz=plan.imgsz, progress=False, force=True)
    heldout = heldout_set(work / "heldout", plan.heldout_images, plan.imgsz)
    echo(f"[1/6] synthetic shapes at {plan.imgsz} px: {plan.train_images} images for training, "
         f"{len(heldout.samples)} held out (another seed)")
    return data, heldout


def run(plan: Plan, work: Path, final: Optional[str], echo=print) -> dict:
    """Every step; returns the JSON payload (rows, headline, what each step chose)."""
    clock = Clock(plan.minutes * 60, plan.minutes * 60 * plan.reserve)
    machine = _machine()
    data, heldout = prepare_data(plan, work, echo)
    steps = compress_chain(plan, data, work, clock, echo)
    variants = export_variants(plan, work, echo)
    t0 = time.time()
    rows, left_out = measure(plan, variants, heldout, echo)
    echo(f"[6/6] measured {len(rows)} rows in {time.time() - t0:.0f} s (held-out mAP at COCO's protocol; "
         f"latency: median of interleaved rounds)")
    payload = {"config": asdict(plan), "steps": steps, "quantize": variants["int8"]["quantize"],
               "machine": machine, "runtimes_left_out": left_out, "variants": rows}
    try:
        payload.update(headline=headline(rows, final=final), headline_figures=headline_figures(rows, final=final))
    except ValueError as exc:
        payload["headline"] = f"no headline: {exc}"
    payload["seconds"] = round(clock.elapsed(), 1)
    payload["machine"]["load_average_end"] = _load()
    return payload


def _load() -> Optional[List[float]]:
    """1, 5 and 15-minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _machine() -> dict:
    """What the ratios depend on (no host names or paths)."""
    info = {"cpu_count": os.cpu_count(), "load_average_start": _load()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        from generator.runtime.runners.openvino_runner import cpu_capabilities

        info["openvino_capabilities"] = cpu_capabilities()
    except ImportError:
        pass
    return info


def report(payload: dict, out: Path, echo=print) -> None:
    """Table, headline, target check; ``out``.json and ``out``.png."""
    rows = payload["variants"]
    echo(format_table(rows))
    echo(payload["headline"])
    h = payload.get("headline_figures")
    if h:
        met = h["speedup_b8"] >= TARGET_SPEEDUP and h["map_kept"] >= TARGET_KEPT
        echo(f"target >= {TARGET_SPEEDUP:.0f}x at >= {TARGET_KEPT:.0%} of the teacher's mAP50-95: "
             f"{'met' if met else 'not met'}")
        payload["target_met"] = met
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out.with_suffix(".json"), out.with_suffix(".png")
    write_text(json_path, json.dumps(payload, indent=2, default=str) + "\n")
    plot_tradeoff(rows, png_path, title=payload["headline"])
    budget = payload["config"]["minutes"] * 60
    late = payload["seconds"] - budget
    over = f", {late:.0f} s over the {budget:.0f} s budget" if late > 0 else ""
    echo(f"wrote {json_path} and {png_path} ({payload['seconds']:.0f} s in all{over})")


def _warn_if_busy(echo) -> None:
    """Ratios measured side by side survive a steady load, not other processes competing for
    the cores: PyTorch's OpenMP threads then wait on each other (seconds per call)."""
    load, cores = _load(), os.cpu_count() or 1
    if load and load[0] > 0.5 * cores:
        echo(f"warning: load average {load[0]:.1f} on {cores} cores before starting: other processes compete "
             "for the cores; latencies (PyTorch's above all) will not be this machine's")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=None,
                    help=f"budget of the whole run (default {FULL.minutes:.0f}; {QUICK.minutes:.0f} with --quick)")
    ap.add_argument("--quick", action="store_true", help="a smoke run of a few minutes: tiny images, few of them")
    ap.add_argument("--out", type=Path, default=None,
                    help="output path without suffix: .json and .png are written (default benchmarks/results/"
                         "compression, compression-quick with --quick)")
    ap.add_argument("--imgsz", type=int, default=None)
    ap.add_argument("--teacher", default=None, help=f"teacher family (default {FULL.teacher})")
    ap.add_argument("--student", default=None, help=f"student family (default {FULL.student})")
    ap.add_argument("--final", default=None,
                    help="the row (or variant) the headline compares; default the fastest compressed row on the "
                         "Pareto front")
    ap.add_argument("--amp", choices=("off", "on"), default="off", help="mixed-precision training where it pays")
    ap.add_argument("--work", type=Path, default=None, help="keep data and models here (default: a temporary folder)")
    return ap.parse_args(argv)


def plan_from(args: argparse.Namespace) -> Plan:
    base = QUICK if args.quick else FULL
    given = {"minutes": args.minutes, "imgsz": args.imgsz, "teacher": args.teacher, "student": args.student,
             "amp": args.amp}
    return replace(base, **{k: v for k, v in given.items() if v is not None})


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    plan = plan_from(args)
    out = args.out or RESULTS / ("compression-quick" if args.quick else "compression")
    print(f"budget {plan.minutes:.0f} min on {os.cpu_count()} cores: {plan.teacher} teacher, {plan.student} student, "
          f"{plan.imgsz} px", flush=True)
    echo = lambda line: print(line, flush=True)  # noqa: E731
    _warn_if_busy(echo)
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        payload = run(plan, args.work, args.final, echo)
    else:
        with tempfile.TemporaryDirectory(prefix="tritonforge-compression-") as tmp:
            payload = run(plan, Path(tmp), args.final, echo)
    report(payload, out, echo)


if __name__ == "__main__":
    main()
