"""Every output layout, offline: fixture ONNX files (tests/models/layouts.py) that reproduce the
real exporters' graph tails give their KNOWN detections through the path ``eval --onnx`` takes
(``read_signature`` -> ONNX Runtime -> the server's preprocess and the layout's decode),
``tritonforge eval --onnx`` gives the mAP of those known detections, the INT8 model from
``tritonforge quantize`` keeps them, and what cannot run offline is refused with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

import layouts as fixtures
from generator.cli import cli
from generator.errors import UsageError
from generator.evaluation.coco import evaluate
from generator.evaluation.predictors import decode_options, offline_detector, open_onnx
from generator.evaluation.thresholds import Thresholds
from generator.export.input_format import InputFormat
from generator.export.signature import read_signature

THRESHOLDS = Thresholds(score=0.3, iou=0.5, max_detections=50)
LABELS = list(fixtures.NAMES)
# what read_signature must be told where the file does not say it (the CLI flags' keywords)
READ = {
    "efficient_nms": {"labels": LABELS},
    "detr_logits": {"scores": "logits"},
    "dynamic_no_meta": {"imgsz": (128, 128), "labels": LABELS},
    "yolov5_bgr255": {"input_format": InputFormat(scale=1.0, channel_order="BGR")},
    "yolov5_imagenet": {"input_format": InputFormat(mean=fixtures.IMAGENET.mean, std=fixtures.IMAGENET.std)},
}
RUNNABLE = [n for n in fixtures.BUILDERS if not n.startswith("efficient_nms_trt")]
TRT_PLUGIN = ["efficient_nms_trt", "efficient_nms_trt_nodomain"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """``models(name)`` -> the fixture, built once per module."""
    out, built = tmp_path_factory.mktemp("layout_models"), {}

    def get(name: str) -> fixtures.Fixture:
        if name not in built:
            built[name] = fixtures.build(name, out)
        return built[name]

    return get


def scenes_for(fx: fixtures.Fixture, seed: int = 0, min_level: int = 110):
    """Four scenes at the network size, one letterboxed into the width, one into the height."""
    h, w = fx.imgsz
    return (fixtures.random_scenes(4, h, w, seed=seed, min_level=min_level)
            + fixtures.random_scenes(1, h, w // 2, seed=seed + 1, scale=2, min_level=min_level)
            + fixtures.random_scenes(1, h // 2, w, seed=seed + 2, scale=2, min_level=min_level))


def write_pngs(scenes, folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, scene in enumerate(scenes):
        paths.append(folder / f"{i}.png")
        paths[-1].write_bytes(scene.png())
    return paths


def detect_offline(fx: fixtures.Fixture, paths, name: str, path: Path = None, **read):
    """``eval --onnx``'s detector: signature -> ONNX Runtime -> preprocess + layout decode."""
    onnx_path = path or fx.path
    sig = read_signature(onnx_path, **{**READ.get(name, {}), **read})
    detect = offline_detector(open_onnx(onnx_path, sig), sig.height, sig.width, THRESHOLDS, **decode_options(sig))
    return detect(paths)


def sorted_dets(boxes, scores, classes):
    order = np.lexsort((np.asarray(boxes)[:, 1], np.asarray(boxes)[:, 0], np.asarray(classes)))
    return np.asarray(boxes)[order], np.asarray(scores)[order], np.asarray(classes)[order]


def assert_known(got, exp: fixtures.Expected, box_tol=1e-3, score_tol=5e-5, where=""):
    """Same detections as a set: classes exact, boxes and scores within the tolerances (the
    network averages 1024 pixels in float32: scores agree with numpy's float64 to ~2e-5)."""
    gb, gs, gc = sorted_dets(*got)
    eb, es, ec = sorted_dets(exp.boxes, exp.scores, exp.classes)
    assert len(gc) == len(ec), f"{where}: {len(gc)} detections, expected {len(ec)}: {gc} vs {ec}"
    np.testing.assert_array_equal(gc, ec, err_msg=where)
    np.testing.assert_allclose(gb, eb, atol=box_tol, err_msg=where)
    np.testing.assert_allclose(gs, es, atol=score_tol, err_msg=where)
    # best first, as the ensemble returns them
    assert np.all(np.diff(np.asarray(got[1])) <= 1e-7), f"{where}: scores not descending"


