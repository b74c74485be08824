"""The ``tritonforge`` command. Each command parses options, calls one library
function and reports; project errors map to exit codes in ``ForgeGroup.invoke``.
Heavy modules are imported inside the commands so ``--help`` stays light."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from generator import __version__
from generator.errors import TritonForgeError


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
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--batch", type=int, default=16, show_default=True)
@click.option("--lr", type=float, default=0.002, show_default=True, help="AdamW learning rate (cosine decay).")
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
@click.option("--target", default="embedded", show_default=True, help="embedded | cpu (| plugins).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Repository folder.")
@click.option("--name", default="detector", show_default=True, help="Base model name.")
@click.option("--max-batch", type=int, default=8, show_default=True)
@click.option("--instances", type=int, default=1, show_default=True, help="Detector instances.")
@click.option("--preprocess-instances", type=int, default=2, show_default=True)
@click.option("--queue-delay-us", type=int, default=2000, show_default=True, help="Dynamic batching queue delay.")
@click.option("--no-dynamic-batching", is_flag=True, help="Run each request as it comes (for comparisons).")
@click.option("--score-threshold", type=float, default=0.25, show_default=True)
@click.option("--iou-threshold", type=float, default=0.45, show_default=True)
@click.option("--max-detections", type=int, default=100, show_default=True)
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Class names, one a line.")
@click.option("--force", is_flag=True, help="Replace a non-empty --out.")
def generate(onnx_path, target, out, name, max_batch, instances, preprocess_instances, queue_delay_us,
             no_dynamic_batching, score_threshold, iou_threshold, max_detections, labels, force) -> None:
    """Write a Triton model repository (preprocess -> detector -> postprocess, ensemble)."""
    from generator.repository.generate import generate as run, read_labels
    from generator.repository.targets import GenerateOptions

    opts = GenerateOptions(name, max_batch, instances, preprocess_instances, queue_delay_us,
                           not no_dynamic_batching, score_threshold, iou_threshold, max_detections,
                           read_labels(labels))
    repo = run(onnx_path, target, out, opts, force=force)
    sig = repo.signature
    click.echo(f"wrote {repo.path} ({repo.target}): {', '.join(repo.models)}")
    click.echo(f"detector {sig.input_name} [N,3,{sig.height},{sig.width}] -> {sig.output_name} "
               f"[N,{4 + sig.num_classes},{sig.num_anchors}], {sig.num_classes} classes; "
               f"send images to {repo.ensemble}")


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
                          backend_directory, echo=verbose)
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
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("model_repository"),
              show_default=True, help="Repository folder (a previous tritonforge repository there is replaced).")
@click.option("--imgsz", type=int, default=320, show_default=True)
@click.option("--requests", "num_requests", type=int, default=40, show_default=True, help="Requests per protocol for the latency summary.")
@click.option("--keep-server", is_flag=True, help="Leave the server running at the end (Ctrl-C stops it).")
def demo(out, imgsz, num_requests, keep_server) -> None:
    """Whole path on the CPU: detector -> ONNX -> repository -> served -> requests -> report."""
    from generator.demo import run_demo

    run_demo(out, imgsz=imgsz, num_requests=num_requests, keep_server=keep_server, echo=click.echo)


def main(argv=None) -> None:
    cli.main(args=argv, prog_name="tritonforge")


if __name__ == "__main__":
    main()
