"""Stage configs: validation names the field; every rendering parses with Triton's schema."""

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from generator.errors import ConfigError, UsageError
from generator.repository import render
from generator.repository.stages import (
    DynamicBatching, EnsembleStage, EnsembleStep, OnnxRuntimeStage, PythonStage, Tensor, default_batching,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "configs"


def python_stage(**overrides):
    fields = dict(name="pre", max_batch_size=8, inputs=[Tensor("IMAGE", "TYPE_STRING", (1,))],
                  outputs=[Tensor("OUT", "TYPE_FP32", (3, 64, 64))], parameters={"height": "64"},
                  dynamic_batching=DynamicBatching((4, 8), 100))
    fields.update(overrides)
    return PythonStage(**fields)


@pytest.mark.parametrize("path", sorted((FIXTURES / "valid").glob("*.pbtxt")), ids=lambda p: p.name)
def test_valid_fixtures_parse(path):
    assert render.parse_config(path.read_text()).name


@pytest.mark.parametrize("path", sorted((FIXTURES / "invalid").glob("*.pbtxt")), ids=lambda p: p.name)
def test_invalid_fixtures_are_rejected_by_the_schema(path):
    with pytest.raises(ConfigError, match="rejected by Triton's config schema"):
        render.parse_config(path.read_text(), path.name)


def test_python_stage_round_trips_through_the_schema():
    config = render.parse_config(render.render_config(python_stage()))
    assert config.backend == "python" and config.max_batch_size == 8
    assert [(t.name, list(t.dims)) for t in config.input] == [("IMAGE", [1])]
    from tritonclient.grpc import model_config_pb2

    assert config.output[0].data_type == model_config_pb2.TYPE_FP32
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert config.instance_group[0].count == 1
    assert config.parameters["height"].string_value == "64"


def test_onnxruntime_stage_renders_platform_and_filename():
    stage = OnnxRuntimeStage(name="det", max_batch_size=4, inputs=[Tensor("images", "TYPE_FP32", (3, 32, 32))],
                             outputs=[Tensor("output0", "TYPE_FP32", (7, 21))], dynamic_batching=default_batching(4, 0))
    config = render.parse_config(render.render_config(stage))
    assert config.platform == "onnxruntime_onnx" and config.default_model_filename == "model.onnx"


def test_parameter_values_are_escaped():
    tricky = 'a "quoted" \\ back\nslash {{ not_a_template }}'
    config = render.parse_config(render.render_config(python_stage(parameters={"v": tricky})))
    assert config.parameters["v"].string_value == tricky


@pytest.mark.parametrize("overrides,field", [
    ({"max_batch_size": 0}, "max_batch_size must be >= 1, got 0"),
    ({"name": "a/b"}, "invalid model name 'a/b'"),
    ({"name": ".."}, "invalid model name '..'"),
    ({"name": "has space"}, "invalid model name"),
    ({"name": 'q"uote'}, "invalid model name"),
    ({"name": "{{x}}"}, "invalid model name"),
    ({"instance_count": 0}, "instance_group count must be >= 1, got 0"),
    ({"instance_kind": "KIND_TPU"}, "instance_group kind must be one of"),
    ({"dynamic_batching": DynamicBatching((16,), 0)}, "preferred_batch_size must be within 1..max_batch_size (8), got 16"),
    ({"dynamic_batching": DynamicBatching((4,), -1)}, "max_queue_delay_microseconds must be >= 0, got -1"),
    ({"outputs": [Tensor("OUT", "TYPE_JPEG", (1,))]}, "data_type must be one of"),
    ({"outputs": [Tensor("OUT", "TYPE_FP32", (0,))]}, "dims must be positive integers"),
    ({"outputs": [Tensor("IMAGE", "TYPE_FP32", (1,))]}, "tensor names must be unique"),
    ({"parameters": {"bad key": "x"}}, "parameters must map identifiers to strings"),
])
def test_invalid_stage_names_the_field(overrides, field):
    with pytest.raises((ConfigError, UsageError)) as info:
        render.render_config(python_stage(**overrides))
    assert field in str(info.value)


def test_ensemble_checks_the_data_flow():
    step = EnsembleStep("pre", {"IMAGE": "IMAGE"}, {"OUT": "mid"})
    stage = EnsembleStage(name="ens", max_batch_size=4, inputs=[Tensor("IMAGE", "TYPE_STRING", (1,))],
                          outputs=[Tensor("final", "TYPE_FP32", (1,))], steps=[step])
    with pytest.raises(ConfigError, match=r"outputs \['final'\] are produced by no step"):
        render.render_config(stage)
    stage.steps = [EnsembleStep("pre", {"IMAGE": "nowhere"}, {"OUT": "final"})]
    with pytest.raises(ConfigError, match="reads \\['nowhere'\\] before any step produces them"):
        render.render_config(stage)


def test_strict_undefined_refuses_missing_values():
    import jinja2

    with pytest.raises(jinja2.UndefinedError):
        render.environment().from_string("{{ missing }}").render()


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,30}", fullmatch=True).filter(lambda s: ".." not in s)


@settings(max_examples=60, deadline=None)
@given(name=names, batch=st.integers(1, 256), c=st.integers(1, 4), h=st.integers(1, 2048),
       delay=st.integers(0, 10**6), instances=st.integers(1, 16))
def test_every_valid_stage_renders_to_a_parseable_config(name, batch, c, h, delay, instances):
    stage = python_stage(name=name, max_batch_size=batch, outputs=[Tensor("OUT", "TYPE_FP32", (c, h, h))],
                         instance_count=instances, dynamic_batching=default_batching(batch, delay))
    config = render.parse_config(render.render_config(stage))
    assert config.name == name and config.max_batch_size == batch
    assert list(config.output[0].dims) == [c, h, h]
    assert max(config.dynamic_batching.preferred_batch_size) <= batch


def test_dynamic_batching_can_be_left_out():
    config = render.parse_config(render.render_config(python_stage(dynamic_batching=None)))
    assert not config.HasField("dynamic_batching") and config.max_batch_size == 8
