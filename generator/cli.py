"""The ``tritonforge`` command. Each command parses options, calls one library
function and reports; project errors map to exit codes in ``ForgeGroup.invoke``.
Heavy modules are imported inside the commands so ``--help`` stays light."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from generator import __version__
from generator.errors import TritonForgeError, UsageError


class ForgeGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TritonForgeError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=ForgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tritonforge")
def cli() -> None:
    """Make object detectors light and serve them on NVIDIA Triton."""


@cli.command()
@click.option("--model", "model_spec", required=True, help="Family name (random weights, e.g. yolo-n) or checkpoint .pt.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="ONNX file to write.")
@click.option("--imgsz", type=int, default=None, help="Square input size (multiple of 32); default: checkpoint's or 640.")
@click.option("--num-classes", type=int, default=80, show_default=True, help="Classes, for a family name.")
@click.option("--opset", type=int, default=17, show_default=True)
@click.option("--no-simplify", is_flag=True, help="Skip onnxslim.")
@click.option("--data", default=None, help="Dataset whose val images the check runs on (default: random input).")
@click.option("--tolerance", type=float, default=1e-2, show_default=True, help="Max abs difference allowed.")
def export(model_spec: str, out: Path, imgsz, num_classes: int, opset: int, no_simplify: bool, data, tolerance) -> None:
    """Export a detector to ONNX with a dynamic batch axis, checked against PyTorch."""
    from generator.export.onnx_export import check_images_from, export_onnx
    from generator.models.checkpoint import resolve_model

    det = resolve_model(model_spec, num_classes, imgsz)
    images = check_images_from(Path(data), det.imgsz) if data else None
    report = export_onnx(det, out, opset=opset, simplify=not no_simplify, tolerance=tolerance, check_images=images)
    click.echo(report.summary())


@cli.group()
def data() -> None:
    """Datasets: synthesize a deterministic shapes dataset in YOLO format."""


@data.command("synth")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Dataset folder.")
@click.option("--images", type=int, default=500, show_default=True, help="Images in all (train + val).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--imgsz", type=int, default=256, show_default=True, help="Long side of the images.")
@click.option("--classes", type=int, default=3, show_default=True)
@click.option("--val-fraction", type=float, default=0.2, show_default=True)
@click.option("--force", is_flag=True, help="Replace a non-empty --out.")
def data_synth(out, images, seed, imgsz, classes, val_fraction, force) -> None:
    """Render a synthetic shapes dataset (same --seed, same bytes)."""
    from generator.data.synth import synthesize

    yaml_path = synthesize(out, images, seed, imgsz=imgsz, classes=classes, val_fraction=val_fraction, force=force)
    click.echo(f"wrote {yaml_path}")


@cli.command()
@click.option("--data", required=True, help="data YAML, dataset folder, or COCO JSON.")
@click.option("--model", default="yolo-n", show_default=True, help="Family name, or a checkpoint to start from.")
@click.option("--imgsz", type=int, default=256, show_default=True)
@click.option("--epochs", type=int, default=80, show_default=True)
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=0.01, show_default=True, help="AdamW learning rate (cosine decay).")
@click.option("--mosaic", type=float, default=0.0, show_default=True, help="Probability of 4-image mosaic.")
@click.option("--eval-every", type=int, default=0, show_default=True, help="Validate every N epochs (0: at the end).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda[:N].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Checkpoint to write.")
@click.option("--resume", is_flag=True, help="Continue the run stored in --out.")
def train(data, model, imgsz, epochs, batch, lr, mosaic, eval_every, seed, workers, device, out, resume) -> None:
    """Train a detector; the checkpoint embeds family, class names and image size."""
    from generator.training.trainer import TrainConfig, train as run

    cfg = TrainConfig(data=data, model=model, out=str(out), imgsz=imgsz, epochs=epochs, batch=batch, lr=lr,
                      mosaic=mosaic, eval_every=eval_every, seed=seed, workers=workers, device=device,
                      resume=resume)
    result = run(cfg, echo=click.echo)
    click.echo(f"wrote {result.checkpoint} after {result.seconds:.0f} s: mAP50 {result.metrics.get('map50', 0):.3f}, "
               f"mAP50-95 {result.metrics.get('map50_95', 0):.3f} (val)")


@cli.command()
@click.option("--teacher", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Teacher checkpoint.")
@click.option("--student", required=True, help="Student family name or checkpoint.")
@click.option("--data", required=True, help="data YAML, dataset folder, or COCO JSON.")
@click.option("--unlabelled", "--unlabeled", "unlabelled", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Extra images without labels (teacher targets only).")
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--imgsz", type=int, default=None, help="Default: the teacher's.")
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=0.01, show_default=True)
@click.option("--kd-obj", type=float, default=1.0, show_default=True, help="Objectness term weight.")
@click.option("--kd-cls", type=float, default=1.0, show_default=True, help="Objectness-scaled class term weight.")
@click.option("--kd-box", type=float, default=1.0, show_default=True, help="Objectness-scaled box (DFL KL) term weight.")
@click.option("--kd-feat", type=float, default=1.0, show_default=True, help="Neck feature imitation weight (0: off).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Student checkpoint.")
def distill(teacher, student, data, unlabelled, epochs, imgsz, batch, lr, kd_obj, kd_cls, kd_box, kd_feat, seed, out):
    """Teacher -> student knowledge distillation (objectness-scaled, with feature imitation)."""
    from generator.compress.distill import KDWeights, run_distill

    result = run_distill(teacher, student, data, out, epochs=epochs, imgsz=imgsz, batch=batch, lr=lr,
                         weights=KDWeights(kd_obj, kd_cls, kd_box, kd_feat), unlabelled=unlabelled, seed=seed,
                         echo=click.echo)
    click.echo(f"wrote {result.checkpoint} after {result.seconds:.0f} s: mAP50 {result.metrics.get('map50', 0):.3f}, "
               f"mAP50-95 {result.metrics.get('map50_95', 0):.3f} (val)")


@cli.command()
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Trained checkpoint.")
@click.option("--ratio", type=float, required=True, help="Fraction of channels to remove, in (0, 1).")
@click.option("--importance", type=click.Choice(["magnitude", "bn-scale", "taylor", "lamp"]), default="magnitude",
              show_default=True)
@click.option("--global", "global_pruning", is_flag=True, help="Rank channels across all layers (uneven widths).")
@click.option("--round-to", type=int, default=None, help="Keep channel counts multiples of this (e.g. 8).")
@click.option("--data", required=True, help="Dataset for fine-tuning (and Taylor gradients).")
@click.option("--steps", type=int, default=1, show_default=True, help="Iterative pruning steps.")
@click.option("--step-iters", type=int, default=0, show_default=True, help="Recovery batches between steps.")
@click.option("--finetune-epochs", type=int, default=10, show_default=True)
@click.option("--teacher", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Distil from this checkpoint while fine-tuning (e.g. the unpruned model).")
@click.option("--imgsz", type=int, default=None)
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=0.002, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def prune(model_path, ratio, importance, global_pruning, round_to, data, steps, step_iters, finetune_epochs,
          teacher, imgsz, batch, lr, seed, device, as_json, out):
    """Structured channel pruning (Torch-Pruning), then fine-tuning; the checkpoint loads like any other."""
    from generator.compress.prune import prune_and_finetune

    r = prune_and_finetune(model_path, Path(data), ratio, importance, global_pruning, round_to, steps,
                           finetune_epochs, out, teacher, imgsz, batch, lr, step_iters=step_iters, seed=seed,
                           device=device, echo=(lambda _: None) if as_json else click.echo)
    if as_json:
        click.echo(json.dumps(r, indent=2, default=str))
        return
    rep = r["report"]
    click.echo(f"wrote {out}: params {rep['params_after']:,} ({rep['params_after'] / rep['params_before']:.0%}), "
               f"GFLOPs {rep['gflops_after']:.3f} ({rep['gflops_after'] / rep['gflops_before']:.0%}); "
               f"metrics {r['metrics']}")


@cli.command()
@click.option("--onnx", "onnx_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Calibration images: data YAML / dataset folder / COCO JSON (train split) or a folder of images.")
@click.option("--method", type=click.Choice(["entropy", "minmax", "percentile"]), default="entropy", show_default=True)
@click.option("--per-channel", is_flag=True, help="Per-channel weight scales.")
@click.option("--exclude", multiple=True, help="Node name or glob kept in float (repeatable), e.g. '/head/*'.")
@click.option("--samples", type=click.IntRange(1), default=64, show_default=True, help="Calibration images.")
@click.option("--target", type=click.Choice(["cpu", "tensorrt"]), default="cpu", show_default=True,
              help="cpu: uint8 activations (fastest on x86 ONNX Runtime); tensorrt: symmetric int8 activations.")
@click.option("--quantize-head", is_flag=True, help="Also quantize the head's output convolutions and decode tail.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--trt-cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a TensorRT (<= 10) calibration cache from the same statistics.")
@click.option("--fp16", is_flag=True, help="Write an FP16 ONNX (float32 inputs/outputs) instead; needs no --data.")
def quantize(onnx_path, data, method, per_channel, exclude, samples, target, quantize_head, out, trt_cache, fp16):
    """INT8 post-training calibration on the CPU -> explicit Q/DQ ONNX (+ TensorRT cache)."""

    if fp16:
        if trt_cache or per_channel or exclude or quantize_head:
            raise UsageError("--fp16 takes no calibration options")
        from generator.compress.quantize import convert_fp16

        click.echo(f"wrote {convert_fp16(onnx_path, out)}")
        return
    if data is None:
        raise UsageError("--data is required for INT8 calibration (or pass --fp16)")
    from generator.compress.calibration import calibration_images
    from generator.compress.quantize import quantize_onnx
    from generator.export.signature import read_signature

    sig = read_signature(onnx_path)
    calib = calibration_images(data, sig.height, sig.width, samples, num_classes=sig.num_classes)
    report = quantize_onnx(onnx_path, out, calib, method=method, per_channel=per_channel or target == "tensorrt",
                           exclude=exclude, keep_head_float=not quantize_head,
                           activation_type="int8" if target == "tensorrt" else "uint8", trt_cache=trt_cache)
    click.echo(report.summary())


@cli.command()
@click.option("--onnx", "onnx_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Detector ONNX (FP32, FP16, or Q/DQ INT8 from `tritonforge quantize`).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Plan to write, e.g. model.plan.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16", show_default=True)
@click.option("--min-batch", type=int, default=1, show_default=True)
@click.option("--opt-batch", type=int, default=4, show_default=True, help="Batch size TensorRT tunes for.")
@click.option("--max-batch", type=int, default=8, show_default=True)
@click.option("--workspace", type=int, default=None, help="Builder workspace limit in MiB (default: TensorRT's).")
@click.option("--timing-cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read and update this timing cache (faster rebuilds on the same GPU).")
@click.option("--dla-core", type=int, default=None, help="Build for this DLA core (Jetson), GPU fallback on.")
@click.option("--calibrator", type=click.Choice(["entropy", "entropy2", "minmax"]), default=None,
              help="Implicit INT8 calibration (TensorRT <= 10) on --data.")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Calibration images: data YAML / dataset folder / COCO JSON (train split) or a folder of images.")
@click.option("--calib-cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="INT8 scales from a TensorRT calibration cache (e.g. `tritonforge quantize --trt-cache`).")
@click.option("--nms/--no-nms", default=False, show_default=True,
              help="Put EfficientNMS_TRT in the plan (outputs num_detections, detection_boxes/scores/classes).")
@click.option("--score-threshold", type=float, default=0.25, show_default=True, help="With --nms.")
@click.option("--iou-threshold", type=float, default=0.45, show_default=True, help="With --nms.")
@click.option("--max-detections", type=int, default=100, show_default=True, help="With --nms.")
def build(onnx_path, out, precision, min_batch, opt_batch, max_batch, workspace, timing_cache, dla_core, calibrator,
          data, calib_cache, nms, score_threshold, iou_threshold, max_detections) -> None:
    """TensorRT plan from an ONNX (needs TensorRT and an NVIDIA GPU); writes build.json beside it."""
    from generator.export.trt_build import BuildOptions, build_info_path, build_plan

    opts = BuildOptions(precision=precision, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
                        workspace=workspace, timing_cache=timing_cache, dla_core=dla_core, calibrator=calibrator,
                        data=data, calib_cache=calib_cache, nms=nms, score_threshold=score_threshold,
                        iou_threshold=iou_threshold, max_detections=max_detections)
    argv = ["tritonforge", *sys.argv[1:]] if sys.argv[1:2] == ["build"] else None  # None: rebuilt from opts
    info = build_plan(onnx_path, out, opts, argv=argv, echo=click.echo)
    nms_text = f", EfficientNMS (max {info['max_detections']})" if info["nms"] else ""
    click.echo(f"wrote {out} ({info['plan']['bytes'] / 1e6:.1f} MB): {info['precision']}, batch "
               f"{info['min_batch']}..{info['max_batch']} (opt {info['opt_batch']}){nms_text}; TensorRT "
               f"{info['tensorrt']} on {info['gpu']['name']} in {info['seconds']:.0f} s; record {build_info_path(out)}")


@cli.command("eval")
@click.option("--data", required=True, help="data YAML, dataset folder, or COCO JSON.")
@click.option("--split", default="val", show_default=True)
@click.option("--model", "checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Checkpoint.")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="ONNX model.")
@click.option("--url", default=None, help="host:port of a served ensemble.")
@click.option("--protocol", type=click.Choice(["grpc", "http"]), default="grpc", show_default=True)
@click.option("--ensemble", default="detector_ensemble", show_default=True, help="Ensemble name, with --url.")
@click.option("--score-threshold", type=float, default=0.001, show_default=True, help="Offline only.")
@click.option("--iou-threshold", type=float, default=0.7, show_default=True, help="Offline only.")
@click.option("--max-detections", type=int, default=300, show_default=True, help="Offline only.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def evaluate(data, split, checkpoint, onnx_path, url, protocol, ensemble, score_threshold, iou_threshold,
             max_detections, as_json) -> None:
    """COCO mAP@0.5:0.95 and mAP@0.5 of a checkpoint, an ONNX file, or a served endpoint."""
    from generator.evaluation.predictors import Thresholds
    from generator.evaluation.run import run_eval

    result = run_eval(Path(data), split, checkpoint, onnx_path, url, protocol, ensemble,
                      Thresholds(score_threshold, iou_threshold, max_detections), progress=not as_json)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    click.echo(f"mAP@0.5:0.95 {result.map50_95:.4f}   mAP@0.5 {result.map50:.4f}   "
               f"({result.images} images, {result.detections} detections)")
    for name, ap in result.per_class.items():
        click.echo(f"  {name:<16} AP@0.5:0.95 {ap:.4f}")


@cli.command()
@click.option("--onnx", "onnx_path", type=click.Path(path_type=Path), required=True, help="Detector ONNX.")
@click.option("--target", default="embedded", show_default=True, help="embedded | cpu | gpu | jetson (| plugins).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Repository folder.")
@click.option("--name", default="detector", show_default=True, help="Base model name.")
@click.option("--max-batch", type=int, default=None, help="Max batch size [8; jetson 4].")
@click.option("--instances", type=int, default=None, help="Detector instances [1].")
@click.option("--preprocess-instances", type=int, default=None, help="Preprocess instances [2; jetson 1].")
@click.option("--queue-delay-us", type=int, default=2000, show_default=True, help="Dynamic batching queue delay.")
@click.option("--no-dynamic-batching", is_flag=True, help="Run each request as it comes (for comparisons).")
@click.option("--score-threshold", type=float, default=0.25, show_default=True)
@click.option("--iou-threshold", type=float, default=0.45, show_default=True)
@click.option("--max-detections", type=int, default=100, show_default=True)
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Class names, one a line.")
@click.option("--max-image-pixels", type=int, default=50_000_000, show_default=True,
              help="Larger images are refused from their header, before decoding (bounds server memory).")
@click.option("--plan", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="gpu: a TensorRT plan to put in place (its build.json is read); else build_plans.sh builds it.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
              help="gpu/jetson: plan precision for build_plans.sh [fp16; int8 for a Q/DQ ONNX].")
@click.option("--nms", type=click.Choice(["postprocess", "engine"]), default=None,
              help="gpu/jetson: NMS in the postprocess stage or inside the plan (EfficientNMS) [postprocess].")
@click.option("--opt-batch", type=int, default=None, help="gpu/jetson: optimization-profile opt batch [max batch].")
@click.option("--workspace", "workspace_mib", type=int, default=None, help="gpu/jetson: builder workspace MiB [2048; jetson 1024].")
@click.option("--dla-core", type=int, default=None, help="jetson: build the plan for this DLA core (GPU fallback).")
@click.option("--calib-cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="gpu/jetson int8 without Q/DQ: TensorRT calibration cache (tritonforge quantize --trt-cache).")
@click.option("--force", is_flag=True, help="Replace a non-empty --out.")
def generate(onnx_path, target, out, name, max_batch, instances, preprocess_instances, queue_delay_us,
             no_dynamic_batching, score_threshold, iou_threshold, max_detections, labels, max_image_pixels, plan,
             precision, nms, opt_batch, workspace_mib, dla_core, calib_cache, force) -> None:
    """Write a Triton model repository (preprocess -> detector -> postprocess, ensemble)."""
    from generator.repository.generate import generate as run, read_labels
    from generator.repository.targets import GenerateOptions

    given = dict(max_batch_size=max_batch, detector_instances=instances, preprocess_instances=preprocess_instances,
                 workspace_mib=workspace_mib)
    opts = GenerateOptions.for_target(
        target, name=name, queue_delay_us=queue_delay_us, dynamic_batching=not no_dynamic_batching,
        score_threshold=score_threshold, iou_threshold=iou_threshold, max_detections=max_detections,
        labels=read_labels(labels), max_image_pixels=max_image_pixels, plan=plan, precision=precision, nms=nms,
        opt_batch=opt_batch, dla_core=dla_core, calib_cache=calib_cache,
        **{k: v for k, v in given.items() if v is not None})
    repo = run(onnx_path, target, out, opts, force=force)
    sig = repo.signature
    click.echo(f"wrote {repo.path} ({repo.target}): {', '.join(repo.models)}")
    click.echo(f"detector {sig.input_name} [N,3,{sig.height},{sig.width}] -> {sig.output_name} "
               f"[N,{4 + sig.num_classes},{sig.num_anchors}], {sig.num_classes} classes; "
               f"send images to {repo.ensemble}")
    for step in repo.next_steps:
        click.echo(f"next: {step}")


@cli.command()
@click.argument("repository", type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 exposes it).")
@click.option("--http-port", type=int, default=8000, show_default=True)
@click.option("--grpc-port", type=int, default=8001, show_default=True)
@click.option("--metrics-port", type=int, default=8002, show_default=True)
@click.option("--tritonserver", default=None, help="tritonserver binary (default: the one bundled in nvidia-pytriton).")
@click.option("--backend-directory", default=None, help="Backends of --tritonserver (default /opt/tritonserver/backends).")
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds to wait for readiness.")
@click.option("--verbose", is_flag=True, help="Echo the server's log.")
def serve(repository, host, http_port, grpc_port, metrics_port, tritonserver, backend_directory, timeout, verbose):
    """Start Triton on REPOSITORY, wait until ready, serve until Ctrl-C / SIGTERM."""
    from generator.serve.run import serve_forever
    from generator.serve.server import TritonServer

    server = TritonServer(repository, http_port, grpc_port, metrics_port, host, tritonserver,
                          backend_directory, echo=verbose, die_with_parent=True)
    sys.exit(serve_forever(server, timeout, click.echo))


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", default="localhost:8001", show_default=True, help="host:port of Triton.")
@click.option("--protocol", type=click.Choice(["grpc", "http"]), default="grpc", show_default=True)
@click.option("--model", default="detector_ensemble", show_default=True, help="Ensemble name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--draw", type=click.Path(file_okay=False, path_type=Path), default=None, help="Write annotated PNGs here.")
def detect(images, url, protocol, model, as_json, draw) -> None:
    """Send IMAGES through the client SDK and print the detections."""
    from generator.detect import run_detect

    results = run_detect(list(images), url, protocol, model, draw)
    if as_json:
        click.echo(json.dumps({str(p): [d.to_dict() for d in dets] for p, dets in results}, indent=2))
        return
    for path, dets in results:
        click.echo(f"{path}: {len(dets)} detections")
        for d in dets:
            click.echo(f"  {d.class_name:<16} {d.score:.3f}  [{d.x1:.1f}, {d.y1:.1f}, {d.x2:.1f}, {d.y2:.1f}]")


@cli.command()
@click.option("--variants", default=None,
              help="Offline: NAME=PATH pairs, comma-separated (checkpoints .pt, ONNX files, TensorRT plans .plan/.engine).")
@click.option("--data", default=None, help="--variants: dataset for mAP (data YAML, folder, or COCO JSON).")
@click.option("--split", default="val", show_default=True)
@click.option("--url", default=None, help="Served: the endpoint to load (host:port; grpc:// or http:// schemes too).")
@click.option("--protocol", type=click.Choice(["grpc", "http"]), default=None, help="--url: default from the URL, else grpc.")
@click.option("--model", default="detector_ensemble", show_default=True, help="--url: the ensemble's name.")
@click.option("--concurrency", default="1,2,4,8,16", show_default=True, help="--url: concurrency levels.")
@click.option("--duration", type=float, default=10.0, show_default=True, help="--url: seconds per level.")
@click.option("--shm", is_flag=True, help="--url: send images through system shared memory (same host).")
@click.option("--images", "images_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="--url: images to send (default: built-in samples, 300-1280 px).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the report here: report.json/.png (--variants) or load.json/.png (--url).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bench(variants, data, split, url, protocol, model, concurrency, duration, shm, images_dir, out, as_json) -> None:
    """Offline variants side by side per runtime (--variants), or a served endpoint under load (--url)."""
    if (variants is None) == (url is None):
        raise UsageError("give exactly one of --variants (offline comparison) or --url (a served endpoint)")
    if url is not None:
        from generator.loadtest import format_load_table, load_images, parse_levels, run_load, write_load_report

        result = run_load(url, protocol or ("http" if url.startswith(("http://", "https://")) else "grpc"), model,
                          parse_levels(concurrency), duration, load_images(images_dir),
                          "shm" if shm else "network", progress=not as_json,
                          echo=(lambda _: None) if as_json else click.echo)
        if out is not None:
            write_load_report(result, out)
        click.echo(json.dumps(result, indent=2) if as_json else format_load_table(result["levels"]))
        return
    if data is None:
        raise UsageError("--variants needs --data (the dataset for mAP)")
    from generator.bench import run_variants
    from generator.report import format_table, write_report

    rows = run_variants(variants, Path(data), split, echo=(lambda _: None) if as_json else click.echo)
    if out is not None:
        write_report(rows, out)
    click.echo(json.dumps({"variants": rows}, indent=2) if as_json else format_table(rows))


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("model_repository"),
              show_default=True, help="Repository folder (a previous tritonforge repository there is replaced).")
@click.option("--quick", is_flag=True, help="A small budget (about 2 minutes) for a first look and the tests.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep data, checkpoints and ONNX here (default: a temporary folder).")
@click.option("--epochs", type=int, default=None, help="Override the budget's training epochs.")
@click.option("--images", "train_images", type=int, default=None, help="Override the number of training images.")
@click.option("--requests", type=int, default=None, help="Requests per protocol for the latency summary.")
@click.option("--keep-server", is_flag=True, help="Leave the server running at the end (Ctrl-C stops it).")
def demo(out, quick, work, epochs, train_images, requests, keep_server) -> None:
    """Whole pipeline on the CPU: synthetic data, training, ONNX, repository, served, requests, report."""
    from generator.demo import budget_from, run_demo

    budget = budget_from(quick, epochs=epochs, train_images=train_images, requests=requests)
    run_demo(out, budget, work=work, keep_server=keep_server, echo=click.echo)


def main(argv=None) -> None:
    cli.main(args=argv, prog_name="tritonforge")


if __name__ == "__main__":
    main()
