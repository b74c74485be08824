"""``tritonforge eval | bench``: accuracy and speed.

``bench`` has two subcommands, ``bench variants`` (offline, side by side per runtime) and
``bench load`` (a served endpoint under load). The short forms ``bench --variants SPEC``
and ``bench --url URL`` that the README uses still work: the group takes the flags of
both (hidden from its help) and forwards them to the subcommand they select.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List

import click

from generator.cli.common import PROTOCOLS, echo_unless, field_default, json_option, print_json, protocol_option
from generator.cli.onnx_options import onnx_reading_options, read_options, reading_option_list
from generator.errors import UsageError
from generator.evaluation.thresholds import Thresholds

FOLDER = click.Path(file_okay=False, path_type=Path)
FILE = click.Path(dir_okay=False, path_type=Path)


@click.command("eval")
@click.option("--data", required=True, help="data YAML, dataset folder, or COCO JSON.")
@click.option("--split", default="val", show_default=True)
@click.option("--model", "checkpoint", type=FILE, default=None, help="Checkpoint.")
@click.option("--onnx", "onnx_path", type=FILE, default=None, help="ONNX model (any supported output layout).")
@onnx_reading_options()
@click.option("--url", default=None, help="host:port of a served ensemble.")
@protocol_option()
@click.option("--ensemble", default="detector_ensemble", show_default=True, help="Ensemble name, with --url.")
@click.option("--score-threshold", type=float, default=field_default(Thresholds, "score"), show_default=True,
              help="Offline only.")
@click.option("--iou-threshold", type=float, default=field_default(Thresholds, "iou"), show_default=True,
              help="Offline only.")
@click.option("--max-detections", type=int, default=field_default(Thresholds, "max_detections"), show_default=True,
              help="Offline only.")
@json_option()
def evaluate(data, split, checkpoint, onnx_path, url, protocol, ensemble, score_threshold,
             iou_threshold, max_detections, as_json, **reading) -> None:
    """COCO mAP@0.5:0.95 and mAP@0.5 of a checkpoint, an ONNX file, or a served endpoint."""
    from generator.evaluation.run import run_eval

    result = run_eval(Path(data), split, checkpoint=checkpoint, onnx=onnx_path, url=url, protocol=protocol,
                      ensemble=ensemble, thresholds=Thresholds(score_threshold, iou_threshold, max_detections),
                      progress=not as_json, read_options=read_options(**reading))
    if as_json:
        print_json(result.to_json())
        return
    click.echo(f"mAP@0.5:0.95 {result.map50_95:.4f}   mAP@0.5 {result.map50:.4f}   "
               f"({result.images} images, {result.detections} detections)")
    for name, ap in result.per_class.items():
        click.echo(f"  {name:<16} AP@0.5:0.95 {ap:.4f}")


# ---------------------------------------------------------------- bench: options shared by the two forms

def _apply(decorators: List[Callable]) -> Callable:
    def wrap(f):
        for decorator in reversed(decorators):
            f = decorator(f)
        return f
    return wrap


def _variants_options(hidden: bool = False) -> List[Callable]:
    return [
        click.option("--data", default=None, hidden=hidden, help="Dataset for mAP (data YAML, folder, or COCO JSON)."),
        click.option("--split", default="val", show_default=True, hidden=hidden),
        click.option("--runtimes", default=None, hidden=hidden,
                     help="Runtimes, comma-separated (pytorch, torchscript, onnxruntime, openvino, openvino-bf16) "
                          "[every one available for each variant on this host]."),
        *reading_option_list(hidden),
    ]


def _load_options(hidden: bool = False) -> List[Callable]:
    return [
        click.option("--protocol", type=click.Choice(PROTOCOLS), default=None, hidden=hidden,
                     help="Default: from the URL's scheme, else grpc."),
        click.option("--model", default="detector_ensemble", show_default=True, hidden=hidden,
                     help="The ensemble's name."),
        click.option("--concurrency", default="1,2,4,8,16", show_default=True, hidden=hidden,
                     help="Concurrency levels, comma-separated."),
        click.option("--duration", type=float, default=10.0, show_default=True, hidden=hidden,
                     help="Seconds per level."),
        click.option("--shm", is_flag=True, hidden=hidden, help="Send images through system shared memory (same host)."),
        click.option("--admin-key", envvar="TRITONFORGE_ADMIN_KEY", default=None, hidden=hidden,
                     help="A protected server's admin key: only --shm needs it (it registers shared memory). "
                          "[env TRITONFORGE_ADMIN_KEY]"),
        click.option("--images", "images_dir", type=FOLDER, default=None, hidden=hidden,
                     help="Images to send (default: built-in samples, 300-1280 px)."),
        click.option("--metrics-url", default=None, hidden=hidden,
                     help="Triton's metrics endpoint, scraped around each level for the queue and compute time "
                          "per stage ('none' skips it) [default: http://<URL's host>:8002/metrics]."),
    ]


def _report_options(report: str, hidden: bool = False) -> List[Callable]:
    return [
        click.option("--out", type=FOLDER, default=None, hidden=hidden, help=f"Write {report} here."),
        click.option("--json", "as_json", is_flag=True, hidden=hidden, help="Print JSON."),
    ]


VARIANTS_HELP = "NAME=PATH pairs, comma-separated (checkpoints .pt, ONNX files, TensorRT plans .plan/.engine)."


@click.command("variants")
@click.argument("variants", metavar="NAME=PATH[,NAME=PATH...]")
@_apply(_variants_options() + _report_options("report.json and report.png"))
def bench_variants(variants, data, split, runtimes, out, as_json, **reading) -> None:
    """Offline: VARIANTS side by side, one row per runtime (params, GFLOPs, latency, mAP).

    VARIANTS: NAME=PATH pairs, comma-separated (checkpoints .pt, ONNX files, TensorRT plans .plan/.engine).
    """
    if data is None:
        raise UsageError("--variants needs --data (the dataset for mAP)")
    from generator.bench import run_variants
    from generator.report import format_table, write_report

    rows = run_variants(variants, Path(data), split, echo=echo_unless(as_json),
                        read_options=read_options(**reading), runtimes=runtimes)
    if out is not None:
        write_report(rows, out)
    if as_json:
        print_json({"variants": rows})
    else:
        click.echo(format_table(rows))


@click.command("load")
@click.argument("url")
@_apply(_load_options() + _report_options("load.json and load.png"))
def bench_load(url, protocol, model, concurrency, duration, shm, admin_key, images_dir, metrics_url, out,
               as_json) -> None:
    """Served: the endpoint at URL under load (host:port; grpc:// or http:// schemes too), level by level,
    with the queue and compute time per stage from Triton's metrics endpoint."""
    from client.options import default_protocol
    from generator.loadtest import format_report, load_images, parse_levels, run_load, write_load_report

    protocol = default_protocol(url, protocol)  # the SDK's own rule, so the report names what it used
    result = run_load(url, protocol, model, parse_levels(concurrency), duration, load_images(images_dir),
                      "shm" if shm else "network", progress=not as_json, echo=echo_unless(as_json),
                      metrics_url=metrics_url or "", admin_key=admin_key)
    if out is not None:
        write_load_report(result, out)
    if as_json:
        print_json(result)
    else:
        click.echo(format_report(result))


@click.group(invoke_without_command=True)
@click.option("--variants", default=None, hidden=True, help=VARIANTS_HELP)
@click.option("--url", default=None, hidden=True, help="The endpoint to load.")
@_apply(_variants_options(hidden=True) + _load_options(hidden=True) + _report_options("the report", hidden=True))
@click.pass_context
def bench(ctx: click.Context, variants, url, **options) -> None:
    """Latency / throughput: offline variants side by side, or a served endpoint under load.

    The short forms `bench --variants SPEC --data D ...` and `bench --url URL ...` take the
    options of `bench variants` and `bench load`.
    """
    if ctx.invoked_subcommand is not None:
        return
    if (variants is None) == (url is None):
        raise UsageError("give exactly one of --variants (offline comparison) or --url (a served endpoint)")
    command, first = (bench_load, dict(url=url)) if url is not None else (bench_variants, dict(variants=variants))
    names = {p.name for p in command.params}
    ctx.invoke(command, **first, **{k: v for k, v in options.items() if k in names})


bench.add_command(bench_variants)
bench.add_command(bench_load)

COMMANDS = [evaluate, bench]