# ---------------------------------------------------------------- the fixtures themselves


OUTPUTS = {  # name: [(output, shape at batch 2 (1 for fixed batch), dtype)]
    "yolov5": [("output0", (2, 160, 8), np.float32)],
    "yolov5_b1": [("output0", (1, 160, 8), np.float32)],
    "ultralytics_dynamic": [("output0", (2, 7, 1200), np.float32)],
    "yolo26_e2e": [("output0", (2, 50, 6), np.float32)],
    "efficient_nms": [("num_dets", (2, 1), np.int32), ("det_boxes", (2, 20, 4), np.float32),
                      ("det_scores", (2, 20), np.float32), ("det_classes", (2, 20), np.int32)],
    "detr_logits": [("pred_boxes", (2, 16, 4), np.float32), ("pred_logits", (2, 16, 3), np.float32)],
    "rtdetr": [("output0", (2, 240, 7), np.float32)],
}


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_fixture_outputs_have_the_exporters_names_shapes_and_dtypes(models, name):
    fx = models(name)
    sess = ort.InferenceSession(str(fx.path), providers=["CPUExecutionProvider"])
    batch = OUTPUTS[name][0][1][0]
    x = np.zeros((batch, 3, *fx.imgsz), np.float32)
    got = [(o.name, r.shape, r.dtype) for o, r in zip(sess.get_outputs(), sess.run(None, {"images": x}))]
    assert got == [(n, s, np.dtype(t)) for n, s, t in OUTPUTS[name]]


def test_end_to_end_fixture_has_the_topk_gather_tail(models):
    import onnx

    ops = {n.op_type for n in onnx.load(str(models("yolo26_e2e").path)).graph.node}
    assert {"TopK", "GatherElements"} <= ops


@pytest.mark.parametrize("name", TRT_PLUGIN)
def test_trt_fixture_holds_a_real_efficientnms_node(models, name):
    import onnx

    model = onnx.load(str(models(name).path))
    nodes = [n for n in model.graph.node if n.op_type == "EfficientNMS_TRT"]
    assert len(nodes) == 1 and nodes[0].domain == ("TRT" if name == "efficient_nms_trt" else "")
    assert [o.name for o in model.graph.output] == list(fixtures.EFFICIENT_NMS_OUTPUTS)


# ---------------------------------------------------------------- reading them


SIGNATURES = {  # name: (layout, (h, w), batch, class names from the metadata)
    "yolov5": ("objectness", (128, 128), None, True),
    "yolov5_b1": ("objectness", (128, 128), 1, True),
    "ultralytics_dynamic": ("anchor-free", (384, 640), None, True),
    "ultralytics_b1": ("anchor-free", (384, 640), 1, True),
    "yolo26_e2e": ("end-to-end", (384, 640), None, True),
    "yolo26_e2e_dynamic": ("end-to-end", (384, 640), None, True),
    "efficient_nms": ("efficient-nms", (128, 128), None, False),
    "detr_logits": ("detr", (128, 128), None, False),
    "rtdetr": ("detr", (384, 640), None, True),
}


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_layout_size_batch_and_names_are_detected(models, name):
    layout, size, batch, named = SIGNATURES[name]
    sig = read_signature(models(name).path, **READ.get(name, {}))
    assert (sig.layout, (sig.height, sig.width), sig.batch, sig.num_classes) == (layout, size, batch, 3)
    assert sig.has_trt_plugin is False
    if named:
        assert sig.names == fixtures.NAMES


def test_rtdetr_metadata_says_probabilities_and_logits_need_the_flag(models):
    assert read_signature(models("rtdetr").path).scores == "probs"
    with pytest.raises(UsageError, match="--scores"):
        read_signature(models("detr_logits").path)


