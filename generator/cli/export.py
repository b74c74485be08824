"""``tritonforge export | quantize | build``: ONNX from a checkpoint, INT8/FP16 ONNX from an
ONNX, a TensorRT plan from an ONNX. Each leaves a reproducer recording ``invoked_command()``."""

from __future__ import annotations

from pathlib import Path

import click

from generator.cli.common import field_default, invoked_command
from generator.cli.onnx_options import onnx_reading_options, read_options
from generator.compress.config import (CALIBRATION_SAMPLES, DEFAULT_QUANTIZE_TARGET, DEFAULT_SELECTION, METHODS,
                                       QUANTIZE_RUNTIMES, QUANTIZE_TARGETS, SELECTIONS, QuantizeConfig,
                                       quantize_target_help, selection_help)
from generator.errors import UsageError
from generator.export.tensorrt.options import CALIBRATORS, PRECISIONS, BuildOptions

FILE = click.Path(dir_okay=False, path_type=Path)


def _build_default(name: str):
    return field_default(BuildOptions, name)


CALIBRATION_DATA_HELP = ("Calibration images: data YAML / dataset folder / COCO JSON (train split) "
                         "or a folder of images.")


@click.command()
@click.option("--model", "model_spec", required=True, help="Family name (random weights, e.g. yolo-n) or checkpoint .pt.")
@click.option("--out", type=FILE, required=True, help="ONNX file to write.")
@click.option("--imgsz", type=int, default=None, help="Square input size (multiple of 32); default: checkpoint's or 640.")
@click.option("--num-classes", type=int, default=80, show_default=True, help="Classes, for a family name.")
@click.option("--opset", type=int, default=17, show_default=True)
@click.option("--no-simplify", is_flag=True, help="Skip onnxslim.")
@click.option("--data", default=None, help="Dataset whose val images the check runs on (default: random input).")
@click.option("--tolerance", type=float, default=1e-2, show_default=True, help="Max abs difference allowed.")
@click.option("--torchscript", is_flag=True,
              help="Also write <out stem>.torchscript (torch.jit.trace), checked against PyTorch the same way.")
def export(model_spec: str, out: Path, imgsz, num_classes: int, opset: int, no_simplify: bool, data, tolerance,
           torchscript: bool) -> None:
    """Export a detector to ONNX with a dynamic batch axis, checked against PyTorch."""
    from generator.export.onnx_export import check_images_from, export_onnx
    from generator.models.checkpoint import resolve_model

    det = resolve_model(model_spec, num_classes, imgsz)
    images = check_images_from(Path(data), det.imgsz) if data else None
    report = export_onnx(det, out, opset=opset, simplify=not no_simplify, tolerance=tolerance, check_images=images,
                         command=invoked_command())
    click.echo(report.summary())
    if torchscript:
        from generator.export.torchscript import export_torchscript, torchscript_path

        traced = export_torchscript(det, torchscript_path(out), tolerance=tolerance, check_images=images,
                                    command=invoked_command())
        click.echo(traced.summary())


@click.command()
@click.option("--onnx", "onnx_path", required=True, type=FILE, help="Detector ONNX (any supported output layout).")
@onnx_reading_options()
@click.option("--data", type=click.Path(path_type=Path), default=None, help=CALIBRATION_DATA_HELP)
@click.option("--method", type=click.Choice(list(METHODS)), default=field_default(QuantizeConfig, "method"),
              show_default=True)
@click.option("--per-channel", is_flag=True, help="Per-channel weight scales.")
@click.option("--exclude", multiple=True, help="Node name or glob kept in float (repeatable), e.g. '/head/*'.")
@click.option("--samples", type=click.IntRange(1), default=CALIBRATION_SAMPLES, show_default=True,
              help="Calibration images.")
@click.option("--target", type=click.Choice(list(QUANTIZE_TARGETS)), default=DEFAULT_QUANTIZE_TARGET, show_default=True,
              help=quantize_target_help())
@click.option("--quantize-head", is_flag=True, help="Also quantize the head's output convolutions and decode tail.")
@click.option("--out", required=True, type=FILE)
@click.option("--trt-cache", type=FILE, default=None,
              help="Also write a TensorRT (<= 10) calibration cache from the same statistics.")
@click.option("--fp16", is_flag=True, help="Write an FP16 ONNX (float32 inputs/outputs) instead; needs no --data.")
@click.option("--select", type=click.Choice(list(SELECTIONS)), default=None,
              help=f"What else is quantized. {selection_help()} Default: {DEFAULT_SELECTION} "
                   "(op-type for --target tensorrt).")
@click.option("--runtime", type=click.Choice(QUANTIZE_RUNTIMES), default=field_default(QuantizeConfig, "runtime"),
              show_default=True, help="Runtime the model will run on: --select measured times it there, "
                                      "--max-drop validates there.")
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True,
              help="Threads of --runtime while measuring (0: the runtime's default); match deployment.")
@click.option("--max-drop", type=float, default=None,
              help="Accuracy control: absolute mAP50-95 drop allowed on the val split of --data (e.g. 0.01); "
                   "the most sensitive layers return to float until the INT8 model is within it.")
