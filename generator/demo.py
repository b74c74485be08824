"""``tritonforge demo``: the whole path on the CPU, end to end.

synthetic data -> teacher -> student with and without distillation -> pruned and
fine-tuned with distillation -> INT8 Q/DQ -> embedded repository -> bundled Triton ->
held-out images through the SDK -> a report of every variant (table, JSON, PNG), with
the served mAP next to the offline mAP at the same thresholds.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, Optional

from generator.errors import UsageError
from generator.loadtest import latency_summary


@dataclass(frozen=True)
class Budget:
    """How much work the demo does; the defaults fit the documented time limits on 2 cores."""

    train_images: int = 500
    heldout_images: int = 200
    imgsz: int = 256
    epochs: int = 30  # teacher
    student_epochs: int = 15  # student and student_kd alike
    finetune_epochs: int = 6  # after pruning
    prune_ratio: float = 0.4
    batch: int = 8
    lr: float = 0.01
    # MobileNetV3 learns fastest from scratch here; in a 10-minute budget a yolo-n teacher
    # ends up weaker than the student (so distillation has nothing to give): the teacher is
    # the same family trained twice as long (born-again distillation)
    family: str = "mobilenetv3"
    student: str = "mobilenetv3"
    calib_images: int = 64
    requests: int = 40


DEFAULT = Budget()
QUICK = Budget(train_images=160, heldout_images=32, imgsz=128, epochs=30, student_epochs=8, finetune_epochs=2,
               calib_images=16, requests=10)


def _check_out(out: Path) -> bool:
    """A non-empty ``out`` is replaced only if tritonforge generated it."""
    if out.is_dir() and any(out.iterdir()):
        if not (out / "tritonforge.json").is_file():
            raise UsageError(f"{out} is not empty and is not a tritonforge repository; choose another --out")
        return True
    return False


def heldout_set(folder: Path, images: int, imgsz: int):
    """Synthetic images from another seed than training; both of its splits, merged."""
    from generator.data.dataset import load_dataset
    from generator.data.records import DetectionData
    from generator.data.synth import synthesize

    spec = synthesize(folder, images, seed=1, imgsz=imgsz, val_fraction=0.5, progress=False, force=True)
    parts = [load_dataset(spec, split) for split in ("train", "val")]
    return DetectionData(parts[0].names, parts[0].samples + parts[1].samples, f"{folder} (held out)")


def run_demo(out: Path, budget: Budget = DEFAULT, work: Optional[Path] = None, keep_server: bool = False,
             echo: Callable[[str], None] = print) -> dict:
    """Run every step; returns the report dict (also written to ``out/report.json``)."""
    out = Path(out)
    force = _check_out(out)
    if work is not None:
        Path(work).mkdir(parents=True, exist_ok=True)
        return _run(out, force, budget, Path(work), keep_server, echo)
    with tempfile.TemporaryDirectory(prefix="tritonforge-demo-") as tmp:
        return _run(out, force, budget, Path(tmp), keep_server, echo)


def _run(out: Path, force: bool, budget: Budget, work: Path, keep_server: bool, echo) -> dict:
    from generator.data.synth import synthesize

    t_start = time.time()
    data_yaml = synthesize(work / "data", budget.train_images, seed=0, imgsz=budget.imgsz, progress=False, force=True)
    heldout = heldout_set(work / "heldout", budget.heldout_images, budget.imgsz)
    echo(f"[1/8] synthetic shapes: {budget.train_images} images for training ({data_yaml.parent}), "
         f"{len(heldout.samples)} held-out images from another seed")
    ckpts = _compress_chain(data_yaml, budget, work, echo)
    return _serve_and_report(out, force, budget, work, heldout, ckpts, keep_server, echo, t_start)


def _compress_chain(data_yaml: Path, budget: Budget, work: Path, echo) -> Dict[str, Path]:
    """teacher -> student (no KD) and student_kd -> pruned_kd; returns the checkpoints."""
    from generator.compress.config import DistillConfig, PruneConfig
    from generator.compress.distill import run_distill
    from generator.compress.prune.run import prune_and_finetune
    from generator.training.trainer import TrainConfig, train

    quiet = lambda line: None  # noqa: E731
    ckpts = {name: work / f"{name}.pt" for name in ("teacher", "student", "student_kd", "pruned_kd")}
    b = budget
    common = dict(data=str(data_yaml), imgsz=b.imgsz, batch=b.batch, lr=b.lr)
    r = train(TrainConfig(model=b.family, out=str(ckpts["teacher"]), epochs=b.epochs, **common), echo=quiet)
    echo(f"[2/8] teacher {b.family}: {b.epochs} epochs in {r.seconds:.0f} s, val mAP50 {r.metrics['map50']:.3f}")
    r = train(TrainConfig(model=b.student, out=str(ckpts["student"]), epochs=b.student_epochs, **common), echo=quiet)
    echo(f"[3/8] student {b.student} without distillation: {b.student_epochs} epochs in {r.seconds:.0f} s, "
         f"val mAP50 {r.metrics['map50']:.3f}")
    r = run_distill(DistillConfig(teacher=ckpts["teacher"], student=b.student, data=str(data_yaml),
                                  out=ckpts["student_kd"], epochs=b.student_epochs, imgsz=b.imgsz, batch=b.batch,
                                  lr=b.lr), echo=quiet)
    echo(f"      student {b.student} distilled from the teacher: {r.seconds:.0f} s, val mAP50 {r.metrics['map50']:.3f}")
    cfg = PruneConfig(checkpoint=ckpts["student_kd"], data=data_yaml, ratio=b.prune_ratio, importance="lamp",
                      global_pruning=True, round_to=8, steps=1, finetune_epochs=b.finetune_epochs,
                      out=ckpts["pruned_kd"], teacher=ckpts["student_kd"], imgsz=b.imgsz, batch=b.batch)
    p = prune_and_finetune(cfg, echo=quiet, progress=False)
    rep = p["report"]
    echo(f"[4/8] pruned student_kd (global LAMP, ratio {b.prune_ratio}, multiples of 8) to "
         f"{rep['gflops_after'] / rep['gflops_before']:.0%} of its GFLOPs, fine-tuned {b.finetune_epochs} epochs "
         f"with distillation from the unpruned model: {p['seconds']:.0f} s")
    return ckpts


def _export_variants(ckpts: Dict[str, Path], budget: Budget, work: Path, echo) -> Dict[str, dict]:
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
    calib = calibration_images(work / "data", s, s, budget.calib_images)
    cfg = QuantizeConfig(method="entropy")
    command = command_line("quantize", {"onnx": variants["pruned_kd"]["onnx"], "data": work / "data",
                                        "samples": budget.calib_images, "method": cfg.method,
                                        "out": work / "int8.onnx"})
    q = quantize_onnx(variants["pruned_kd"]["onnx"], work / "int8.onnx", calib, cfg, command=command)
    variants["int8"] = {"onnx": work / "int8.onnx", "model": variants["pruned_kd"]["model"]}
    echo(f"      INT8 Q/DQ of pruned_kd: {len(calib)} calibration images, {len(q.excluded)} head/decode nodes kept float")
    return variants


def _serve_and_report(out, force, budget, work, heldout, ckpts, keep_server, echo, t_start) -> dict:
    from generator.evaluation.coco import evaluate
    from generator.evaluation.predictors import Thresholds, offline_detector
    from generator.runners import open_runner
    from generator.report import format_table, measure_variants, write_report
    from generator.repository.generate import generate
    from generator.repository.options import RepositoryOptions

    s = budget.imgsz
    variants = _export_variants(ckpts, budget, work, echo)
    opts = RepositoryOptions()
    repo = generate(variants["int8"]["onnx"], "embedded", out, opts, force=force)
    echo(f"[6/8] wrote the embedded repository {repo.path} serving the int8 variant: {', '.join(repo.models)}")
    served_thr = Thresholds(opts.score_threshold, opts.iou_threshold, opts.max_detections)
    int8 = open_runner("onnxruntime", variants["int8"]["onnx"])
    offline_served_thr = evaluate(heldout, offline_detector(int8, s, s, served_thr), progress=False)
    served, latency = _served(repo, heldout, budget, keep_server, echo)
    rows = measure_variants(variants, heldout, s, s, echo=echo)
    echo("[8/8] report (held-out set; mAP at COCO's protocol: score >= 0.001, IoU 0.7, 300 detections)")
    echo(format_table(rows))
    echo(f"      served int8 at its thresholds (score {opts.score_threshold}, IoU {opts.iou_threshold}): "
         f"mAP@0.5:0.95 {served.map50_95:.4f}, mAP@0.5 {served.map50:.4f}; offline at the same thresholds: "
         f"{offline_served_thr.map50_95:.4f}, {offline_served_thr.map50:.4f}")
    extra = {"budget": asdict(budget), "served": served.to_json(),
             "offline": {"onnx_at_served_thresholds": offline_served_thr.to_json()},
             "serving_latency_batch1": latency, "seconds": round(time.time() - t_start, 1)}
    path = write_report(rows, out, extra, echo)
    echo(f"      wrote {path} and {path.with_suffix('.png')} ({extra['seconds']:.0f} s in all)")
    return {"variants": rows, **extra}


def _served(repo, heldout, budget, keep_server, echo):
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
