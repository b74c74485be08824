"""The generator and the in-server stages agree on config parameters, for every target.

Each built-in target's repository is generated from the tiny test ONNX (the golden
cases: embedded, cpu, gpu without a plan, gpu with a plan and its build.json, gpu with
NMS inside the plan, jetson). Then, stage by stage: every parameter the config sets is
declared in the stage module's ``PARAMETERS``, every required one is set, and
``initialize`` — called with the generated config through the Triton stand-in — reads
every parameter it declares (a declared parameter nobody reads is a stale contract).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from google.protobuf import json_format

import golden_trees
from generator.repository.render import parse_config

RUNTIME = golden_trees.ROOT / "generator" / "runtime"


class RecordingDict(dict):
    """The parameters ``read_parameters`` returns, noting which keys the stage reads."""

    def __init__(self, values):
        super().__init__(values)
        self.read = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)


def triton_config_json(config) -> dict:
    """The config as Triton hands it to ``initialize``: JSON, field names as in config.pbtxt."""
    data = json_format.MessageToDict(config, preserving_proto_field_name=True)
    for tensor in data.get("input", []) + data.get("output", []):
        tensor["dims"] = [int(d) for d in tensor.get("dims", [])]
    return data


def entry_module(model_dir: Path) -> str:
    """The runtime module a Python stage's ``1/model.py`` is a copy of."""
    code = (model_dir / "1" / "model.py").read_bytes()
    names = [p.stem for p in RUNTIME.glob("*.py") if p.read_bytes() == code]
    assert len(names) == 1, f"{model_dir.name}/1/model.py is a copy of {names or 'no runtime module'}"
    return names[0]


def python_stages(repo: Path):
    for path in sorted(repo.glob("*/config.pbtxt")):
        config = parse_config(path.read_text(), str(path))
        if config.backend == "python":
            yield path.parent, config


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    """case -> its generated repository, built once per module on first use."""
    built = {}

    def get(case: str) -> Path:
        if case not in built:
            work = tmp_path_factory.mktemp(case)
            golden_trees.build(case, work, work / "repo")
            built[case] = work / "repo"
        return built[case]

    return get


@pytest.mark.parametrize("case", list(golden_trees.CASES))
def test_every_case_has_python_stages(case, repository):
    stages = {entry_module(folder) for folder, _ in python_stages(repository(case))}
    assert "postprocess" in stages and stages & {"preprocess", "preprocess_gpu"}, case


@pytest.mark.parametrize("case", list(golden_trees.CASES))
def test_config_parameters_match_the_stage_contract(case, repository, pb_utils, monkeypatch):
    run_stage_contract(repository(case), case, monkeypatch)


def run_stage_contract(repo: Path, case: str, monkeypatch) -> dict:
    """The contract checks on every Python stage of ``repo``; returns the initialized stages
    by model name (also used for each output layout's repository, test_generate_layouts)."""
    from generator.runtime import stage_utils

    recorded, models = {}, {}
    real = stage_utils.read_parameters

    def recording(args, declared):
        params = RecordingDict(real(args, declared))
        recorded["params"] = params
        return params

    monkeypatch.setattr(stage_utils, "read_parameters", recording)
    for folder, config in python_stages(repo):
        module = importlib.import_module(f"generator.runtime.{entry_module(folder)}")
        declared = module.PARAMETERS
        given = {key: value.string_value for key, value in config.parameters.items()}
        where = f"{case}: {folder.name} ({module.__name__})"
        assert set(given) <= set(declared), f"{where} sets undeclared {sorted(set(given) - set(declared))}"
        required = {key for key, default in declared.items() if default is None}
        assert required <= set(given), f"{where} leaves required {sorted(required - set(given))} unset"
        args = {"model_config": json.dumps(triton_config_json(config)), "model_name": folder.name,
                "model_repository": str(folder), "model_version": "1", "model_instance_kind": "CPU"}
        recorded.clear()
        models[folder.name] = model = module.TritonPythonModel()
        model.initialize(args)
        assert "params" in recorded, f"{where}: initialize does not read its parameters through read_parameters"
        unread = set(declared) - recorded["params"].read
        assert not unread, f"{where} declares {sorted(unread)} but initialize never reads them"
    return models