def quantize(onnx_path, data, method, per_channel, exclude, samples, target, quantize_head,
             out, trt_cache, fp16, select, runtime, threads, max_drop, **reading):
    """INT8 post-training calibration on the CPU -> explicit Q/DQ ONNX (+ TensorRT cache).

    The head's output layers and the decode / TopK / NMS tail after them stay float, for
    every output layout; the model's metadata (class names, size, layout hints) is kept.

    \b
    --select measured (default for --target cpu): times each group of quantizable nodes
    (op type; Conv per block) on --runtime, interleaved, and keeps in float what is not
    faster quantized (a few tens of seconds; progress printed, table in the summary).
    --max-drop D: measures FP32 and INT8 mAP50-95 on the val split of --data, returns
    the most sensitive layers to float until the drop is <= D; fails, writing nothing,
    when only the FP32 model meets it. Both are recorded in <out>.quantize.json.
    """
    reading = read_options(**reading)
    if fp16:
        if trt_cache or per_channel or exclude or quantize_head or select or max_drop is not None:
            raise UsageError("--fp16 takes no calibration options")
        from generator.compress.quantize import convert_fp16

        click.echo(f"wrote {convert_fp16(onnx_path, out, read_options=reading)}")
        return
    if data is None:
        raise UsageError("--data is required for INT8 calibration (or pass --fp16)")
    from generator.compress.quantize import quantize_from_images

    cfg = QuantizeConfig.for_target(target, per_channel=per_channel, method=method, exclude=exclude,
                                    keep_head_float=not quantize_head, trt_cache=trt_cache,
                                    select=_selection(select, target), runtime=runtime, threads=threads,
                                    max_drop=max_drop)
    report = quantize_from_images(onnx_path, out, data, samples, cfg, command=invoked_command(), read_options=reading,
                                  echo=click.echo)
    click.echo(report.summary())


def _selection(select, target: str) -> str:
    """--select, defaulting to measured on CPU targets; TensorRT builds on the GPU, where a
    CPU runtime's timings say nothing."""
    if target == "tensorrt":
        if select == "measured":
            raise UsageError("--select measured times a CPU runtime; a --target tensorrt model is built and run by "
                             "TensorRT on the GPU: use --select op-type")
        return "op-type"
    return select or DEFAULT_SELECTION


@click.command()
@click.option("--onnx", "onnx_path", required=True, type=FILE,
              help="Detector ONNX (FP32, FP16, or Q/DQ INT8 from `tritonforge quantize`).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Plan to write, e.g. model.plan.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=_build_default("precision"), show_default=True)
@click.option("--min-batch", type=int, default=_build_default("min_batch"), show_default=True)
@click.option("--opt-batch", type=int, default=_build_default("opt_batch"), show_default=True,
              help="Batch size TensorRT tunes for.")
@click.option("--max-batch", type=int, default=_build_default("max_batch"), show_default=True)
@click.option("--workspace", type=int, default=None, help="Builder workspace limit in MiB (default: TensorRT's).")
@click.option("--timing-cache", type=FILE, default=None,
              help="Read and update this timing cache (faster rebuilds on the same GPU).")
@click.option("--dla-core", type=int, default=None, help="Build for this DLA core (Jetson), GPU fallback on.")
@click.option("--calibrator", type=click.Choice(CALIBRATORS), default=None,
              help="Implicit INT8 calibration (TensorRT <= 10) on --data.")
@click.option("--data", type=click.Path(path_type=Path), default=None, help=CALIBRATION_DATA_HELP)
@click.option("--calib-cache", type=FILE, default=None,
              help="INT8 scales from a TensorRT calibration cache (e.g. `tritonforge quantize --trt-cache`).")
@click.option("--nms/--no-nms", default=False, show_default=True,
              help="Put EfficientNMS_TRT in the plan (outputs num_detections, detection_boxes/scores/classes).")
@click.option("--score-threshold", type=float, default=_build_default("score_threshold"), show_default=True,
              help="With --nms.")
@click.option("--iou-threshold", type=float, default=_build_default("iou_threshold"), show_default=True,
              help="With --nms.")
@click.option("--max-detections", type=int, default=_build_default("max_detections"), show_default=True,
              help="With --nms.")
def build(onnx_path, out, **options) -> None:
    """TensorRT plan from an ONNX (needs TensorRT and an NVIDIA GPU); writes build.json beside it."""
    from generator.export.tensorrt import build_info_path, build_plan

    info = build_plan(onnx_path, out, BuildOptions(**options), command=invoked_command(), echo=click.echo)
    nms_text = f", EfficientNMS (max {info['max_detections']})" if info["nms"] else ""
    click.echo(f"wrote {out} ({info['plan']['bytes'] / 1e6:.1f} MB): {info['precision']}, batch "
               f"{info['min_batch']}..{info['max_batch']} (opt {info['opt_batch']}){nms_text}; TensorRT "
               f"{info['tensorrt']} on {info['gpu']['name']} in {info['seconds']:.0f} s; record {build_info_path(out)}")


COMMANDS = [export, quantize, build]
