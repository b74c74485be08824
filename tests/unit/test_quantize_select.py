"""Measured selection (``quantize --select measured``) and the Q/DQ graph surgery under it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from generator.compress import quantize as q
from generator.compress.calibration import calibration_images
from generator.compress.quantize import select, surgery
from generator.compress.quantize.tuning import float_initializers
from generator.samples import write_samples

S = 128  # tiny_yolo_onnx's input size


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> np.ndarray:
    folder = tmp_path_factory.mktemp("calib") / "calib"
    write_samples(folder, 8)
    return calibration_images(folder, S, S, 8)


@pytest.fixture(scope="module")
def full(tmp_path_factory, tiny_yolo_onnx, calib):
    """tiny_yolo_onnx fully quantized (op-type selection), with the float model it came from."""
    import onnx

    out = tmp_path_factory.mktemp("full") / "full.onnx"
    q.quantize_onnx(tiny_yolo_onnx, out, calib, q.QuantizeConfig(method="minmax"))
    return onnx.load(str(out)), onnx.load(str(tiny_yolo_onnx))


def run(model, x: np.ndarray):
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


class CostMeter(select.Meter):
    """Deterministic 'latency': a fixed cost per node, by op type and by whether it runs in
    int8. Here Conv and Mul get faster quantized, Concat and Resize slower, Add equal."""

    INT8 = {"Conv": 1.0, "Mul": 0.5, "Sigmoid": 0.5, "Concat": 1.5, "Resize": 3.0, "Add": 1.0}
    FLOAT = {"Conv": 3.0, "Mul": 1.0, "Sigmoid": 1.0, "Concat": 1.0, "Resize": 1.0, "Add": 1.0}

    def cost(self, model) -> float:
        quantized = set(surgery.quantized_nodes(model))
        return 10.0 + sum((self.INT8 if n.name in quantized else self.FLOAT).get(n.op_type, 0.2)
                          for n in model.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear"))

    def compare(self, a, b):
        ta, tb = self.cost(a), self.cost(b)
        return ta, tb, tb / ta

    def latency(self, models):
        return {k: self.cost(m) for k, m in models.items()}


def test_groups_cover_every_quantized_node_once(full):
    model, _ = full
    names = surgery.quantized_nodes(model)
    groups = select.groups_of(model, names)
    flat = [n for g in groups for n in g.nodes]
    assert sorted(flat) == sorted(names) and len(flat) == len(set(flat))
    convs = [g for g in groups if g.op_type == "Conv"]
    assert 1 < len(convs) <= select.MAX_BLOCKS
    assert all(g.name.startswith("Conv ") for g in convs)
    assert select.block_of("/backbone/stage2/stage2.1/cv1/conv/Conv") == "backbone/stage2"


def test_reverting_every_node_gives_the_float_model(full, calib):
    model, source = full
    back = surgery.to_float(model, surgery.quantized_nodes(model), float_initializers(source))
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in back.graph.node)
    for got, want in zip(run(back, calib[:2]), run(source, calib[:2])):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_decisions_follow_the_recorded_timings(full, calib):
    model, source = full
    sel = select.measured_selection(model, source, CostMeter(), "onnxruntime", threads=2, batch=8, margin=0.02)
    decided = {t.group.op_type: t.quantize for t in sel.timings if t.group.op_type != "Conv"}
    assert decided["Concat"] is False and decided["Resize"] is False and decided["Add"] is False
    assert decided["Mul"] is True and decided["Sigmoid"] is True
    assert all(t.quantize for t in sel.timings if t.group.op_type == "Conv")
    for t in sel.timings:  # each decision is the one its own figures give
        assert t.quantize == (t.speedup > 1.02)
        assert t.speedup == pytest.approx(t.float_ms / t.quantized_ms)
    assert sel.latency_ms["selected"] < sel.latency_ms["full_int8"] < sel.latency_ms["fp32"]
    # the selected model: float groups read no Q/DQ, the rest still does; it runs
    selected = surgery.to_float(model, sel.float_nodes, float_initializers(source))
    still = set(surgery.quantized_nodes(selected))
    assert not still & set(sel.float_nodes)
    assert {n for t in sel.timings if t.quantize for n in t.group.nodes} <= still
    outputs = run(selected, calib[:2])
    assert all(np.isfinite(y).all() for y in outputs)
    assert "Concat" in "\n".join(sel.table()) and json.dumps(sel.to_json())


def test_measured_selection_on_the_real_runtime(tiny_yolo_onnx, calib, tmp_path, monkeypatch):
    """Real timing: checks structure only (decisions depend on this machine)."""
    monkeypatch.setattr(select, "MAX_ROUNDS", 3)
    out = tmp_path / "m.int8.onnx"
    lines = []
    report = q.quantize_onnx(tiny_yolo_onnx, out, calib, q.QuantizeConfig(
        method="minmax", select="measured", threads=1, measure_batch=2, measure_seconds=1), echo=lines.append)
    assert lines and lines[0].startswith("measured selection:")
    sel = report.selection
    assert sel.runtime == "onnxruntime" and sel.timings and set(sel.latency_ms) == {"fp32", "full_int8", "selected"}
    import onnx

    written = onnx.load(str(out))
    still = set(surgery.quantized_nodes(written))
    for t in sel.timings:
        assert t.quantize == (t.speedup > 1 + sel.margin)
        assert (set(t.group.nodes) <= still) if t.quantize else not (set(t.group.nodes) & still)
    measured = [e for e in report.excluded if e.reason.startswith("measured on onnxruntime")]
    assert {e.name for e in measured} == set(sel.float_nodes)
    saved = json.loads(Path(str(out) + ".quantize.json").read_text())["report"]
    assert saved["selection"]["mode"] == "measured"
    assert [g["decision"] for g in saved["selection"]["groups"]] == ["int8" if t.quantize else "float"
                                                                     for t in sel.timings]
    assert "measured selection on onnxruntime" in report.summary()
    assert all(np.isfinite(y).all() for y in run(written, calib[:2]))


def test_openvino_when_available(tiny_yolo_onnx, calib, tmp_path, monkeypatch):
    from generator.runners import open_runner

    try:
        open_runner("openvino", tiny_yolo_onnx, threads=1)
    except Exception as exc:  # noqa: BLE001 - any failure: this host has no OpenVINO runner
        pytest.skip(f"openvino runner not available: {exc}")
    monkeypatch.setattr(select, "MAX_ROUNDS", 3)
    every = select.groups_of
    monkeypatch.setattr(select, "groups_of", lambda model, names: every(model, names)[:2])  # OpenVINO compiles slowly
    report = q.quantize_onnx(tiny_yolo_onnx, tmp_path / "ov.onnx", calib, q.QuantizeConfig(
        method="minmax", select="measured", runtime="openvino", threads=1, measure_batch=2, measure_seconds=1))
    assert report.selection.runtime == "openvino" and report.selection.timings


def test_config_checks():
    from generator.errors import UsageError

    with pytest.raises(UsageError, match="--select"):
        q.QuantizeConfig(select="fastest")
    with pytest.raises(UsageError, match="--runtime"):
        q.QuantizeConfig(runtime="tvm")
    with pytest.raises(UsageError, match="--max-drop"):
        q.QuantizeConfig(max_drop=-0.1)
    assert q.QuantizeConfig().select == "op-type"  # the library does not time unless asked
