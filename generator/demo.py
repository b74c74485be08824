"""``tritonforge demo``: the whole path on the CPU, end to end.

synthetic data -> teacher -> student with and without distillation -> pruned and
fine-tuned with distillation -> INT8 Q/DQ -> embedded repository -> bundled Triton ->
held-out images through the SDK -> a report of every variant (table, JSON, PNG), with
the served mAP next to the offline mAP at the same thresholds.

The run is sized in time (``Budget.minutes``), not epochs: ``generator.demo_plan`` shares
the budget out from this machine's measured speed, each training step sizes its epochs to
its share, and the plan and what each step did go into the report.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from generator.demo_plan import (KD_COST, KD_SLACK, LATENCY_RUNS, MIN_STEP_S, TRAINING_STEPS, DemoPlan,
                                 estimate_fixed, inference_image_s)
from generator.errors import UsageError
from generator.loadtest import latency_summary


@dataclass(frozen=True)
class Budget:
    """What the demo does and how long it may take. Training is sized in time, not epochs:
    ``minutes`` for the whole run, split by ``generator.demo_plan`` (``shares``: teacher,
    student, distilled student, pruned fine-tune); ``max_epochs`` caps any one step."""

    minutes: float = 9.0
    # sized so that nine minutes on 2 cores (and half that speed) train past the point where
    # the detectors start to find objects: 2 of the 3 shapes, 160 px
    train_images: int = 400
    heldout_images: int = 100
    imgsz: int = 160
    classes: int = 2
    max_epochs: int = 60
    prune_ratio: float = 0.4
    batch: int = 8
    lr: float = 0.01
    # MobileNetV3 learns fastest from scratch here; in a 10-minute budget a yolo-n teacher
    # ends up weaker than the student (so distillation has nothing to give): the teacher is
    # the same family trained longer (born-again distillation)
    family: str = "mobilenetv3"
    student: str = "mobilenetv3"
    # half the training time to the teacher: distillation gives most to a student early in its
    # training, from a teacher well ahead of it (measured: at 7 student epochs of 18, KD ~ no KD)
    shares: Tuple[float, float, float, float] = (0.5, 0.12, 0.17, 0.21)
    calib_images: int = 64
    requests: int = 40
    latency_rounds: int = 5

    # the fixed-epoch recipe of earlier demos, for scripts that still train by epochs
    # (benchmarks/families.py, benchmarks/onnx_teacher.py)
    @property
    def epochs(self) -> int:
        return min(30, self.max_epochs)

    @property
    def student_epochs(self) -> int:
        return min(15, self.max_epochs)


MIN_SCORE_THRESHOLD = 0.01  # the lowest served score threshold the demo chooses

DEFAULT = Budget()
# one class: a few minutes of training learn one shape well enough to show every step
# and the students a larger share than in the default run: in 3 minutes they are what needs the epochs
# (measured on a quiet machine: distilled 0.048 vs plain 0.006 mAP50-95 with these shares; 0.000 vs
# 0.000 with the default's)
QUICK = Budget(minutes=3.0, train_images=160, heldout_images=32, imgsz=128, classes=1, calib_images=16, requests=10,
               latency_rounds=3, shares=(0.42, 0.16, 0.22, 0.20))


def _check_out(out: Path) -> bool:
    """A non-empty ``out`` is replaced only if tritonforge generated it."""
    if out.is_dir() and any(out.iterdir()):
        if not (out / "tritonforge.json").is_file():
            raise UsageError(f"{out} is not empty and is not a tritonforge repository; choose another --out")
        return True
    return False


def heldout_set(folder: Path, images: int, imgsz: int, classes: int = 3):
    """Synthetic images from another seed than training; both of its splits, merged."""
    from generator.data.dataset import load_dataset
    from generator.data.records import DetectionData
    from generator.data.synth import synthesize

    spec = synthesize(folder, images, seed=1, imgsz=imgsz, classes=classes, val_fraction=0.5, progress=False,
                      force=True)
    parts = [load_dataset(spec, split) for split in ("train", "val")]
    return DetectionData(parts[0].names, parts[0].samples + parts[1].samples, f"{folder} (held out)")


def run_demo(out: Path, budget: Budget = DEFAULT, work: Optional[Path] = None, keep_server: bool = False,
             echo: Callable[[str], None] = print) -> dict:
    """Run every step; returns the report dict (also written to ``out/report.json``)."""
    out = Path(out)
    force = _check_out(out)
    if budget.minutes <= 0:
        raise UsageError(f"--budget must be a positive number of minutes, got {budget.minutes}")
    if work is not None:
        Path(work).mkdir(parents=True, exist_ok=True)
        return _run(out, force, budget, Path(work), keep_server, echo)
    with tempfile.TemporaryDirectory(prefix="tritonforge-demo-") as tmp:
        return _run(out, force, budget, Path(tmp), keep_server, echo)


def _run(out: Path, force: bool, budget: Budget, work: Path, keep_server: bool, echo) -> dict:
    from generator.data.synth import synthesize

    t_start = time.time()
    b = budget
    data_yaml = synthesize(work / "data", b.train_images, seed=0, imgsz=b.imgsz, classes=b.classes, progress=False,
                           force=True)
    heldout = heldout_set(work / "heldout", b.heldout_images, b.imgsz, b.classes)
    echo(f"[1/8] synthetic shapes ({b.classes} classes, {b.imgsz} px): {b.train_images} images for training "
         f"({data_yaml.parent}), {len(heldout.samples)} held-out images from another seed")
    plan = make_plan(b, t_start)
    plan.lap("data")
    echo(f"      {plan.summary()}")
    if plan.training_left() < len(TRAINING_STEPS) * MIN_STEP_S:
        echo(f"      the budget leaves (almost) no time for training on this machine: each training step runs one "
             f"epoch, and the demo will take longer than {b.minutes:g} min")
    ckpts = _compress_chain(data_yaml, b, work, plan, echo)
    return _serve_and_report(out, force, b, work, heldout, ckpts, keep_server, echo, plan)


def make_plan(budget: Budget, t_start: float) -> DemoPlan:
    """Measure this machine's inference speed; estimate the fixed steps; share out the rest."""
    image_s = inference_image_s(budget.student, budget.imgsz, budget.classes, budget.batch)
    fixed = estimate_fixed(image_s, budget.heldout_images, budget.calib_images, budget.requests,
                           latency_rounds=budget.latency_rounds)
    return DemoPlan(budget.minutes * 60, fixed, dict(zip(TRAINING_STEPS, budget.shares)), image_s, t_start)


