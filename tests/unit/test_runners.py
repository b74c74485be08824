"""Detector runtimes: the registry, the ONNX Runtime and PyTorch runners, and the embedded
detector stage opening its runner by the ``runtime`` parameter."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from generator.errors import MissingDependencyError
from generator.runtime import runners as registry
from generator.runtime.runners import Runner

RUNNERS_DIR = Path(registry.__file__).parent


@pytest.fixture()
def scratch_registry(monkeypatch):
    """The registry as it is now; what a test registers is gone afterwards."""
    monkeypatch.setattr(registry, "_RUNNERS", dict(registry._RUNNERS))
    return registry


class Recording(Runner):
    """A runner that remembers how it was opened and answers with two outputs."""

    name = "recording"
    input_name, output_names = "images", ["a", "b"]
    opened = []

    def __init__(self, path, threads=0):
        Recording.opened.append((str(path), threads))

    def __call__(self, x):
        return [x[:, :1, 0, 0] * 2, x[:, :2, 0, 0] + 1]


def test_builtin_runtimes_are_registered():
    import generator.runners as library

    assert {"onnxruntime", "openvino", "openvino-bf16", "torchscript"} <= set(registry.runner_names())
    assert {"onnxruntime", "torch", "tensorrt"} <= set(library.runner_names())
    assert library.runner_names() == sorted(library.runner_names())


def test_unknown_runtime_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown runtime 'tvm'; known runtimes: .*onnxruntime"):
        registry.open_runner("tvm", "model.so")


def test_duplicate_runner_is_rejected(scratch_registry):
    scratch_registry.register_runner("recording", Recording)
    with pytest.raises(ValueError, match="'recording' is already registered"):
        scratch_registry.register_runner("recording", Recording)
    with pytest.raises(ValueError, match="'onnxruntime' is already registered"):
        scratch_registry.register_runner("onnxruntime", Recording)


def test_registered_runner_opens_with_options(scratch_registry):
    scratch_registry.register_runner("recording", Recording)
    runner = scratch_registry.open_runner("recording", "m.bin", threads=3)
    assert isinstance(runner, Recording) and Recording.opened[-1] == ("m.bin", 3)


def test_missing_runtime_library_gives_an_install_hint(scratch_registry):
    from generator.runners import open_runner

    def needs_a_library(path, **options):
        raise ImportError("No module named 'no_such_runtime_lib'", name="no_such_runtime_lib")

    scratch_registry.register_runner("absent", needs_a_library)
    with pytest.raises(MissingDependencyError, match="no_such_runtime_lib is not installed.*absent runtime"):
        open_runner("absent", "m.onnx")


def test_onnxruntime_runner_returns_every_output_as_float32(contract_onnx):
    import onnxruntime as ort

    runner = registry.open_runner("onnxruntime", contract_onnx, threads=1)
    assert (runner.name, runner.input_name, runner.output_names, runner.input_dtype) == \
        ("onnxruntime", "images", ["output0"], np.float32)
    x = np.random.default_rng(0).random((3, 3, 64, 64), dtype=np.float32)
    (out,) = runner(x)
    want = ort.InferenceSession(str(contract_onnx), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def test_torch_runner_takes_a_module_and_lists_its_outputs():
    torch = pytest.importorskip("torch")
    from generator.runners import open_runner

    class TwoHeads(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3)), x.double().sum(dim=1)

    runner = open_runner("torch", TwoHeads())
    x = np.random.default_rng(0).random((2, 3, 4, 4), dtype=np.float32)
    mean, total = runner(x)
    assert mean.shape == (2, 3) and total.shape == (2, 4, 4) and total.dtype == np.float32
    np.testing.assert_allclose(mean, x.mean(axis=(2, 3)), rtol=1e-6)


def _imported(nodes):
    for node in nodes:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
        yield from (n.split(".")[0] for n in names)


def test_shipped_runners_import_nothing_from_the_generator():
    """``runners/`` is copied into repositories, where ``generator`` does not exist; runtime
    libraries are imported only when a runner opens (never at module level)."""
    for path in RUNNERS_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        assert "generator" not in set(_imported(ast.walk(tree))), path
        lazy = {"torch", "tensorrt", "openvino", "onnxruntime"}
        assert not lazy & set(_imported(tree.body)), path


# ------------------------------------------------------------------ the embedded detector stage


def _args(parameters, outputs, repo, name="detector"):
    config = {"name": name, "parameters": {k: {"string_value": v} for k, v in parameters.items()},
              "input": [{"name": "images", "data_type": "TYPE_FP32"}],
              "output": [{"name": n, "data_type": t} for n, t in outputs]}
    return {"model_config": json.dumps(config), "model_repository": str(repo), "model_version": "1",
            "model_name": name}


def test_detector_stage_declares_its_parameters(pb_utils):
    from generator.runtime import detector

    assert detector.PARAMETERS == {"onnx_file": "model.onnx", "model_file": "", "intra_op_threads": "0",
                                   "runtime": "onnxruntime", "fixed_batch": "0"}
    for name, default in detector.PARAMETERS.items():
        assert f"``{name}`` = \"{default}\"" in detector.__doc__


def test_detector_stage_opens_the_configured_runtime(pb_utils, scratch_registry, tmp_path):
    from generator.runtime import detector

    scratch_registry.register_runner("recording", Recording)
    model = detector.TritonPythonModel()
    model.initialize(_args({"runtime": "recording", "intra_op_threads": "2", "onnx_file": "m.bin"},
                           [("a", "TYPE_FP16"), ("b", "TYPE_FP32")], tmp_path))
    assert Recording.opened[-1] == (str(tmp_path / "1" / "m.bin"), 2)
    xs = [np.full((n, 3, 2, 2), v, np.float32) for n, v in ((2, 1.0), (1, 3.0))]
    first, second = model.execute([pb_utils.InferenceRequest(images=x) for x in xs])
    assert first.output("a").dtype == np.float16 and first.output("b").dtype == np.float32
    np.testing.assert_array_equal(first.output("a"), [[2], [2]])
    np.testing.assert_array_equal(second.output("a"), [[6]])
    np.testing.assert_array_equal(second.output("b"), [[4, 4]])


def test_detector_stage_errors_name_the_problem(pb_utils, scratch_registry, tmp_path):
    from generator.runtime import detector

    scratch_registry.register_runner("recording", Recording)
    with pytest.raises(ValueError, match=r"unknown runtime 'nope'; known runtimes: onnxruntime, openvino, "
                                         r"openvino-bf16, recording\b"):
        detector.TritonPythonModel().initialize(_args({"runtime": "nope"}, [("a", "TYPE_FP32")], tmp_path))
    with pytest.raises(ValueError, match=r"shapes: the config lists outputs \['a'\] but m.bin has \['a', 'b'\]"):
        detector.TritonPythonModel().initialize(
            _args({"runtime": "recording", "onnx_file": "m.bin"}, [("a", "TYPE_FP32")], tmp_path, name="shapes"))
    with pytest.raises(ValueError, match="unknown config parameter.*num_threads"):
        detector.TritonPythonModel().initialize(_args({"num_threads": "2"}, [("a", "TYPE_FP32")], tmp_path))
