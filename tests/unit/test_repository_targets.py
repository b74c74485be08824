"""Targets: the registry, one options class per target kind, one generation per call."""

import dataclasses

import pytest

from generator.errors import UsageError
from generator.repository import generate as generate_module
from generator.repository.generate import generate
from generator.repository.options import RepositoryOptions, RuntimeOptions
from generator.repository.targets import Target, get_target, options_for, registry, target_names
from generator.repository.targets.gpu import GpuOptions
from generator.repository.targets.jetson import JetsonOptions
from generator.repository.targets.tensorrt import TensorRTOptions


def field_names(cls):
    return {f.name for f in dataclasses.fields(cls)}


def test_builtin_targets_and_their_options_classes():
    assert {"embedded", "cpu", "gpu", "jetson"} <= set(target_names())
    assert get_target("embedded").options_class is RuntimeOptions  # --runtime, --torchscript
    assert get_target("cpu").options_class is RuntimeOptions
    assert get_target("gpu").options_class is GpuOptions
    assert get_target("jetson").options_class is JetsonOptions


def test_no_cross_target_fields():
    common = field_names(RepositoryOptions)
    assert not common & {"plan", "precision", "nms", "opt_batch", "workspace_mib", "calib_cache", "dla_core"}
    assert field_names(TensorRTOptions) - common == {"precision", "nms", "opt_batch", "workspace_mib", "calib_cache"}
    assert field_names(GpuOptions) - field_names(TensorRTOptions) == {"plan"}
    assert field_names(JetsonOptions) - field_names(TensorRTOptions) == {"dla_core"}


def test_options_for_applies_target_defaults_and_ignores_what_was_not_given():
    jetson = options_for("jetson", name="x", plan=None, dla_core=None, max_batch_size=None)
    assert isinstance(jetson, JetsonOptions)
    assert (jetson.max_batch_size, jetson.preprocess_instances, jetson.workspace_mib) == (4, 1, 1024)
    assert options_for("jetson", max_batch_size=2).max_batch_size == 2  # what the user gave wins
    assert options_for("gpu").workspace_mib == 2048 and options_for("embedded") == RuntimeOptions()


@pytest.mark.parametrize("target, given, message", [
    ("embedded", dict(plan="p", precision="fp16"), "--plan, --precision: only for the gpu and jetson targets (TensorRT), "
                                                   "not 'embedded'"),
    ("cpu", dict(dla_core=0), "--dla-core: only for the gpu and jetson targets (TensorRT), not 'cpu'"),
    ("cpu", dict(workspace_mib=512), "--workspace: only for the gpu and jetson targets (TensorRT), not 'cpu'"),
    ("gpu", dict(dla_core=0), "--dla-core: DLA cores exist on Jetson only: use --target jetson"),
    ("jetson", dict(plan="p"), "--plan: plans are not portable between devices"),
])
def test_options_a_target_would_ignore_are_refused(target, given, message):
    with pytest.raises(UsageError) as info:
        options_for(target, **given)
    assert message in str(info.value)


def test_options_of_another_target_are_refused(contract_onnx, tmp_path):
    with pytest.raises(UsageError, match="JetsonOptions are not options of the 'gpu' target"):
        generate(contract_onnx, "gpu", tmp_path / "r", JetsonOptions())
    assert not (tmp_path / "r").exists()


def test_gpu_refuses_build_settings_with_a_built_plan(contract_onnx, tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(bytes(100))
    with pytest.raises(UsageError, match="--precision: set when building; --plan is already built"):
        generate(contract_onnx, "gpu", tmp_path / "r", options_for("gpu", plan=plan, precision="fp16"))


def test_a_generation_is_prepared_once_and_the_target_keeps_no_state(contract_onnx, tmp_path, monkeypatch):
    target = get_target("gpu")
    calls = []
    real = type(target).prepare

    def counting(self, *args):
        calls.append(args)
        return real(self, *args)

    monkeypatch.setattr(type(target), "prepare", counting)
    generate(contract_onnx, "gpu", tmp_path / "r", options_for("gpu"))
    assert len(calls) == 1
    assert vars(target) == {}  # nothing cached on the shared registry entry


def test_entry_point_targets_are_loaded_and_duplicates_refused(monkeypatch):
    class Extra(Target):
        name = "extra-test"

    class EntryPoint:
        def __init__(self, obj):
            self.obj = obj

        def load(self):
            return self.obj

    monkeypatch.setattr(registry, "_TARGETS", {})
    monkeypatch.setattr(registry, "_LOADED", False)
    monkeypatch.setattr(registry, "entry_points", lambda group: [EntryPoint(Extra)])
    assert isinstance(get_target("extra-test"), Extra) and "embedded" in target_names()

    class Clash(Target):
        name = "cpu"

    monkeypatch.setattr(registry, "_TARGETS", {})
    monkeypatch.setattr(registry, "_LOADED", False)
    monkeypatch.setattr(registry, "entry_points", lambda group: [EntryPoint(Clash())])
    with pytest.raises(ValueError, match="target 'cpu' is already registered"):
        target_names()


def test_plain_options_are_taken_over_by_every_target(contract_onnx, tmp_path):
    for target in ("embedded", "cpu", "gpu", "jetson"):
        repo = generate(contract_onnx, target, tmp_path / target, RepositoryOptions(name="m", max_batch_size=2))
        assert repo.models[1] == "m" and repo.ensemble == "m_ensemble"
    assert generate_module.target_options(get_target("gpu"), RepositoryOptions()) == GpuOptions()