def test_dynamic_height_width_without_metadata_needs_imgsz(models):
    with pytest.raises(UsageError, match="--imgsz"):
        read_signature(models("dynamic_no_meta").path, labels=LABELS)
    sig = read_signature(models("dynamic_no_meta").path, imgsz=(128, 128), labels=LABELS)
    assert (sig.height, sig.width, sig.num_classes) == (128, 128, 3)


@pytest.mark.parametrize("name", TRT_PLUGIN)
def test_efficientnms_node_is_read_as_a_trt_plugin(models, name):
    sig = read_signature(models(name).path, labels=LABELS)
    assert sig.layout == "efficient-nms" and sig.has_trt_plugin is True
    assert [o.name for o in sig.outputs] == list(fixtures.EFFICIENT_NMS_OUTPUTS)
    assert [o.dtype for o in sig.outputs] == ["INT32", "FP32", "FP32", "INT32"]


# ---------------------------------------------------------------- known detections offline


@pytest.mark.parametrize("name", RUNNABLE)
def test_offline_detections_are_the_known_ones(models, tmp_path, name):
    fx = models(name)
    scenes = scenes_for(fx)
    got = detect_offline(fx, write_pngs(scenes, tmp_path), name)
    assert sum(len(g[2]) for g in got) >= 10
    for i, (dets, scene) in enumerate(zip(got, scenes)):
        assert_known(dets, fixtures.expected(scene, fx.kind, THRESHOLDS.score), where=f"{name} image {i}")


def test_objectness_duplicates_are_removed_by_nms(models, tmp_path):
    """The second anchor's 40x40 box (IoU 0.64) scores above the threshold too: only NMS removes it."""
    fx = models("yolov5")
    scene = fixtures.Scene(128, 128, ((1, 1, (255, 0, 0)),))
    raw = ort.InferenceSession(str(fx.path)).run(None, {"images": fixtures.network_input([scene.image()])})[0][0]
    assert ((raw[:, 4] * raw[:, 5:].max(1)) > THRESHOLDS.score).sum() == 2
    got = detect_offline(fx, write_pngs([scene], tmp_path), "yolov5")[0]
    assert_known(got, fixtures.expected(scene, "objectness", THRESHOLDS.score))


def test_bgr_255_model_needs_its_input_format(models, tmp_path):
    """Read as RGB 0..1 (no flags) the same images give other detections: the format matters."""
    fx = models("yolov5_bgr255")
    scenes = scenes_for(fx)[:4]
    got = detect_offline(fx, write_pngs(scenes, tmp_path), "yolov5_bgr255", input_format=InputFormat())
    known = [fixtures.expected(s, fx.kind, THRESHOLDS.score) for s in scenes]
    assert [list(g[2]) for g in got] != [list(k.classes) for k in known]


