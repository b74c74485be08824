"""Every output layout served by the real (bundled) Triton: the fixture detectors of
tests/models/layouts.py, each generated with ``tritonforge generate`` (layout auto-detected
or given the flags its file needs), all in one repository on one server. Checked: the known
detections come back through the ensemble (letterboxed images included, boxes in original
pixels), a fixed-batch export survives concurrent clients, and served mAP equals offline
mAP (``eval --url`` / ``eval --onnx``) at the same thresholds."""

from __future__ import annotations

import concurrent.futures as cf
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import layouts as fixtures
from client import DetectionClient
from generator.cli import cli
from generator.evaluation.run import run_eval
from generator.evaluation.thresholds import Thresholds
from generator.export.input_format import InputFormat
from generator.repository.render import parse_config
from generator.serve.server import TritonServer, free_port

THRESHOLDS = Thresholds(score=0.3, iou=0.5, max_detections=50)
LABELS = list(fixtures.NAMES)
# name: (generate flags the file needs, the same for eval --onnx as read_signature keywords)
SERVED = {
    "yolov5": ([], {}),
    "yolov5_b1": ([], {}),
    "ultralytics_dynamic": ([], {}),
    "yolo26_e2e_dynamic": ([], {}),
    "efficient_nms": (["--labels", "LABELS"], {"labels": LABELS}),
    "detr_logits": (["--scores", "logits", "--labels", "LABELS"], {"scores": "logits", "labels": LABELS}),
    "rtdetr": ([], {}),
    "yolov5_bgr255": (["--input-scale", "255", "--channel-order", "bgr"],
                      {"input_format": InputFormat(scale=1.0, channel_order="BGR")}),
    "yolov5_imagenet": (["--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"],
                        {"input_format": InputFormat(mean=fixtures.IMAGENET.mean, std=fixtures.IMAGENET.std)}),
}


def _generate(fx: fixtures.Fixture, name: str, out: Path, labels: Path) -> str:
    flags = [str(labels) if f == "LABELS" else f for f in SERVED[name][0]]
    args = ["generate", "--onnx", str(fx.path), "--target", "embedded", "--out", str(out), "--name", name,
            "--score-threshold", str(THRESHOLDS.score), "--iou-threshold", str(THRESHOLDS.iou),
            "--max-detections", str(THRESHOLDS.max_detections), *flags]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, f"generate {name}: {result.output}"
    return result.output


@pytest.fixture(scope="module")
def layout_repo(tmp_path_factory):
    """One repository holding every fixture's four models (generated one by one, then merged)."""
    root = tmp_path_factory.mktemp("layouts_served")
    labels = root / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    repo, models, outputs = root / "repo", {}, {}
    repo.mkdir()
    (root / "gen").mkdir()
    for name in SERVED:
        models[name] = fixtures.build(name, root / "models")
        outputs[name] = _generate(models[name], name, root / "gen" / name, labels)
        for folder in (root / "gen" / name).iterdir():
            if (folder / "config.pbtxt").is_file():
                shutil.copytree(folder, repo / folder.name)
    return repo, models, outputs


@pytest.fixture(scope="module")
def layout_server(layout_repo):
    srv = TritonServer(layout_repo[0], free_port(), free_port(), free_port())
    srv.start().wait_ready(timeout=300)
    yield srv
    assert srv.stop() == 0, "Triton did not shut down cleanly"


