"""``tune``'s candidates: knobs read from a generated repository, set back into its configs
(parsed with Triton's schema), neighbours, max batch kept consistent across the stages and
the ensemble, the runtime only where the target reads it and the host has more than one."""

import json
import shutil

import pytest

from generator.errors import UsageError
from generator.repository.generate import generate
from generator.repository.targets import options_for
from generator.tune.knobs import KNOB_ORDER, configure, inconsistencies, read_knobs
from generator.tune.repository import read_repository
from generator.tune.space import build_space, scale_sizes

DEFAULTS = {"max_batch_size": 8, "queue_delay_us": 2000, "preferred_batch_sizes": (4, 8),
            "preprocess_instances": 2, "detector_instances": 1, "postprocess_instances": 1, "runtime": "onnxruntime"}


@pytest.fixture(scope="module")
def embedded(contract_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("tune") / "repo"
    return generate(contract_onnx, "embedded", out, options_for("embedded")).path


def _repo(path):
    return read_repository(path)


def test_default_knobs_are_the_generated_options(embedded):
    repo = _repo(embedded)
    assert repo.roles == {"preprocess": "detector_preprocess", "detector": "detector",
                          "postprocess": "detector_postprocess"}
    assert read_knobs(repo) == DEFAULTS


def test_the_default_candidate_changes_no_config(embedded):
    repo = _repo(embedded)
    configs = configure(repo, read_knobs(repo))
    assert all(configs[m] == repo.configs[m] for m in repo.configs)


def test_configure_sets_every_knob_and_reads_back(embedded):
    repo = _repo(embedded)
    knobs = {**DEFAULTS, "max_batch_size": 16, "preferred_batch_sizes": (8, 16), "queue_delay_us": 500,
             "preprocess_instances": 3, "detector_instances": 2, "postprocess_instances": 2, "runtime": "openvino"}
    configs = configure(repo, knobs)
    assert read_knobs(repo, configs) == knobs
    assert {m: c.max_batch_size for m, c in configs.items()} == {m: 16 for m in repo.configs}
    assert configs["detector"].parameters["runtime"].string_value == "openvino"
    assert inconsistencies(repo, configs) == []
    assert repo.configs["detector"].max_batch_size == 8  # the repository's own are copies, untouched


@pytest.mark.parametrize("knob, value, expected", [
    ("preprocess_instances", 2, [3, 1]),
    ("detector_instances", 1, [2]),
    ("queue_delay_us", 2000, [500, 8000]),
    ("queue_delay_us", 0, [500]),
    ("queue_delay_us", 3000, [2000, 8000]),  # a value off the ladder: its neighbours on it
])
def test_neighbours_of_one_knob(embedded, knob, value, expected):
    space = build_space(_repo(embedded), runtimes=["onnxruntime"])
    got = space.neighbours({**DEFAULTS, knob: value}, knob)
    assert [k[knob] for k in got] == expected
    assert all({n: v for n, v in k.items() if n != knob} == {n: v for n, v in DEFAULTS.items() if n != knob}
               for k in got)


def test_max_batch_neighbours_rescale_preferred_sizes_and_stay_consistent(embedded):
    repo = _repo(embedded)
    got = build_space(repo, runtimes=["onnxruntime"]).neighbours(DEFAULTS, "max_batch_size")
    assert [(k["max_batch_size"], k["preferred_batch_sizes"]) for k in got] == [(16, (8, 16)), (4, (2, 4))]
    for knobs in got:
        configs = configure(repo, knobs)
        assert inconsistencies(repo, configs) == []
        ensemble = configs[repo.ensemble].max_batch_size
        assert all(configs[m].max_batch_size >= ensemble for m in repo.composing)


def test_preferred_sizes_options_exclude_the_current(embedded):
    got = build_space(_repo(embedded), runtimes=["onnxruntime"]).neighbours(DEFAULTS, "preferred_batch_sizes")
    assert [k["preferred_batch_sizes"] for k in got] == [(8,), (2, 4, 8)]


def test_no_preferred_sizes_read_as_the_max_batch_as_triton_fills_them_in(embedded, tmp_path):
    repo = _repo(embedded)
    configs = configure(repo, DEFAULTS)
    for model in repo.composing:
        del configs[model].dynamic_batching.preferred_batch_size[:]
    assert read_knobs(repo, configs)["preferred_batch_sizes"] == (8,)


def test_scale_sizes():
    assert scale_sizes((4, 8), 8, 16) == (8, 16)
    assert scale_sizes((4, 8), 8, 1) == (1,)
    assert scale_sizes((), 8, 4) == ()


def test_inconsistent_configs_are_found(embedded):
    repo = _repo(embedded)
    configs = configure(repo, {**DEFAULTS, "preferred_batch_sizes": (4, 16)})
    assert any("preferred_batch_size [16]" in p for p in inconsistencies(repo, configs))
    configs = configure(repo, DEFAULTS)
    configs["detector"].max_batch_size = 4  # below the ensemble's 8
    assert any("detector: max_batch_size 4 < the ensemble's 8" == p for p in inconsistencies(repo, configs))


def test_runtime_is_a_knob_only_with_two_runtimes_on_the_embedded_target(embedded):
    repo = _repo(embedded)
    space = build_space(repo, runtimes=["onnxruntime", "openvino"])
    assert space.knobs == list(KNOB_ORDER)
    assert [k["runtime"] for k in space.neighbours(DEFAULTS, "runtime")] == ["openvino"]
    alone = build_space(repo, runtimes=["onnxruntime"])
    assert "runtime" not in alone.knobs and "only onnxruntime" in alone.notes["runtime"]


def test_runtime_offered_is_what_this_host_has(embedded):
    from generator.runtime.runners import available_runtimes

    space = build_space(_repo(embedded))
    here = available_runtimes(embedded / "detector" / "1" / "model.onnx")
    assert space.runtimes == tuple(here)
    assert ("runtime" in space.knobs) == (len(here) > 1)


def test_cpu_target_has_no_runtime_knob(contract_onnx, tmp_path):
    repo = _repo(generate(contract_onnx, "cpu", tmp_path / "r", options_for("cpu")).path)
    space = build_space(repo, runtimes=["onnxruntime", "openvino"])
    assert "runtime" not in space.knobs and "regenerate with --runtime" in space.notes["runtime"]
    assert "runtime" not in read_knobs(repo)
    assert {"preprocess_instances", "detector_instances", "max_batch_size"} <= set(space.knobs)


def test_fixed_batch_detector_has_no_max_batch_knob(embedded, tmp_path):
    repo_path = tmp_path / "r"
    shutil.copytree(embedded, repo_path)
    manifest = json.loads((repo_path / "tritonforge.json").read_text())
    manifest["signature"]["batch"] = 1
    (repo_path / "tritonforge.json").write_text(json.dumps(manifest))
    space = build_space(_repo(repo_path), runtimes=["onnxruntime"])
    assert "max_batch_size" not in space.knobs and "fixed batch of 1" in space.notes["max_batch_size"]


def test_knobs_option_limits_the_search_and_unknown_names_are_refused(embedded):
    space = build_space(_repo(embedded), select=["queue_delay_us", "detector_instances"], runtimes=["onnxruntime"])
    assert space.knobs == ["queue_delay_us", "detector_instances"]  # in the search's order
    with pytest.raises(UsageError, match="--knobs: unknown queue_delay"):
        build_space(_repo(embedded), select=["queue_delay"])


def test_not_a_generated_repository_is_refused(tmp_path, embedded):
    with pytest.raises(UsageError, match="not a repository written by `tritonforge generate`"):
        read_repository(tmp_path)
    with pytest.raises(UsageError, match="model repository not found"):
        read_repository(tmp_path / "missing")
    broken = tmp_path / "b"
    shutil.copytree(embedded, broken)
    shutil.rmtree(broken / "detector_postprocess")
    with pytest.raises(UsageError, match="detector_postprocess/config.pbtxt: not found"):
        read_repository(broken)
