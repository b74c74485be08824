"""Input formats and their flag parsers; what each exporter's metadata says."""

import click
import pytest
from click.testing import CliRunner

from generator.errors import UsageError
from generator.export.exporter_meta import ExporterMeta, read_exporter_meta, register_reader
from generator.export.input_format import (
    InputFormat, click_callback, input_format_from_flags, parse_imgsz, parse_numbers, parse_scores,
)

# ---------------------------------------------------------------- input format


def test_default_format_is_the_preprocess_stage_defaults():
    fmt = InputFormat()
    assert fmt.is_default and fmt.describe() == "RGB, 0..1"
    assert fmt.parameters() == {"scale": "0.00392156862745098", "channel_order": "RGB", "mean": "0,0,0",
                                "std": "1,1,1"}


def test_flags_make_a_format():
    assert input_format_from_flags() is None  # nothing given: the metadata's stands
    fmt = input_format_from_flags("255", "bgr", "103.53,116.28,123.675", "57.375,57.12,58.395")
    assert fmt == InputFormat(1.0, "BGR", (103.53, 116.28, 123.675), (57.375, 57.12, 58.395))
    assert fmt.parameters() == {"scale": "1.0", "channel_order": "BGR", "mean": "103.53,116.28,123.675",
                                "std": "57.375,57.12,58.395"}
    assert fmt.describe() == "BGR, 0..255, mean 103.53,116.28,123.675, std 57.375,57.12,58.395"
    assert input_format_from_flags(channel_order="BGR") == InputFormat(channel_order="BGR")
    assert not input_format_from_flags(channel_order="BGR").is_default
    assert InputFormat(mean=[0, 0, 0]) == InputFormat()  # lists and ints compare as the tuples of floats


@pytest.mark.parametrize("kwargs, message", [
    ({"input_scale": "100"}, r"--input-scale must be 1 \(inputs in 0..1\) or 255"),
    ({"channel_order": "rgba"}, r"--channel-order must be rgb or bgr, got 'rgba'"),
    ({"mean": "1,2"}, r"--mean takes 3 comma-separated numbers, got 2 in '1,2'"),
    ({"std": "1,x,3"}, r"--std takes 3 comma-separated numbers, got '1,x,3'"),
    ({"std": "1,0,1"}, r"input std values must be > 0, got \[1.0, 0.0, 1.0\]"),
])
def test_bad_flags(kwargs, message):
    with pytest.raises(UsageError, match=message):
        input_format_from_flags(**kwargs)


def test_imgsz_and_scores_parsers():
    assert parse_imgsz("384,640") == (384, 640)
    assert parse_imgsz("640") == (640, 640)
    assert parse_imgsz(" 384 , 640 ") == (384, 640)
    for bad in ("0,640", "a,b", "1,2,3"):
        with pytest.raises(UsageError, match="--imgsz"):
            parse_imgsz(bad)
    assert parse_numbers("1,2.5,-3", 3, "--mean") == (1.0, 2.5, -3.0)
    assert (parse_scores(None), parse_scores("Logits"), parse_scores("probs")) == (None, "logits", "probs")
    with pytest.raises(UsageError, match="--scores must be logits or probs, got 'raw'"):
        parse_scores("raw")


def test_click_callback_reports_a_usage_error():
    @click.command()
    @click.option("--imgsz", callback=click_callback(parse_imgsz))
    def cmd(imgsz):
        click.echo(repr(imgsz))

    runner = CliRunner()
    assert runner.invoke(cmd, ["--imgsz", "384,640"]).output == "(384, 640)\n"
    assert runner.invoke(cmd, []).output == "None\n"
    bad = runner.invoke(cmd, ["--imgsz", "big"])
    assert bad.exit_code == 2 and "--imgsz takes H,W or one number (pixels), got 'big'" in bad.output


# ---------------------------------------------------------------- exporter metadata


def test_ultralytics_metadata():
    meta = {"author": "Ultralytics", "task": "detect", "head": "Detect", "imgsz": "[384, 640]", "batch": "1",
            "names": "{0: 'person', 1: 'bicycle'}", "end2end": "False", "args": "{'nms': None, 'batch': 1}"}
    got = read_exporter_meta(meta, "u.onnx")
    assert got == ExporterMeta(source="ultralytics", names=("person", "bicycle"), imgsz=(384, 640),
                               layout="anchor-free", scores="probs", input_format=InputFormat(),
                               detail="Ultralytics metadata: head Detect")
    assert read_exporter_meta({**meta, "end2end": "True"}, "u.onnx").layout == "end-to-end"
    assert read_exporter_meta({**meta, "args": "{'nms': True}"}, "u.onnx").layout == "end-to-end"
    detr = read_exporter_meta({**meta, "head": "RTDETRDecoder"}, "u.onnx")
    assert (detr.layout, detr.layout_required, detr.scores) == ("detr", True, "probs")
    with pytest.raises(UsageError, match=r"u.onnx: metadata 'names' is not a list of class names"):
        read_exporter_meta({**meta, "names": "person,bicycle"}, "u.onnx")
    with pytest.raises(UsageError, match=r"u.onnx: metadata 'imgsz' is not an image size \(H, W\): '\[1, 2, 3\]'"):
        read_exporter_meta({**meta, "imgsz": "[1, 2, 3]"}, "u.onnx")


def test_tritonforge_yolov5_and_other_metadata():
    ours = read_exporter_meta({"tritonforge.names": '["a", "b"]', "tritonforge.imgsz": "320",
                               "tritonforge.family": "yolo-n"}, "t.onnx")
    assert (ours.source, ours.names, ours.imgsz, ours.layout, ours.family) == \
        ("tritonforge", ("a", "b"), (320, 320), "anchor-free", "yolo-n")
    v5 = read_exporter_meta({"stride": "32", "names": "{0: 'a', 1: 'b'}"}, "v5.onnx")
    assert (v5.source, v5.names, v5.layout) == ("yolov5", ("a", "b"), "objectness")
    other = read_exporter_meta({"names": '["x", "y", "z"]', "producer": "someone"}, "o.onnx")
    assert (other.source, other.names, other.layout) == ("names", ("x", "y", "z"), None)
    assert read_exporter_meta({"names": "x;y"}, "o.onnx") == ExporterMeta()  # unreadable names: left out
    assert read_exporter_meta({}, "o.onnx") == ExporterMeta()


def test_readers_are_a_registry():
    with pytest.raises(ValueError, match="metadata reader 'ultralytics' is already registered"):
        register_reader("ultralytics", lambda meta, where: None)
