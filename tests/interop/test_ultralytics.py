"""Interoperability with Ultralytics, the real peer (``pytest -m interop``).

Real Ultralytics exports of YOLOv8n / YOLO11n / YOLO26n in every export mode go through
``tritonforge generate`` with the layout auto-detected (no ``--layout``), are served on the
bundled Triton, and must give Ultralytics' own predictions on the same ONNX: >= 99% of
its detections matched by ours (same class, IoU >= 0.9) and vice versa, on >= 20 images
with >= 100 detections in all; ``eval --onnx`` and ``eval --url`` agree. A ``data synth``
dataset must load in Ultralytics unchanged, with the counts our reader sees.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from .conftest import peer_python  # noqa: F401  (the skip logic lives there)

CASES = ["yolo26n-raw", "yolo26n-end2end", "yolov8n-nms", "yolo11n-raw", "yolov8n-384x640", "yolo11n-dynamic",
         "yolov8n-batch2"]
MIN_IMAGES, MIN_DETECTIONS, MIN_MATCHED, MIN_IOU = 20, 100, 0.99, 0.9
MAX_DETECTIONS = 300  # the peer's max_det


def cli(*args: str) -> str:
    """Run ``tritonforge ARGS``; its output (the command must succeed)."""
    from generator.cli import cli as group

    result = CliRunner().invoke(group, list(args), catch_exceptions=False)
    assert result.exit_code == 0, f"tritonforge {' '.join(args)} -> {result.exit_code}:\n{result.output}"
    return result.output


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes ``a [n, 4]`` and ``b [m, 4]``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def matched(theirs: list, ours: list) -> int:
    """Greedy one-to-one matches (same class, IoU >= MIN_IOU), best score first."""
    if not theirs or not ours:
        return 0
    t = np.array([r[:4] for r in theirs], np.float64)
    o = np.array([[d.x1, d.y1, d.x2, d.y2] for d in ours], np.float64)
    same = np.array([r[5] for r in theirs])[:, None] == np.array([d.class_id for d in ours])[None, :]
    iou = np.where(same, iou_matrix(t, o), 0.0)
    taken, count = set(), 0
    for i in np.argsort([-r[4] for r in theirs], kind="stable"):
        for j in np.argsort(-iou[i], kind="stable"):
            if iou[i, j] < MIN_IOU:
                break
            if j not in taken:
                taken.add(j)
                count += 1
                break
    return count


@pytest.fixture(scope="module")
def served(peer, tmp_path_factory):
    """``case -> (repository, served detections per usable image)``, one server at a time."""
    from client import DetectionClient
    from generator.serve.server import TritonServer, free_port

    def serve(case: dict):
        repo = tmp_path_factory.mktemp(case["name"]) / "repo"
        cli("generate", "--onnx", str(peer["folder"] / case["onnx"]), "--target", "embedded", "--out", str(repo),
            "--name", "ul", "--score-threshold", str(peer["conf"]), "--iou-threshold", str(peer["iou"]),
            "--max-detections", str(MAX_DETECTIONS))
        srv = TritonServer(repo, free_port(), free_port(), free_port())
        srv.start().wait_ready(timeout=300)
        try:
            images = [Path(peer["images"]) / name for name in case["usable"]]
            with DetectionClient(srv.endpoints.grpc, model="ul_ensemble") as c:
                dets = c.detect_batch([p.read_bytes() for p in images])
            onnx_eval, url_eval = eval_both(peer, case, srv.endpoints.grpc)
        finally:
            assert srv.stop() == 0, "Triton did not shut down cleanly"
        return repo, dict(zip(case["usable"], dets)), onnx_eval, url_eval

    return serve


def eval_both(peer: dict, case: dict, url: str):
    """``eval --onnx`` and ``eval --url`` JSON on the synthetic dataset's val split, same thresholds."""
    data = peer["data"]
    thresholds = ["--score-threshold", str(peer["conf"]), "--iou-threshold", str(peer["iou"]),
                  "--max-detections", str(MAX_DETECTIONS)]
    offline = json.loads(cli("eval", "--data", data, "--onnx", str(peer["folder"] / case["onnx"]), *thresholds,
                             "--json"))
    online = json.loads(cli("eval", "--data", data, "--url", url, "--ensemble", "ul_ensemble", "--json"))
    return offline, online


def case_of(peer: dict, name: str) -> dict:
    return next(c for c in peer["cases"] if c["name"] == name)


@pytest.mark.parametrize("name", CASES)
def test_served_detections_match_ultralytics(peer, served, name):
    case = case_of(peer, name)
    assert len(case["usable"]) >= MIN_IMAGES, f"{name}: only {len(case['usable'])} comparable images"
    _, ours, onnx_eval, url_eval = served(case)
    theirs = {n: case["predictions"][n] for n in case["usable"]}
    total_theirs = sum(len(v) for v in theirs.values())
    total_ours = sum(len(v) for v in ours.values())
    assert total_theirs >= MIN_DETECTIONS, f"{name}: Ultralytics gave only {total_theirs} detections"
    pairs = sum(matched(theirs[n], ours[n]) for n in case["usable"])
    assert pairs >= MIN_MATCHED * total_theirs, f"{name}: {pairs} of Ultralytics' {total_theirs} matched"
    assert pairs >= MIN_MATCHED * total_ours, f"{name}: {pairs} of our {total_ours} matched"
    _report(name=name, images=len(case["usable"]), ultralytics=total_theirs, ours=total_ours, matched=pairs,
            map50_95_onnx=onnx_eval["map50_95"], map50_95_url=url_eval["map50_95"])
    assert onnx_eval["map50_95"] == pytest.approx(url_eval["map50_95"], abs=1e-4)
    assert onnx_eval["map50"] == pytest.approx(url_eval["map50"], abs=1e-4)


def _report(**figures) -> None:
    """With TRITONFORGE_INTEROP_REPORT=FILE, append the case's figures to FILE (JSON lines)."""
    path = os.environ.get("TRITONFORGE_INTEROP_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(figures) + "\n")


def test_ultralytics_reads_our_synthetic_dataset(peer):
    """``data synth`` output loads in Ultralytics unchanged: same root, names, images and boxes."""
    from generator.data.dataset import load_yolo

    data = Path(peer["data"])
    seen = peer["dataset"]
    assert Path(seen["path"]) == data.parent.resolve()
    assert seen["names"] == load_yolo(data, "train").names
    for split in ("train", "val"):
        ours = load_yolo(data, split)
        assert seen["splits"][split]["images"] == len(ours.samples)
        assert seen["splits"][split]["files"] == sorted(s.image_path.name for s in ours.samples)
        assert seen["splits"][split]["boxes"] == sum(len(s.classes) for s in ours.samples)


def test_export_metadata_is_what_we_read(peer):
    """The metadata keys every Ultralytics export writes (the signature reader relies on them)."""
    for case in peer["cases"]:
        meta = case["metadata"]
        keys = {"author", "version", "stride", "task", "batch", "imgsz", "names", "args", "end2end", "head"}
        assert keys <= set(meta), f"{case['name']}: {sorted(meta)}"
        assert meta["author"] == "Ultralytics" and meta["task"] == "detect"
        assert meta["names"] == str(dict(enumerate(peer["names"])))
