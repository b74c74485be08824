"""Repositories for every output layout (issue 12): detector outputs, postprocess inputs and
parameters, ensemble wiring, the stage contracts; the refusals; fixed-batch ONNX both ways;
the input format from the signature to the preprocess stages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
from click.testing import CliRunner

import shaped_onnx
from generator.errors import UsageError
from generator.export.input_format import InputFormat
from generator.export.uint8_input import folded_bytes
from generator.repository.generate import generate
from generator.repository.render import parse_config
from generator.repository.targets import options_for
from test_stage_parameters import run_stage_contract

LAYOUT_CASES = list(shaped_onnx.LAYOUT_OUTPUTS)
TARGETS = ("embedded", "cpu", "gpu", "jetson")


def config(repo: Path, model: str):
    return parse_config((repo / model / "config.pbtxt").read_text())


def params(cfg) -> dict:
    return {k: v.string_value for k, v in cfg.parameters.items()}


def tensors(items) -> list:
    from tritonclient.grpc import model_config_pb2

    return [(t.name, model_config_pb2.DataType.Name(t.data_type), tuple(t.dims)) for t in items]


def reading(case: str) -> dict:
    layout = shaped_onnx.LAYOUT_OUTPUTS[case][0]
    return {"layout": layout, "scores": "logits" if layout == "detr" else None}


@pytest.fixture(scope="module")
def layout_repo(tmp_path_factory):
    """(case, target) -> its generated repository, built once on first use."""
    built = {}

    def get(case: str, target: str = "embedded") -> Path:
        if (case, target) not in built:
            work = tmp_path_factory.mktemp(f"{case}-{target}")
            onnx = shaped_onnx.layout_onnx(case, work / f"{case}.onnx")
            generate(onnx, target, work / "repo", options_for(target, name="m"), reading=reading(case))
            built[case, target] = work / "repo"
        return built[case, target]

    return get


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", LAYOUT_CASES)
def test_each_layout_reaches_the_postprocess_with_its_own_tensors(case, target, layout_repo):
    layout, outputs = shaped_onnx.LAYOUT_OUTPUTS[case]
    repo = layout_repo(case, target)
    want = [(name, f"TYPE_{dtype}", dims) for name, dtype, dims in outputs]
    assert tensors(config(repo, "m").output) == want  # every output, graph order, own data types
    post = config(repo, "m_postprocess")
    raws = ["RAW"] if len(outputs) == 1 else [f"RAW_{i}" for i in range(len(outputs))]
    assert tensors(post.input) == [(raw, t, d) for raw, (_, t, d) in zip(raws, want)] + [("TRANSFORM", "TYPE_FP32", (5,))]
    assert params(post) == {"score_threshold": "0.25", "iou_threshold": "0.45", "max_detections": "100",
                            "layout": layout, "input_height": "64", "input_width": "96",
                            "scores": "logits" if layout == "detr" else "probs"}
    steps = {step.model_name: step for step in config(repo, "m_ensemble").ensemble_scheduling.step}
    wires = [raw.lower() for raw in raws]
    assert dict(steps["m"].output_map) == dict(zip((name for name, _, _ in outputs), wires))
    assert dict(steps["m_postprocess"].input_map) == {**dict(zip(raws, wires)), "TRANSFORM": "transform"}
    manifest = json.loads((repo / "tritonforge.json").read_text())
    assert manifest["postprocess_layout"] == layout and manifest["batch_axis"] == "dynamic in the ONNX"


@pytest.mark.parametrize("case", LAYOUT_CASES)
def test_each_layouts_stages_load_their_generated_configs(case, layout_repo, pb_utils, monkeypatch):
    """The contract test of test_stage_parameters, on each layout's embedded repository: the
    postprocess checks its inputs against the layout, the detector its outputs against the ONNX."""
    repo = layout_repo(case)
    stages = run_stage_contract(repo, case, monkeypatch)
    assert set(stages) == {"m_preprocess", "m", "m_postprocess"}
    assert stages["m_postprocess"].layout.name == shaped_onnx.LAYOUT_OUTPUTS[case][0]
    assert stages["m_postprocess"].layout.height == 64 and stages["m_postprocess"].layout.width == 96


def test_the_engine_nms_plan_is_the_efficient_nms_layout(tmp_path):
    onnx = shaped_onnx.layout_onnx("anchor-free", tmp_path / "a.onnx")
    repo = generate(onnx, "gpu", tmp_path / "r", options_for("gpu", nms="engine", max_detections=7)).path
    assert tensors(config(repo, "detector").output) == [
        ("num_detections", "TYPE_INT32", (1,)), ("detection_boxes", "TYPE_FP32", (7, 4)),
        ("detection_scores", "TYPE_FP32", (7,)), ("detection_classes", "TYPE_INT32", (7,))]
    post = config(repo, "detector_postprocess")
    assert params(post)["layout"] == "efficient-nms" and [t.name for t in post.input][:4] == [
        "RAW_0", "RAW_1", "RAW_2", "RAW_3"]


# ---- refusals: exit 2, nothing written ---------------------------------------------------------

def _cli(args):
    from generator.cli import cli

    return CliRunner().invoke(cli, ["generate", *map(str, args)])


@pytest.mark.parametrize("target", ["embedded", "cpu"])
def test_tensorrt_only_nodes_are_refused_by_the_onnxruntime_targets(tmp_path, target):
    onnx = shaped_onnx.layout_onnx("efficient-nms", tmp_path / "trt.onnx", trt_plugin=True)
    out = tmp_path / "r"
    result = _cli(["--onnx", onnx, "--target", target, "--out", out])
    assert result.exit_code == 2 and not out.exists()
    assert (f"{onnx} contains TensorRT's EfficientNMS_TRT node, which only TensorRT runs: "
            "use --target gpu or --target jetson") in result.output


def test_tensorrt_only_nodes_are_served_by_the_tensorrt_targets(tmp_path):
    onnx = shaped_onnx.layout_onnx("efficient-nms", tmp_path / "trt.onnx", trt_plugin=True, batch=1)
    repo = generate(onnx, "gpu", tmp_path / "r", options_for("gpu")).path
    assert params(config(repo, "detector_postprocess"))["layout"] == "efficient-nms"
    manifest = json.loads((repo / "tritonforge.json").read_text())
    # ONNX Runtime cannot check an edited batch axis there: batch 1, said so
    assert config(repo, "detector").max_batch_size == 1 and "TensorRT-only nodes" in manifest["batch_axis"]


@pytest.mark.parametrize("case, message", [
    ("end-to-end", "--nms engine: {onnx} already ends in NMS (layout end-to-end)"),
    ("efficient-nms", "--nms engine: {onnx} already ends in NMS (layout efficient-nms)"),
    ("detr", "--nms engine: {onnx} already ends in NMS (layout detr)"),
    ("objectness", "--nms engine: only for anchor-free heads; {onnx} has layout objectness"),
])
def test_engine_nms_only_behind_an_anchor_free_head(tmp_path, case, message):
    onnx = shaped_onnx.layout_onnx(case, tmp_path / f"{case}.onnx")
    out = tmp_path / "r"
    extra = ["--scores", "logits"] if case == "detr" else []
    result = _cli(["--onnx", onnx, "--target", "gpu", "--out", out, "--nms", "engine", *extra])
    assert result.exit_code == 2 and not out.exists(), result.output
    assert message.format(onnx=onnx) in result.output


def test_engine_nms_from_a_plans_build_json_is_checked_too(tmp_path):
    onnx = shaped_onnx.layout_onnx("end-to-end", tmp_path / "e2e.onnx")
    plan = tmp_path / "model.plan"
    plan.write_bytes(bytes(range(256)) * 4)
    (tmp_path / "build.json").write_text(json.dumps({
        "max_batch": 8, "opt_batch": 8, "min_batch": 1, "nms": True, "max_detections": 20,
        "score_threshold": 0.3, "iou_threshold": 0.5, "precision": "fp16"}))
    with pytest.raises(UsageError, match="already ends in NMS"):
        generate(onnx, "gpu", tmp_path / "r", options_for("gpu", plan=plan))
    assert not (tmp_path / "r").exists()


# ---- fixed batch axis ----------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_fixed_batch_made_dynamic_when_the_graph_allows(tmp_path, target):
    import onnx as onnx_lib

    src = shaped_onnx.layout_onnx("end-to-end", tmp_path / "fixed.onnx", batch=1)
    out = tmp_path / "r"
    result = _cli(["--onnx", src, "--target", target, "--out", out, "--max-batch", "8"])
    assert result.exit_code == 0, result.output
    note = "batch axis made dynamic (input and output0; checked: batch 2 == 2 batch-1 runs within 0.0001)"
    assert f"batch axis: {note}" in result.output
    det = config(out, "detector")
    assert det.max_batch_size == 8 and list(det.dynamic_batching.preferred_batch_size) == [4, 8]
    manifest = json.loads((out / "tritonforge.json").read_text())
    assert manifest["batch_axis"] == note and manifest["signature"]["batch"] is None
    shipped = out / "detector" / ("model.onnx" if target in ("gpu", "jetson") else "1/model.onnx")
    graph = onnx_lib.load(str(shipped)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert manifest["source_onnx"]["sha256"] == __import__("hashlib").sha256(src.read_bytes()).hexdigest()


@pytest.mark.parametrize("target", TARGETS)
def test_fixed_batch_kept_at_one_when_the_graph_bakes_it_in(tmp_path, target):
    src = shaped_onnx.layout_onnx("end-to-end", tmp_path / "baked.onnx", batch=1, baked_batch=True)
    out = tmp_path / "r"
    result = _cli(["--onnx", src, "--target", target, "--out", out])
    assert result.exit_code == 0, result.output
    # the reason is generator.export.batch_axis's, naming the node ONNX Runtime stopped at
    note = "max_batch_size 1, dynamic batching off: batch axis kept at 1: ONNX Runtime cannot run a batch of 2: "
    manifest = json.loads((out / "tritonforge.json").read_text())
    assert manifest["batch_axis"].startswith(note) and "Reshape" in manifest["batch_axis"]
    assert f"batch axis: {manifest['batch_axis']}\n" in result.output
    for model in ("detector", "detector_preprocess", "detector_postprocess", "detector_ensemble"):
        cfg = config(out, model)
        assert cfg.max_batch_size == 1 and not cfg.HasField("dynamic_batching"), model
    assert manifest["options"]["max_batch_size"] == 1 and manifest["options"]["dynamic_batching"] is False
    if target in ("gpu", "jetson"):
        assert manifest["plan"]["spec"]["max_batch"] == 1 and manifest["plan"]["spec"]["opt_batch"] == 1
    shipped = out / "detector" / ("model.onnx" if target in ("gpu", "jetson") else "1/model.onnx")
    if target in ("gpu", "jetson"):
        assert shipped.read_bytes() == src.read_bytes()  # the graph as given
    else:  # the graph as given, with the input format folded in for the uint8 hand-off
        assert shipped.read_bytes() == folded_bytes(src, InputFormat())


def test_a_fixed_batch_above_one_that_stays_fixed_is_padded_by_the_embedded_detector(tmp_path):
    """Ultralytics' dynamic=False, batch=4: the embedded detector stage runs chunks of 4, padding
    smaller batches; max batch is 4. Targets whose detector Triton runs itself refuse it."""
    src = shaped_onnx.layout_onnx("end-to-end", tmp_path / "four.onnx", batch=4, baked_batch=True)
    repo = generate(src, "embedded", tmp_path / "r", options_for("embedded"))
    assert "the detector stage pads smaller batches to the graph's fixed 4" in repo.batch_note
    detector = parse_config((tmp_path / "r" / "detector" / "config.pbtxt").read_text())
    assert detector.max_batch_size == 4 and detector.parameters["fixed_batch"].string_value == "4"
    with pytest.raises(UsageError, match=r"four.onnx: the batch axis is fixed at 4 and could not be made dynamic"):
        generate(src, "cpu", tmp_path / "c", options_for("cpu"))
    assert not (tmp_path / "c").exists()


def test_the_fixed_batch_runner_pads_and_drops_the_padding():
    from generator.runtime.runners import FixedBatch

    calls = []

    def runner(x):
        calls.append(len(x))
        return [x.sum(axis=(1, 2, 3)), x[:, :1, 0, 0] * 2]

    x = np.arange(5 * 3 * 2 * 2, dtype=np.float32).reshape(5, 3, 2, 2)
    out = FixedBatch(runner, 4)(x)
    assert calls == [4, 4]
    np.testing.assert_array_equal(out[0], x.sum(axis=(1, 2, 3)))
    np.testing.assert_array_equal(out[1], x[:, :1, 0, 0] * 2)


# ---- input format ------------------------------------------------------------------------------

def test_input_format_flags_reach_both_preprocess_stages(tmp_path):
    """The float hand-off (embedded --handoff float, and the gpu target) does the format in the
    preprocess; the uint8 hand-off folds the same format into the detector's graph."""
    src = shaped_onnx.layout_onnx("anchor-free", tmp_path / "a.onnx")
    flags = ["--input-scale", "255", "--channel-order", "bgr", "--mean", "103.53,116.28,123.675",
             "--std", "57.375,57.12,58.395"]
    result = _cli(["--onnx", src, "--target", "embedded", "--out", tmp_path / "u8"] + flags)
    assert result.exit_code == 0, result.output
    assert params(config(tmp_path / "u8", "detector_preprocess"))["dtype"] == "UINT8"
    graph = onnx.load(str(tmp_path / "u8" / "detector" / "1" / "model.onnx")).graph
    consts = {t.name: onnx.numpy_helper.to_array(t).tolist() for t in graph.initializer if t.name.startswith("images_")}
    assert consts["images_scale"] == 1.0 and consts["images_bgr"] == [2, 1, 0]
    assert np.allclose(np.ravel(consts["images_mean"]), [103.53, 116.28, 123.675])
    assert np.allclose(np.ravel(consts["images_std"]), [57.375, 57.12, 58.395])
    for target, extra in (("embedded", ["--handoff", "float"]), ("gpu", [])):
        out = tmp_path / target
        result = _cli(["--onnx", src, "--target", target, "--out", out] + flags + extra)
        assert result.exit_code == 0, result.output
        pre = params(config(out, "detector_preprocess"))
        assert {k: pre[k] for k in ("scale", "channel_order", "mean", "std")} == {
            "scale": "1.0", "channel_order": "BGR", "mean": "103.53,116.28,123.675", "std": "57.375,57.12,58.395"}
        assert "BGR, 0..255, mean 103.53,116.28,123.675, std 57.375,57.12,58.395" in result.output


def test_default_input_format_is_written_explicitly(layout_repo):
    pre = params(config(layout_repo("anchor-free", "gpu"), "m_preprocess"))  # a float hand-off
    assert {k: pre[k] for k in ("scale", "channel_order", "mean", "std")} == {
        "scale": "0.00392156862745098", "channel_order": "RGB", "mean": "0,0,0", "std": "1,1,1"}