def _compress_chain(data_yaml: Path, budget: Budget, work: Path, plan: DemoPlan, echo) -> Dict[str, Path]:
    """teacher -> student (no KD) and student_kd -> pruned_kd, each sized to its share of the
    time left; returns the checkpoints."""
    from generator.compress.config import DistillConfig, PruneConfig
    from generator.compress.distill import run_distill
    from generator.compress.prune.run import prune_and_finetune
    from generator.training.trainer import TrainConfig, train

    quiet = lambda line: None  # noqa: E731
    ckpts = {name: work / f"{name}.pt" for name in TRAINING_STEPS}
    b = budget
    common = dict(data=str(data_yaml), imgsz=b.imgsz, batch=b.batch, lr=b.lr, epochs=b.max_epochs)
    seconds = plan.budget_for("teacher")
    r = train(TrainConfig(model=b.family, out=str(ckpts["teacher"]), time_budget=seconds, **common), echo=quiet)
    plan.record("teacher", seconds, r.epochs, r.seconds, r.plan)
    echo(f"[2/8] teacher {b.family}: {_sized(r, seconds)}, val mAP50 {r.metrics['map50']:.3f}")
    # the distilled student's share is the plain one's times KD_COST: room for the same epochs
    seconds = plan.budget_for("student")
    r = train(TrainConfig(model=b.student, out=str(ckpts["student"]), time_budget=seconds, **common), echo=quiet)
    plan.record("student", seconds, r.epochs, r.seconds, r.plan)
    echo(f"[3/8] student {b.student} without distillation: {_sized(r, seconds)}, val mAP50 {r.metrics['map50']:.3f}")
    # the same epochs as the plain student; the time budget only guards against a slowed machine
    epochs, seconds = r.epochs, max(plan.budget_for("student_kd"), r.seconds * KD_COST * KD_SLACK)
    r = run_distill(DistillConfig(teacher=ckpts["teacher"], student=b.student, data=str(data_yaml),
                                  out=ckpts["student_kd"], epochs=epochs, imgsz=b.imgsz, batch=b.batch, lr=b.lr),
                    echo=quiet, time_budget=seconds)
    plan.record("student_kd", seconds, r.epochs, r.seconds, r.plan)
    same = "the same epochs" if r.epochs == epochs else f"{r.epochs} of its {epochs} epochs (the machine slowed)"
    echo(f"      student {b.student} distilled from the teacher, {same}: {r.seconds:.0f} s, "
         f"val mAP50 {r.metrics['map50']:.3f}")
    seconds = plan.budget_for("pruned_kd")
    cfg = PruneConfig(checkpoint=ckpts["student_kd"], data=data_yaml, ratio=b.prune_ratio, importance="lamp",
                      global_pruning=True, round_to=8, steps=1, finetune_epochs=b.max_epochs, out=ckpts["pruned_kd"],
                      teacher=ckpts["student_kd"], imgsz=b.imgsz, batch=b.batch, evaluate=False)
    p = prune_and_finetune(cfg, echo=quiet, progress=False, time_budget=seconds)
    epochs = len(p["history"])
    plan.record("pruned_kd", seconds, epochs, p["seconds"], p["plan"])
    rep = p["report"]
    echo(f"[4/8] pruned student_kd (global LAMP, ratio {b.prune_ratio}, multiples of 8) to "
         f"{rep['gflops_after'] / rep['gflops_before']:.0%} of its GFLOPs, fine-tuned {epochs} epochs "
         f"with distillation from the unpruned model: {p['seconds']:.0f} s of {seconds:.0f} s")
    plan.lap("training")
    return ckpts


