"""``tritonforge generate | serve | detect``: write a Triton model repository, serve it,
send it images."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from generator.cli.common import field_default, json_option, print_json, protocol_option
from generator.export.tensorrt.options import PRECISIONS
from generator.repository.options import HANDOFFS, RUNTIME_CHOICES, RepositoryOptions
from generator.cli.onnx_options import onnx_reading_options, read_options
from generator.repository.targets.tensorrt import NMS_MODES

FOLDER = click.Path(file_okay=False, path_type=Path)
FILE = click.Path(dir_okay=False, path_type=Path)


def _default(name: str):
    return field_default(RepositoryOptions, name)


@click.command()
@click.option("--onnx", "onnx_path", type=click.Path(path_type=Path), required=True, help="Detector ONNX.")
@click.option("--target", default="embedded", show_default=True, help="embedded | cpu | gpu | jetson (| plugins).")
@click.option("--out", type=FOLDER, required=True, help="Repository folder.")
@click.option("--name", default=_default("name"), show_default=True, help="Base model name.")
@click.option("--max-batch", type=int, default=None, help="Max batch size [8; jetson 4].")
@click.option("--instances", type=int, default=None, help="Detector instances [1].")
@click.option("--preprocess-instances", type=int, default=None, help="Preprocess instances [2; jetson 1].")
@click.option("--queue-delay-us", type=int, default=_default("queue_delay_us"), show_default=True,
              help="Dynamic batching queue delay.")
@click.option("--no-dynamic-batching", is_flag=True, help="Run each request as it comes (for comparisons).")
@click.option("--score-threshold", type=float, default=_default("score_threshold"), show_default=True)
@click.option("--iou-threshold", type=float, default=_default("iou_threshold"), show_default=True)
@click.option("--max-detections", type=int, default=_default("max_detections"), show_default=True)
@click.option("--labels", type=FILE, default=None, help="Class names, one a line.")
@click.option("--max-image-pixels", type=int, default=_default("max_image_pixels"), show_default=True,
              help="Larger images are refused from their header, before decoding (bounds server memory).")
@click.option("--plan", type=FILE, default=None,
              help="gpu: a TensorRT plan to put in place (its build.json is read); else build_plans.sh builds it.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="gpu/jetson: plan precision for build_plans.sh [fp16; int8 for a Q/DQ ONNX].")
@click.option("--nms", type=click.Choice(NMS_MODES), default=None,
              help="gpu/jetson: NMS in the postprocess stage or inside the plan (EfficientNMS) [postprocess].")
@click.option("--opt-batch", type=int, default=None, help="gpu/jetson: optimization-profile opt batch [max batch].")
@click.option("--workspace", "workspace_mib", type=int, default=None,
              help="gpu/jetson: builder workspace MiB [2048; jetson 1024].")
@click.option("--dla-core", type=int, default=None, help="jetson: build the plan for this DLA core (GPU fallback).")
@click.option("--calib-cache", type=FILE, default=None,
              help="gpu/jetson int8 without Q/DQ: TensorRT calibration cache (tritonforge quantize --trt-cache).")
@click.option("--runtime", type=click.Choice(RUNTIME_CHOICES), default=None,
              help="embedded/cpu: what runs the detector [onnxruntime]; auto measures the candidates here "
                   "and records the figures in tritonforge.json.")
@click.option("--torchscript", type=FILE, default=None,
              help="--runtime torchscript/auto: the traced detector [the ONNX's sibling <stem>.torchscript].")
@click.option("--handoff", type=click.Choice(HANDOFFS), default=None,
              help="embedded/cpu: uint8 hands the detector the letterboxed pixels and folds the input format "
                   "into its graph (4x fewer bytes between stages); float does it in the preprocess [uint8].")
@click.option("--force", is_flag=True, help="Replace a non-empty --out.")
@onnx_reading_options()
def generate(onnx_path, target, out, name, max_batch, instances, preprocess_instances, queue_delay_us,
             no_dynamic_batching, score_threshold, iou_threshold, max_detections, labels, max_image_pixels, plan,
             precision, nms, opt_batch, workspace_mib, dla_core, calib_cache, runtime, torchscript, handoff,
             force, **reading) -> None:
    """Write a Triton model repository (preprocess -> detector -> postprocess, ensemble)."""
    from generator.repository.generate import generate as run, read_labels
    from generator.repository.targets import options_for

    opts = options_for(
        target, name=name, max_batch_size=max_batch, detector_instances=instances,
        preprocess_instances=preprocess_instances, queue_delay_us=queue_delay_us,
        dynamic_batching=not no_dynamic_batching, score_threshold=score_threshold, iou_threshold=iou_threshold,
        max_detections=max_detections, labels=read_labels(labels), max_image_pixels=max_image_pixels, plan=plan,
        precision=precision, nms=nms, opt_batch=opt_batch, workspace_mib=workspace_mib, dla_core=dla_core,
        calib_cache=calib_cache, runtime=runtime, torchscript=torchscript, handoff=handoff)
    repo = run(onnx_path, target, out, opts, force=force, reading=read_options(**reading))
    _report_repository(repo)
    _report_runtime(repo.path)


def _report_repository(repo) -> None:
    sig = repo.signature
    outputs = ", ".join(f"{o.name} [N,{','.join('?' if d < 0 else str(d) for d in o.dims)}]" for o in sig.outputs)
    classes = "" if sig.num_classes is None else f", {sig.num_classes} classes"
    click.echo(f"wrote {repo.path} ({repo.target}): {', '.join(repo.models)}")
    click.echo(f"detector {sig.input_name} [N,3,{sig.height},{sig.width}] ({sig.input_format.describe()}) -> "
               f"{outputs}, layout {sig.layout}{classes}; send images to {repo.ensemble}")
    if repo.batch_note:
        click.echo(f"batch axis: {repo.batch_note}")
    for step in repo.next_steps:
        click.echo(f"next: {step}")


def _report_runtime(path: Path) -> None:
    """The runtime line, when --runtime was given: what runs the detector, and for auto why."""
    import json

    entry = json.loads((Path(path) / "tritonforge.json").read_text()).get("runtime")
    if not entry:
        return
    click.echo(f"runtime: {entry['chosen']}" + (f" (requested {entry['requested']})"
                                                 if entry["requested"] != entry["chosen"] else ""))
    for name, figures in entry.get("candidates", {}).items():
        click.echo(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    if "how" in entry:
        click.echo(f"  how: {entry['how']}")


_KEY_HELP = ("Key for Triton's model-repository, shared-memory, statistics, trace and logging APIs (at least 16 "
             "characters). Required off loopback: without it a random key is generated and printed once. Note that "
             "it is on the tritonserver command line, which other local users can read in /proc.")


@click.command()
@click.argument("repository", type=FOLDER)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (0.0.0.0 exposes it; then the admin APIs need a key, see --admin-key).")
@click.option("--http-port", type=int, default=8000, show_default=True)
@click.option("--grpc-port", type=int, default=8001, show_default=True)
@click.option("--metrics-port", type=int, default=8002, show_default=True)
@click.option("--tritonserver", default=None, help="tritonserver binary (default: the one bundled in nvidia-pytriton).")
@click.option("--backend-directory", default=None, help="Backends of --tritonserver (default /opt/tritonserver/backends).")
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds to wait for readiness.")
@click.option("--verbose", is_flag=True, help="Echo the server's log.")
@click.option("--admin-key", envvar="TRITONFORGE_ADMIN_KEY", show_envvar=True, default=None, help=_KEY_HELP)
@click.option("--grpc-tls-cert", type=FILE, default=None, help="Serve gRPC over TLS: server certificate (PEM).")
@click.option("--grpc-tls-key", type=FILE, default=None, help="Private key (PEM) of --grpc-tls-cert.")
@click.option("--grpc-tls-root", type=FILE, default=None,
              help="CA certificate (PEM) of client certificates: mutual TLS, clients must present one.")
def serve(repository, host, http_port, grpc_port, metrics_port, tritonserver, backend_directory, timeout, verbose,
          admin_key, grpc_tls_cert, grpc_tls_key, grpc_tls_root):
    """Start Triton on REPOSITORY, wait until ready, serve until Ctrl-C / SIGTERM."""
    from generator.serve.admin import admin_key_for, admin_notes
    from generator.serve.run import serve_forever
    from generator.serve.server import TritonServer
    from generator.serve.tls import grpc_tls

    tls = grpc_tls(grpc_tls_cert, grpc_tls_key, grpc_tls_root)
    key, generated = admin_key_for(host, admin_key)
    server = TritonServer(repository, http_port, grpc_port, metrics_port, host, tritonserver,
                          backend_directory, echo=verbose, die_with_parent=True, admin_key=key, grpc_tls=tls)
    notes = admin_notes(key, generated, server.endpoints.http)
    sys.exit(serve_forever(server, timeout, click.echo, notes=notes))


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", default="localhost:8001", show_default=True, help="host:port of Triton.")
@protocol_option()
@click.option("--model", default="detector_ensemble", show_default=True, help="Ensemble name.")
@json_option()
@click.option("--draw", type=FOLDER, default=None, help="Write annotated PNGs here.")
def detect(images, url, protocol, model, as_json, draw) -> None:
    """Send IMAGES through the client SDK and print the detections."""
    from generator.detect import run_detect

    results = run_detect(list(images), url, protocol, model, draw)
    if as_json:
        print_json({str(p): [d.to_dict() for d in dets] for p, dets in results})
        return
    for path, dets in results:
        click.echo(f"{path}: {len(dets)} detections")
        for d in dets:
            click.echo(f"  {d.class_name:<16} {d.score:.3f}  [{d.x1:.1f}, {d.y1:.1f}, {d.x2:.1f}, {d.y2:.1f}]")


COMMANDS = [generate, serve, detect]
