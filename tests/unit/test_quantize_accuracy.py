"""Accuracy control (``quantize --max-drop``): sensitivity ranking, greedy revert, refusal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from generator.compress import quantize as q
from generator.compress.quantize import accuracy, surgery
from generator.errors import TritonForgeError, UsageError
from generator.samples import write_samples

S = 128


# ------------------------------------------------------------------ the decision logic, deterministic


def fake_map(penalties):
    """mAP = 0.5 minus the penalty of every layer still quantized."""
    return lambda reverted: 0.5 - sum(p for name, p in penalties.items() if name not in set(reverted))


def test_reverts_the_fewest_ranked_layers_that_meet_the_bound():
    penalties = {f"n{i}": p for i, p in enumerate([0.02, 0.01, 0.004, 0.003, 0.002, 0.001] + [0.0001] * 10)}
    ranked = list(penalties)  # most sensitive first
    result = accuracy.accuracy_control(ranked, fake_map(penalties), 0.5, max_drop=0.01)
    final = result.final
    assert final.drop <= 0.01 and result.reverted == ranked[:final.reverted]
    assert final.reverted == 3  # 2 layers leave 0.011, 3 leave 0.007
    grow = [s for s in result.steps if s.phase in ("start", "grow")]
    assert [s.reverted for s in grow] == [0, 1, 2, 4]  # 1, 2, 4, ... until within
    assert all(not s.within for s in grow[:-1]) and grow[-1].within
    drops = [s.drop for s in grow]
    assert drops == sorted(drops, reverse=True)  # reverting more never loses accuracy here
    assert json.dumps(result.to_json()) and "chose 3 layers" in "\n".join(result.lines())


def test_nothing_reverted_when_already_within():
    result = accuracy.accuracy_control(["a", "b"], fake_map({"a": 0.001, "b": 0.001}), 0.5, max_drop=0.01)
    assert result.reverted == [] and [s.phase for s in result.steps] == ["start"]


def test_refuses_when_only_fp32_meets_the_bound():
    penalties = {"a": 0.01, "b": 0.01, "c": 0.01}
    with pytest.raises(TritonForgeError, match="cannot be met"):
        accuracy.accuracy_control(list(penalties), fake_map(penalties), 0.5, max_drop=0.005)


# ------------------------------------------------------------------ real models


def lively(det, calib: np.ndarray):
    """Outputs that depend on the image, class logits spread around 0 (``make_lively``)."""
    from make_models import make_lively

    make_lively(det, calib)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A lively yolo-n and a dataset whose val labels are that model's own confident
    detections: FP32 scores high, and INT8's differences show as a drop."""
    pytest.importorskip("torch")
    from generator.compress.calibration import calibration_images
    from generator.data.synth import synthesize
    from generator.export.onnx_export import export_onnx
    from generator.models.checkpoint import build_detector

    root = tmp_path_factory.mktemp("acc")
    data = synthesize(root / "data", 24, seed=3, imgsz=S, classes=3, val_fraction=0.5, progress=False)
    calib = calibration_images(data, S, S, 8)
    det = build_detector("yolo-n", 3, S, ["circle", "rectangle", "triangle"], seed=0)
    lively(det, calib)
    path = root / "lively.onnx"
    export_onnx(det, path, check_images=calib[:2])
    _label_with_model(path, data)
    return path, data, calib


def _label_with_model(path: Path, data: Path) -> None:
    from generator.data.dataset import load_dataset
    from generator.evaluation.predictors import Thresholds, decode_options, offline_detector, open_onnx
    from generator.export.signature import read_signature
    from PIL import Image

    sig = read_signature(path)
    detect = offline_detector(open_onnx(path, sig), sig.height, sig.width, Thresholds(score=0.3), **decode_options(sig))
    val = load_dataset(data, "val")
    for sample in val.samples:
        image = Path(sample.image_path)
        w, h = Image.open(image).size
        boxes, scores, classes = detect([image])[0]
        order = np.argsort(-scores)[:8]
        lines = [f"{int(classes[i])} {(b[0] + b[2]) / 2 / w:.6f} {(b[1] + b[3]) / 2 / h:.6f} "
                 f"{(b[2] - b[0]) / w:.6f} {(b[3] - b[1]) / h:.6f}" for i in order for b in [boxes[i]]]
        label = image.parent.parent.parent / "labels" / "val" / (image.stem + ".txt")
        label.write_text("\n".join(lines) + "\n")


