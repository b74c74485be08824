"""``eval --onnx`` and ``bench variants`` on detectors of any output layout: decoded by the
layout read from the file (or given), fed in its input format, fixed batches honoured."""

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
import layouts as L  # noqa: E402

from generator.bench import run_variants  # noqa: E402
from generator.cli import cli  # noqa: E402
from generator.evaluation.predictors import Thresholds  # noqa: E402
from generator.evaluation.run import run_eval  # noqa: E402


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """End-to-end and fixed-batch anchor-free Ultralytics-style fixtures at 384x640, a dataset."""
    root = tmp_path_factory.mktemp("wide")
    data = L.write_dataset(root / "data", L.random_scenes(6, *L.WIDE, seed=2))
    return L.build("yolo26_e2e", root), L.build("ultralytics_b1", root), data


def test_eval_onnx_of_other_layouts_scores_the_known_detections(wide):
    e2e, b1, data = wide
    th = Thresholds(0.1, 0.7, 100)
    a = run_eval(data, onnx=e2e.path, thresholds=th, progress=False)
    b = run_eval(data, onnx=b1.path, thresholds=th, progress=False)  # batch 1 graph, evaluated 8 images a call
    assert a.detections == b.detections == sum(len(L.expected(s, "end-to-end", 0.1).scores)
                                               for s in L.random_scenes(6, *L.WIDE, seed=2))
    assert a.map50_95 == pytest.approx(b.map50_95, abs=1e-6) and 0.5 < a.map50_95 < 1


def test_bench_variants_rows_for_other_layouts(wide):
    e2e, b1, data = wide
    rows = run_variants(f"e2e={e2e.path},b1={b1.path}", data, echo=lambda _: None, rounds=1, runs=1)
    by = {r["name"]: r for r in rows}
    for name, fx in (("e2e", e2e), ("b1", b1)):  # the same figures as eval --onnx (default thresholds)
        offline = run_eval(data, onnx=fx.path, progress=False)
        assert by[f"{name} (onnxruntime)"]["map50_95"] == round(offline.map50_95, 4)
    assert by["e2e (onnxruntime)"]["map50_95"] > 0.5
    assert by["b1 (onnxruntime)"]["latency_ms_b8"] is None and by["b1 (onnxruntime)"]["note"] == "fixed batch 1"
    assert by["e2e (onnxruntime)"]["latency_ms_b8"] > 0


def test_eval_cli_takes_layout_and_scores(tmp_path):
    fx = L.build("detr_logits", tmp_path)
    data = L.write_dataset(tmp_path / "data", L.random_scenes(4, *fx.imgsz, seed=4))
    runner = CliRunner()
    r = runner.invoke(cli, ["eval", "--onnx", str(fx.path), "--data", str(data), "--json"])
    assert r.exit_code == 2 and "--scores logits|probs" in r.output
    r = runner.invoke(cli, ["eval", "--onnx", str(fx.path), "--data", str(data), "--scores", "logits",
                            "--layout", "detr", "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["eval", "--model", "x.pt", "--data", str(data), "--layout", "detr"])
    assert r.exit_code == 2