def _sized(result, seconds: float) -> str:
    """"N epochs in S s (budget B s, X s/batch)" for a time-sized training step."""
    speed = f", {result.plan['batch_s']:.2f} s/batch" if result.plan else ""
    return f"{result.epochs} epoch{'s' if result.epochs != 1 else ''} in {result.seconds:.0f} s (budget {seconds:.0f} s{speed})"


def _export_variants(ckpts: Dict[str, Path], budget: Budget, work: Path, plan: DemoPlan, echo) -> Dict[str, dict]:
    """ONNX for every checkpoint (checked on held-out images), plus the INT8 Q/DQ of pruned_kd.

    Each output's reproducer records the ``tritonforge`` command that does the same step
    (``tritonforge export ...``, ``tritonforge quantize ...``), not ``tritonforge demo``.
    """
    from generator.compress.calibration import calibration_images
    from generator.compress.config import QuantizeConfig
    from generator.compress.quantize import quantize_onnx
    from generator.export.onnx_export import check_images_from, export_onnx
    from generator.models.checkpoint import load_checkpoint
    from generator.reproducer import command_line

    s, heldout_yaml = budget.imgsz, work / "heldout" / "data.yaml"
    check = check_images_from(heldout_yaml, s)  # what `tritonforge export --data` checks on
    variants, worst = {}, 0.0
    for name, ckpt in ckpts.items():
        det, onnx_path = load_checkpoint(ckpt), work / f"{name}.onnx"
        command = command_line("export", {"model": ckpt, "out": onnx_path, "data": heldout_yaml})
        report = export_onnx(det, onnx_path, check_images=check, command=command)
        worst = max(worst, report.max_abs_diff)
        variants[name] = {"onnx": onnx_path, "model": det.model}
    echo(f"[5/8] exported {len(ckpts)} ONNX models (max |onnxruntime - pytorch| on held-out images: {worst:.2e})")
    plan.lap("export")
    calib = calibration_images(work / "data", s, s, budget.calib_images)
    cfg = QuantizeConfig(method="entropy")
    command = command_line("quantize", {"onnx": variants["pruned_kd"]["onnx"], "data": work / "data",
                                        "samples": budget.calib_images, "method": cfg.method,
                                        "out": work / "int8.onnx"})
    q = quantize_onnx(variants["pruned_kd"]["onnx"], work / "int8.onnx", calib, cfg, command=command)
    variants["int8"] = {"onnx": work / "int8.onnx", "model": variants["pruned_kd"]["model"]}
    echo(f"      INT8 Q/DQ of pruned_kd: {len(calib)} calibration images, {len(q.excluded)} head/decode nodes kept float")
    plan.lap("quantize")
    return variants


def _serve_and_report(out, force, budget, work, heldout, ckpts, keep_server, echo, plan: DemoPlan) -> dict:
    from generator.evaluation.coco import evaluate
    from generator.evaluation.predictors import Thresholds, offline_detector
    from generator.runners import open_runner
    from generator.report import format_table, measure_variants, write_report
    from generator.repository.generate import generate
    from generator.repository.options import RepositoryOptions

    s = budget.imgsz
    variants = _export_variants(ckpts, budget, work, plan, echo)
    int8 = open_runner("onnxruntime", variants["int8"]["onnx"])
    opts = _serving_options(int8, work, s, echo)
    repo = generate(variants["int8"]["onnx"], "embedded", out, opts, force=force)
    echo(f"[6/8] wrote the embedded repository {repo.path} serving the int8 variant: {', '.join(repo.models)}")
    served_thr = Thresholds(opts.score_threshold, opts.iou_threshold, opts.max_detections)
    offline_served_thr = evaluate(heldout, offline_detector(int8, s, s, served_thr), progress=False)
    served, latency = _served(repo, heldout, budget, keep_server, echo, plan)
    rows = measure_variants(_report_entries(variants), heldout, s, s, echo=echo, rounds=budget.latency_rounds,
                            runs=LATENCY_RUNS)
    plan.lap("report")
    echo("[8/8] report (held-out set; mAP at COCO's protocol: score >= 0.001, IoU 0.7, 300 detections)")
    echo(format_table(rows))
    echo(f"      served int8 at its thresholds (score {opts.score_threshold}, IoU {opts.iou_threshold}): "
         f"mAP@0.5:0.95 {served.map50_95:.4f}, mAP@0.5 {served.map50:.4f}; offline at the same thresholds: "
         f"{offline_served_thr.map50_95:.4f}, {offline_served_thr.map50:.4f}")
    extra = {"budget": {**asdict(budget), "plan": plan.to_json()}, "served": served.to_json(),
             "offline": {"onnx_at_served_thresholds": offline_served_thr.to_json()},
             "serving_latency_batch1": latency, "seconds": round(plan.elapsed(), 1)}
    path = write_report(rows, out, extra, echo)
    echo(f"      {_headline(rows)}")
    echo(f"      wrote {path} and {path.with_suffix('.png')} ({extra['seconds']:.0f} s in all, "
         f"budget {budget.minutes:g} min)")
    return {"variants": rows, **extra}