def test_local_errors_rank_every_quantized_node(setup, tmp_path):
    import onnx

    from generator.compress.quantize.tuning import rank_layers

    path, _, calib = setup
    out = tmp_path / "full.onnx"
    q.quantize_onnx(path, out, calib, q.QuantizeConfig(method="minmax"))
    full = onnx.load(str(out))
    ranking = rank_layers(onnx.load(str(path)), full, calib[:2])
    names = surgery.quantized_nodes(full)
    assert sorted(r["name"] for r in ranking) == sorted(names)
    errors = [r["error"] for r in ranking]
    assert all(np.isfinite(errors)) and min(errors) >= 0 and errors[0] > 0
    measured = [e for e in errors if e > 0]
    assert measured == sorted(measured, reverse=True) and len(measured) > len(names) // 2


def test_accuracy_control_meets_the_bound(setup, tmp_path):
    path, data, _ = setup
    probe = q.quantize_from_images(path, tmp_path / "probe.onnx", data, 8,
                                   q.QuantizeConfig(method="minmax", max_drop=0.99))
    start = probe.accuracy.steps[0]
    assert start.phase == "start" and start.within and probe.accuracy.reverted == []
    assert probe.accuracy.fp32_map > 0.2 and start.drop > 0.002, "the fixture must lose accuracy in INT8"
    bound = start.drop / 2
    out = tmp_path / "m.int8.onnx"
    lines = []
    report = q.quantize_from_images(path, out, data, 8, q.QuantizeConfig(method="minmax", max_drop=bound),
                                    echo=lines.append)
    acc = report.accuracy
    final = acc.final
    assert final.reverted >= 1 and final.drop <= bound and acc.reverted
    grow = [s for s in acc.steps if s.phase in ("start", "grow")]
    assert [s.reverted for s in grow] == sorted({s.reverted for s in grow})  # growing steps
    assert all(not s.within for s in grow[:-1]) and grow[-1].within
    assert all(s.reverted > final.reverted or not s.within or s is final for s in acc.steps)
    # the written model is the one validated: its reverted layers are float, and it scores the same
    import onnx

    from generator.evaluation.run import run_eval

    still = set(surgery.quantized_nodes(onnx.load(str(out))))
    assert not still & set(acc.reverted)
    assert run_eval(data, onnx=out, progress=False).map50_95 == pytest.approx(final.map50_95, abs=1e-6)
    kept = [e for e in report.excluded if e.reason.startswith("accuracy control")]
    assert {e.name for e in kept} == set(acc.reverted)
    saved = json.loads(Path(str(out) + ".quantize.json").read_text())["report"]["accuracy"]
    assert saved["final"]["reverted"] == final.reverted and saved["max_drop"] == bound
    assert any("accuracy control" in line for line in lines) and "accuracy control" in report.summary()


def test_max_drop_needs_a_val_split(setup, tmp_path):
    path, data, calib = setup
    images = tmp_path / "images"
    write_samples(images, 8)
    out = tmp_path / "x.onnx"
    with pytest.raises(UsageError, match="val"):
        q.quantize_from_images(path, out, images, 8, q.QuantizeConfig(max_drop=0.01))
    with pytest.raises(UsageError, match="val split"):
        q.quantize_onnx(path, out, calib, q.QuantizeConfig(max_drop=0.01))
    assert not out.exists() and list(tmp_path.glob("*.onnx*")) == []
