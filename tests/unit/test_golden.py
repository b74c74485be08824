"""Generated repositories compared file by file with the committed golden trees."""

from pathlib import Path

import pytest

import golden_trees

RUNTIME = Path(__file__).parents[2] / "generator" / "runtime"


@pytest.mark.parametrize("target", golden_trees.TARGETS)
def test_repository_matches_golden_tree(target, tmp_path):
    onnx = golden_trees.build(target, tmp_path, tmp_path / "repo")
    got = golden_trees.tree(tmp_path / "repo")
    want = golden_trees.tree(golden_trees.GOLDEN / target)
    stored = {rel for rel, p in got.items() if p.suffix not in golden_trees.VERBATIM}
    assert stored == set(want), "file set differs; run python tests/golden_trees.py if intended"
    for rel in sorted(stored):
        assert got[rel].read_bytes() == want[rel].read_bytes(), f"{rel} differs from the golden tree"
    runtime_sources = {p.read_bytes() for p in RUNTIME.glob("*.py")}
    runtime_sources |= {p.read_bytes() for p in (RUNTIME.parents[1] / "templates" / "cuda").glob("*.cu")}
    for rel in sorted(set(got) - stored):
        source = onnx.read_bytes() if rel.endswith(".onnx") else None
        if source is not None:
            assert got[rel].read_bytes() == source, f"{rel} is not the source ONNX"
        else:
            assert got[rel].read_bytes() in runtime_sources, f"{rel} is not a verbatim copy of generator/runtime or the kernel"


def test_python_models_carry_their_entry_module(tmp_path):
    golden_trees.build("embedded", tmp_path, tmp_path / "repo")
    repo = tmp_path / "repo"
    for model, entry in (("shapes_preprocess", "preprocess.py"), ("shapes", "detector_ort.py"),
                         ("shapes_postprocess", "postprocess.py")):
        assert (repo / model / "1" / "model.py").read_bytes() == (RUNTIME / entry).read_bytes()


def test_generation_is_deterministic(tmp_path):
    (tmp_path / "w1").mkdir()
    (tmp_path / "w2").mkdir()
    golden_trees.build("embedded", tmp_path / "w1", tmp_path / "one")
    golden_trees.build("embedded", tmp_path / "w2", tmp_path / "two")
    one, two = golden_trees.tree(tmp_path / "one"), golden_trees.tree(tmp_path / "two")
    assert list(one) == list(two)
    for rel in one:
        assert one[rel].read_bytes() == two[rel].read_bytes(), rel