# ---------------------------------------------------------------- eval --onnx: the known mAP


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Square and wide scenes (and their letterboxed versions) as two YOLO datasets."""
    root = tmp_path_factory.mktemp("layout_data")
    square = fixtures.random_scenes(10, 128, 128, seed=5) + fixtures.random_scenes(2, 128, 64, seed=6, scale=2)
    wide = fixtures.random_scenes(10, 384, 640, seed=7) + fixtures.random_scenes(2, 192, 640, seed=8, scale=2)
    return {(128, 128): (fixtures.write_dataset(root / "square", square), square),
            (384, 640): (fixtures.write_dataset(root / "wide", wide), wide)}


def known_map(data_yaml: Path, scenes, kind: str):
    """The mAP of the known detections, through the same COCO evaluation."""
    from generator.data.dataset import load_dataset

    ds = load_dataset(data_yaml, "val")
    by_name = {f"{i:03d}.png": fixtures.expected(s, kind, THRESHOLDS.score) for i, s in enumerate(scenes)}

    def detect(paths):
        return [(by_name[Path(p).name].boxes, by_name[Path(p).name].scores, by_name[Path(p).name].classes)
                for p in paths]

    return evaluate(ds, detect, progress=False)


CLI_READ = {"detr_logits": ["--scores", "logits"]}


@pytest.mark.parametrize("name", ["yolov5", "yolov5_b1", "ultralytics_dynamic", "yolo26_e2e", "detr_logits", "rtdetr"])
def test_eval_onnx_gives_the_known_map(models, dataset, name):
    fx = models(name)
    data_yaml, scenes = dataset[fx.imgsz]
    want = known_map(data_yaml, scenes, fx.kind)
    assert 0.3 < want.map50_95 < 0.95  # false positives and a missed object per image
    result = CliRunner().invoke(cli, ["eval", "--data", str(data_yaml), "--onnx", str(fx.path), "--json",
                                       "--score-threshold", "0.3", "--iou-threshold", "0.5",
                                       "--max-detections", "50", *CLI_READ.get(name, [])])
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert got["map50_95"] == pytest.approx(want.map50_95, abs=1e-6)
    assert got["map50"] == pytest.approx(want.map50, abs=1e-6)
    assert got["detections"] == want.detections


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize("name", TRT_PLUGIN)
@pytest.mark.parametrize("target", ["embedded", "cpu"])
def test_efficientnms_node_refused_by_onnxruntime_targets(models, tmp_path, name, target):
    out = tmp_path / "repo"
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    result = CliRunner().invoke(cli, ["generate", "--onnx", str(models(name).path), "--target", target,
                                       "--out", str(out), "--labels", str(labels)])
    assert result.exit_code == 2, result.output
    assert "EfficientNMS_TRT" in result.output and "--target gpu or --target jetson" in result.output
    assert not out.exists()


def test_efficientnms_node_refused_by_eval_onnx(models, dataset):
    data_yaml, _ = dataset[(128, 128)]
    onnx_path = models("efficient_nms_trt").path
    result = CliRunner().invoke(cli, ["eval", "--data", str(data_yaml), "--onnx", str(onnx_path)])
    assert result.exit_code == 2, result.output
    assert "EfficientNMS_TRT" in result.output


@pytest.mark.parametrize("name, layout", [("yolo26_e2e", "end-to-end"), ("efficient_nms", "efficient-nms"),
                                          ("rtdetr", "detr"), ("yolov5", "objectness")])
def test_nms_engine_refused_where_the_layout_is_not_anchor_free(models, tmp_path, name, layout):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    out = tmp_path / "repo"
    result = CliRunner().invoke(cli, ["generate", "--onnx", str(models(name).path), "--target", "gpu",
                                       "--out", str(out), "--labels", str(labels), "--nms", "engine"])
    assert result.exit_code == 2, result.output
    assert "--nms engine" in result.output and layout in result.output
    assert not out.exists()


# ---------------------------------------------------------------- INT8: decode/TopK/NMS tail kept in float

# the probe's 1x1 convolutions are quantized: class logits move by a few hundredths at most;
# boxes come from biases and the float tail. Scenes with every square far above the threshold:
# the same detections, classes exact, scores within 0.02, boxes within half a pixel
INT8_SCORE_TOL = 0.02
INT8_BOX_TOL = 0.5


@pytest.mark.parametrize("name", ["yolov5", "ultralytics_dynamic", "yolo26_e2e", "efficient_nms", "detr_logits"])
def test_int8_model_keeps_the_known_detections(models, dataset, tmp_path, name):
    fx = models(name)
    data_yaml, _ = dataset[fx.imgsz]
    out = tmp_path / f"{name}.int8.onnx"
    # op-type selection: on these tiny graphs measured selection rightly keeps everything float
    args = ["quantize", "--onnx", str(fx.path), "--data", str(data_yaml), "--samples", "8", "--out", str(out),
            "--select", "op-type"]
    result = CliRunner().invoke(cli, args + CLI_READ.get(name, []))
    assert result.exit_code == 0, result.output
    import onnx

    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert "QuantizeLinear" in ops
    scenes = scenes_for(fx, seed=11, min_level=180)  # every square far above the threshold
    got = detect_offline(fx, write_pngs(scenes, tmp_path / "img"), name, path=out)
    for i, (dets, scene) in enumerate(zip(got, scenes)):
        exp = fixtures.expected(scene, fx.kind, THRESHOLDS.score)
        assert_known(dets, exp, box_tol=INT8_BOX_TOL, score_tol=INT8_SCORE_TOL, where=f"{name} int8 image {i}")
