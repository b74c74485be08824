"""Stage contracts: every in-server stage declares its parameters (``PARAMETERS``) and
documents them, with their defaults, at the top of its module; ``read_parameters`` holds
a config to the declaration."""

import importlib
import json

import pytest

from generator.runtime import stage_utils

STAGES = ("preprocess", "preprocess_gpu", "postprocess", "detector")


def _args(parameters, name="m", inputs=()):
    config = {"name": name, "parameters": {k: {"string_value": v} for k, v in parameters.items()},
              "input": list(inputs)}
    return {"model_config": json.dumps(config), "model_name": name}


# the postprocess stage's inputs for one anchor-free output, as Triton hands the config over
RAW_INPUTS = ({"name": "RAW", "data_type": "TYPE_FP32", "dims": [7, 64]},
              {"name": "TRANSFORM", "data_type": "TYPE_FP32", "dims": [5]})


DECLARED = {"height": None, "width": None, "dtype": "FP32"}


def test_defaults_are_filled_in():
    got = stage_utils.read_parameters(_args({"height": "64", "width": "32"}), DECLARED)
    assert got == {"height": "64", "width": "32", "dtype": "FP32"}
    got = stage_utils.read_parameters(_args({"height": "64", "width": "32", "dtype": "FP16"}), DECLARED)
    assert got["dtype"] == "FP16"


def test_a_missing_required_parameter_names_the_model_and_the_parameter():
    with pytest.raises(ValueError, match=r"shapes_preprocess: config parameter\(s\) width required but not set"):
        stage_utils.read_parameters(_args({"height": "64"}, "shapes_preprocess"), DECLARED)


def test_an_undeclared_parameter_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"m: unknown config parameter\(s\) num_classes; "
                                         r"this stage reads dtype, height, width"):
        stage_utils.read_parameters(_args({"height": "1", "width": "1", "num_classes": "3"}), DECLARED)


def test_the_model_name_comes_from_the_config_without_model_name():
    args = _args({}, "from_config")
    del args["model_name"]
    with pytest.raises(ValueError, match="from_config: "):
        stage_utils.read_parameters(args, DECLARED)


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_documents_what_it_declares(pb_utils, stage):
    module = importlib.import_module(f"generator.runtime.{stage}")
    doc = module.__doc__
    assert isinstance(module.PARAMETERS, dict) and module.PARAMETERS
    for name, default in module.PARAMETERS.items():
        assert f"``{name}``" in doc, f"{stage}.py does not document the parameter {name}"
        assert default is None or default in doc, f"{stage}.py does not give {name}'s default {default!r}"
    for section in ("Input", "Output", "Parameters"):
        assert section in doc, f"{stage}.py's docstring has no {section} section"


def test_postprocess_contract(pb_utils):
    from generator.runtime import postprocess

    assert postprocess.PARAMETERS == {"score_threshold": None, "iou_threshold": None, "max_detections": None,
                                      "max_candidates": "1024", "layout": "anchor-free", "input_height": "0",
                                      "input_width": "0", "scores": "probs"}
    required = {"score_threshold": "0.3", "iou_threshold": "0.5", "max_detections": "20"}
    model = postprocess.TritonPythonModel()
    model.initialize(_args(required, inputs=RAW_INPUTS))
    assert model.layout.name == "anchor-free" and model.max_candidates == 1024 and model.inputs == ["RAW"]
    with pytest.raises(ValueError, match="unknown output layout 'detr-x'; known layouts: anchor-free"):
        postprocess.TritonPythonModel().initialize(_args({**required, "layout": "detr-x"}, inputs=RAW_INPUTS))
    with pytest.raises(ValueError, match="nms"):  # engine NMS is the efficient-nms layout now
        postprocess.TritonPythonModel().initialize(_args({**required, "nms": "engine"}, inputs=RAW_INPUTS))
    with pytest.raises(ValueError, match="scores must be one of probs, logits"):
        postprocess.TritonPythonModel().initialize(_args({**required, "scores": "odds"}, inputs=RAW_INPUTS))
    with pytest.raises(ValueError, match="num_classes"):  # what generators wrote before: nothing read it
        postprocess.TritonPythonModel().initialize(_args({**required, "num_classes": "3"}))


def test_preprocess_contracts(pb_utils):
    from generator.runtime import preprocess, preprocess_gpu

    assert preprocess.PARAMETERS == {"height": None, "width": None, "dtype": "FP32", "max_pixels": "50000000",
                                     "scale": "0.00392156862745098", "channel_order": "RGB", "mean": "0,0,0",
                                     "std": "1,1,1"}
    assert preprocess_gpu.PARAMETERS == {**preprocess.PARAMETERS, "output_device": "gpu"}
    with pytest.raises(ValueError, match="height"):
        preprocess.TritonPythonModel().initialize(_args({"width": "32"}))