def _headline(rows) -> str:
    """The report's headline, or why there is none (a teacher with no mAP to compare with)."""
    from generator.report import headline

    try:
        return headline(rows)
    except ValueError as exc:
        return f"no headline: {exc}"


def _serving_options(runner, work: Path, imgsz: int, echo):
    """The repository's options; the score threshold lowered to the F1-best one on the
    validation split when a briefly trained model's scores sit below the default."""
    from generator.data.dataset import load_dataset
    from generator.demo_threshold import choose_threshold
    from generator.evaluation.predictors import Thresholds, offline_detector
    from generator.repository.options import RepositoryOptions

    opts = RepositoryOptions()
    val = load_dataset(work / "data" / "data.yaml", "val")
    low = Thresholds(MIN_SCORE_THRESHOLD, opts.iou_threshold, opts.max_detections)
    choice = choose_threshold(val, offline_detector(runner, imgsz, imgsz, low))
    if choice.threshold >= opts.score_threshold:
        return opts
    threshold = round(max(MIN_SCORE_THRESHOLD, choice.threshold), 3)
    echo(f"      serving score threshold {threshold} instead of {opts.score_threshold}: the best F1 on the "
         f"validation split ({choice.f1:.2f}; precision {choice.precision:.2f}, recall {choice.recall:.2f}) for a "
         f"model this briefly trained, whose scores stay low")
    return replace(opts, score_threshold=threshold)


def _report_entries(variants: Dict[str, dict]) -> Dict[str, dict]:
    """The rows of the report: every variant on ONNX Runtime, plus the headline's two ends:
    the teacher in PyTorch eager (what the user started from) and the INT8 model on OpenVINO
    where it is installed (``write_report`` then adds the headline and the trade-off plot)."""
    from generator.runtime.runners import available_runtimes

    entries = {name: {**v, "variant": name} for name, v in variants.items()}
    entries["teacher (pytorch)"] = {**variants["teacher"], "runtime": "pytorch", "variant": "teacher"}
    if "openvino" in available_runtimes(variants["int8"]["onnx"]):
        entries["int8 (openvino)"] = {**variants["int8"], "runtime": "openvino", "variant": "int8"}
    return entries


def _served(repo, heldout, budget, keep_server, echo, plan: DemoPlan):
    from client import DetectionClient
    from generator.evaluation.coco import evaluate
    from generator.evaluation.predictors import endpoint_detector
    from generator.serve.server import TritonServer, free_port

    server = TritonServer(repo.path, free_port(), free_port(), free_port())
    t0 = time.perf_counter()
    server.start().wait_ready()
    e = server.endpoints
    echo(f"[7/8] Triton ready in {time.perf_counter() - t0:.1f} s (HTTP {e.http}, gRPC {e.grpc}); "
         f"sending {len(heldout.samples)} held-out images")
    try:
        served = evaluate(heldout, endpoint_detector(e.grpc, "grpc", repo.ensemble), progress=False)
        latency = {}
        images = [x.image_path for x in heldout.samples[:8]]
        for protocol, url in (("grpc", e.grpc), ("http", e.http)):
            with DetectionClient(url, protocol=protocol, model=repo.ensemble) as c:
                c.detect(images[0])
                times = []
                for i in range(budget.requests):
                    start = time.perf_counter()
                    c.detect(images[i % len(images)])
                    times.append((time.perf_counter() - start) * 1000)
                latency[protocol] = latency_summary(times)
        for protocol, summary in latency.items():
            echo(f"      {protocol:<5} batch-1 end-to-end latency: p50 {summary['p50_ms']:.1f} ms, "
                 f"p90 {summary['p90_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms")
        plan.lap("serve")
        if keep_server:
            echo("server left running; Ctrl-C stops it")
            while server.process.poll() is None:
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return served, latency


def budget_from(quick: bool, **overrides) -> Budget:
    """The default or quick budget with the options the user gave."""
    base = QUICK if quick else DEFAULT
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
