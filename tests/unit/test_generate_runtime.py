"""``generate --runtime``: the embedded detector stage opens the runtime named in its config,
the cpu target writes Triton's OpenVINO / libtorch configs, auto records its figures, and
the TensorRT targets refuse the option. Configs parsed with Triton's own schema."""

import json
import shutil

import pytest
from click.testing import CliRunner

from generator.cli import cli
from generator.errors import UsageError
from generator.repository.generate import generate
from generator.repository.render import parse_config
from generator.repository.targets import options_for

pytest.importorskip("openvino")


def _config(repo, model="detector"):
    return parse_config((repo / model / "config.pbtxt").read_text())


def _params(config):
    return {k: v.string_value for k, v in config.parameters.items()}


def _manifest(repo):
    return json.loads((repo / "tritonforge.json").read_text())


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """A tiny yolo ONNX with its TorchScript sibling, both from one checkpoint model."""
    pytest.importorskip("torch")
    from generator.export.onnx_export import export_onnx
    from generator.export.torchscript import export_torchscript
    from generator.models.checkpoint import build_detector

    root = tmp_path_factory.mktemp("traced")
    det = build_detector("yolo-n", 3, 64, None, seed=0)
    export_onnx(det, root / "m.onnx")
    export_torchscript(det, root / "m.torchscript")
    return root / "m.onnx"


def _generate(onnx, out, target="embedded", **options):
    return generate(onnx, target, out, options_for(target, **options))


def test_embedded_openvino_config_manifest_readme_and_requirements(contract_onnx, tmp_path):
    repo = _generate(contract_onnx, tmp_path / "r", runtime="openvino").path
    config = _config(repo)
    assert config.backend == "python"
    assert _params(config) == {"onnx_file": "model.onnx", "intra_op_threads": "0", "runtime": "openvino"}
    assert _manifest(repo)["runtime"] == {"chosen": "openvino", "requested": "openvino"}
    assert "runtime" not in _manifest(repo)["options"]
    assert "detector: OpenVINO (CPU) inside the Python backend" in (repo / "README.md").read_text()
    assert "openvino>=2024.4" in (repo / "requirements.txt").read_text().splitlines()


def test_default_generation_says_nothing_new(contract_onnx, tmp_path):
    repo = _generate(contract_onnx, tmp_path / "r").path
    assert "runtime" not in _params(_config(repo)) and "runtime" not in _manifest(repo)
    assert not (repo / "requirements.txt").exists()


def test_embedded_torchscript_ships_the_traced_file_and_its_stage_initializes(traced, tmp_path, pb_utils,
                                                                              monkeypatch):
    from test_stage_parameters import run_stage_contract

    repo = _generate(traced, tmp_path / "r", runtime="torchscript").path
    assert _params(_config(repo)) == {"model_file": "model.torchscript", "intra_op_threads": "0",
                                      "runtime": "torchscript"}
    assert (repo / "detector" / "1" / "model.torchscript").is_file()
    assert not (repo / "detector" / "1" / "model.onnx").exists()
    assert _manifest(repo)["runtime"]["torchscript"] == "m.torchscript"
    assert (repo / "requirements.txt").read_text().splitlines()[-1] == "torch"
    models = run_stage_contract(repo, "embedded-torchscript", monkeypatch)
    assert models["detector"].runner.name == "torchscript"


def test_missing_torchscript_names_the_file_and_the_export_command(contract_onnx, tmp_path):
    with pytest.raises(UsageError, match=r"--torchscript .*contract\.torchscript: file not found.*"
                                         r"tritonforge export --model CHECKPOINT\.pt --out .*contract\.onnx --torchscript"):
        _generate(contract_onnx, tmp_path / "r", runtime="torchscript")
    assert not (tmp_path / "r").exists()


def test_torchscript_option_needs_a_runtime_that_reads_it(contract_onnx, tmp_path):
    with pytest.raises(UsageError, match="--torchscript is read only with --runtime torchscript or auto"):
        _generate(contract_onnx, tmp_path / "r", torchscript=tmp_path / "x.torchscript")