def scenes_for(fx: fixtures.Fixture, seed: int):
    h, w = fx.imgsz
    return (fixtures.random_scenes(5, h, w, seed=seed)
            + fixtures.random_scenes(1, h, w // 2, seed=seed + 1, scale=2)
            + fixtures.random_scenes(1, h // 2, w, seed=seed + 2, scale=2))


def assert_served_known(dets, scene: fixtures.Scene, kind: str, where: str):
    exp = fixtures.expected(scene, kind, THRESHOLDS.score)
    got = sorted(dets, key=lambda d: (d.class_id, d.x1, d.y1))
    order = np.lexsort((exp.boxes[:, 1], exp.boxes[:, 0], exp.classes))
    assert [d.class_id for d in got] == exp.classes[order].tolist(), where
    np.testing.assert_allclose([[d.x1, d.y1, d.x2, d.y2] for d in got], exp.boxes[order].reshape(-1, 4),
                               atol=1e-3, err_msg=where)
    np.testing.assert_allclose([d.score for d in got], exp.scores[order], atol=5e-5, err_msg=where)
    assert all(a.score >= b.score for a, b in zip(dets, dets[1:])), f"{where}: not best first"


@pytest.mark.parametrize("name", list(SERVED))
def test_served_detections_are_the_known_ones(layout_server, layout_repo, name):
    fx = layout_repo[1][name]
    scenes = scenes_for(fx, seed=21)
    with DetectionClient(layout_server.endpoints.grpc, model=f"{name}_ensemble") as c:
        info = c.info()
        served = c.detect_batch([s.png() for s in scenes])
    assert info.input_size == fx.imgsz
    assert info.class_names == fixtures.NAMES
    assert sum(len(d) for d in served) >= 10
    for i, (dets, scene) in enumerate(zip(served, scenes)):
        assert_served_known(dets, scene, fx.kind, f"{name} image {i}")


def test_fixed_batch_export_never_declares_a_batch_it_cannot_run(layout_server, layout_repo):
    """Ultralytics'/YOLOv5's default batch-1 export: either max batch 1 without dynamic
    batching, or the batch axis made dynamic (checked by the generator); the CLI says which.
    Under 8 concurrent clients every request then succeeds with its known detections."""
    repo, models, outputs = layout_repo
    config = parse_config((repo / "yolov5_b1" / "config.pbtxt").read_text())
    if config.max_batch_size > 1:
        import onnx

        onnx_file = next((repo / "yolov5_b1" / "1").glob("*.onnx"))
        dim = onnx.load(str(onnx_file)).graph.input[0].type.tensor_type.shape.dim[0]
        assert not dim.HasField("dim_value"), "max batch > 1 declared for a graph whose batch is fixed"
    else:
        assert not config.HasField("dynamic_batching")
    assert "batch" in outputs["yolov5_b1"].lower()
    scenes = fixtures.random_scenes(32, 128, 128, seed=31)

    def one(scene):
        with DetectionClient(layout_server.endpoints.grpc, model="yolov5_b1_ensemble") as c:
            return c.detect(scene.png())

    with cf.ThreadPoolExecutor(8) as pool:
        served = list(pool.map(one, scenes))
    for i, (dets, scene) in enumerate(zip(served, scenes)):
        assert_served_known(dets, scene, "objectness", f"concurrent image {i}")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts_served_data")
    return {size: fixtures.write_dataset(root / f"{size[0]}x{size[1]}",
                                         fixtures.random_scenes(12, *size, seed=41)
                                         + fixtures.random_scenes(2, size[0], size[1] // 2, seed=42, scale=2))
            for size in ((128, 128), (384, 640))}


@pytest.mark.parametrize("name", list(SERVED))
def test_served_map_equals_offline_map(layout_server, layout_repo, datasets, name):
    fx = layout_repo[1][name]
    data = datasets[fx.imgsz]
    offline = run_eval(data, onnx=fx.path, thresholds=THRESHOLDS, progress=False, read_options=SERVED[name][1])
    served = run_eval(data, url=layout_server.endpoints.grpc, ensemble=f"{name}_ensemble", progress=False)
    assert 0.3 < offline.map50_95 < 0.95
    assert served.detections == offline.detections
    assert served.map50_95 == pytest.approx(offline.map50_95, abs=1e-9)
    assert served.map50 == pytest.approx(offline.map50, abs=1e-9)