def test_cpu_openvino_uses_triton_openvino_backend_on_the_onnx(contract_onnx, tmp_path):
    repo = _generate(contract_onnx, tmp_path / "r", "cpu", runtime="openvino").path
    config = _config(repo)
    assert (config.backend, config.platform, config.default_model_filename) == ("openvino", "", "model.onnx")
    assert _params(config) == {"PERFORMANCE_HINT": "LATENCY", "ENABLE_BATCH_PADDING": "YES"}
    assert (repo / "detector" / "1" / "model.onnx").is_file()
    assert _manifest(repo)["backends"] == ["openvino", "python"]
    bf16 = _config(_generate(contract_onnx, tmp_path / "b", "cpu", runtime="openvino-bf16").path)
    assert _params(bf16)["HINT_BF16"] == "YES"


def test_cpu_torchscript_uses_libtorch_with_the_onnx_names(traced, tmp_path):
    repo = _generate(traced, tmp_path / "r", "cpu", runtime="torchscript").path
    config = _config(repo)
    assert (config.platform, config.default_model_filename) == ("pytorch_libtorch", "model.pt")
    assert [i.name for i in config.input] == ["images"] and [o.name for o in config.output] == ["output0"]
    assert (repo / "detector" / "1" / "model.pt").is_file()
    ensemble = _config(repo, "detector_ensemble")
    assert dict(ensemble.ensemble_scheduling.step[1].input_map) == {"images": "preprocessed"}
    assert _manifest(repo)["backends"] == ["python", "pytorch"]


@pytest.mark.parametrize("target", ["gpu", "jetson"])
def test_tensorrt_targets_refuse_runtime(target):
    with pytest.raises(UsageError, match=r"--runtime: only for the cpu and embedded targets \(CPU runtimes\)"):
        options_for(target, runtime="openvino")


def test_auto_measures_the_candidates_and_records_the_figures(traced, tmp_path, monkeypatch):
    import generator.repository.runtime_choice as choice

    monkeypatch.setattr(choice, "MAX_ROUNDS", 3)
    r = CliRunner().invoke(cli, ["generate", "--onnx", str(traced), "--out", str(tmp_path / "r"), "--runtime", "auto",
                                 "--max-batch", "4"])
    assert r.exit_code == 0, r.output
    entry = _manifest(tmp_path / "r")["runtime"]
    assert entry["requested"] == "auto" and entry["chosen"] in entry["candidates"]
    assert {"onnxruntime", "openvino", "torchscript"} <= set(entry["candidates"])
    for figures in entry["candidates"].values():
        assert set(figures) == {"batch_1_ms", "batch_4_ms"} and all(v > 0 for v in figures.values())
    fastest = min(entry["candidates"], key=lambda n: entry["candidates"][n]["batch_4_ms"])
    assert entry["chosen"] == fastest and "interleaved rounds" in entry["how"] and "spinning off" in entry["how"]
    assert f"runtime: {fastest} (requested auto)" in r.output and "how: " in r.output
    assert _params(_config(tmp_path / "r"))["runtime"] == fastest


def test_auto_without_a_torchscript_file_measures_the_onnx_runtimes(contract_onnx, tmp_path, monkeypatch):
    import generator.repository.runtime_choice as choice

    monkeypatch.setattr(choice, "MAX_ROUNDS", 3)
    onnx = tmp_path / "solo.onnx"
    shutil.copyfile(contract_onnx, onnx)
    entry = _manifest(_generate(onnx, tmp_path / "r", runtime="auto").path)["runtime"]
    assert "torchscript" not in entry["candidates"] and "not measured: " in entry["how"]


def test_uint8_handoff_folds_the_input_format_into_the_torchscript(traced, tmp_path, monkeypatch):
    import numpy as np

    from generator.repository.targets.embedded import EmbeddedTarget
    from generator.runners import open_runner

    monkeypatch.setattr(EmbeddedTarget, "uint8_handoff", True)
    repo = _generate(traced, tmp_path / "r", runtime="torchscript").path
    assert _config(repo).input[0].data_type == 2  # TYPE_UINT8
    served = open_runner("torchscript", repo / "detector" / "1" / "model.torchscript")
    plain = open_runner("torchscript", traced.with_suffix(".torchscript"))
    pixels = np.random.default_rng(0).integers(0, 256, (2, 3, 64, 64), dtype=np.uint8)
    assert served.input_dtype == np.uint8
    np.testing.assert_allclose(served(pixels)[0], plain(pixels.astype(np.float32) / np.float32(255))[0], atol=1e-4)
