"""Generated repositories compared file by file with the committed golden trees."""

import json

import pytest

import golden_trees

RUNTIME = golden_trees.ROOT / "generator" / "runtime"


@pytest.mark.parametrize("case", list(golden_trees.CASES))
def test_repository_matches_golden_tree(case, tmp_path):
    inputs = golden_trees.build(case, tmp_path, tmp_path / "repo")
    got = golden_trees.tree(tmp_path / "repo")
    want = golden_trees.tree(golden_trees.GOLDEN / case)
    stored = {rel for rel, p in got.items() if p.suffix not in golden_trees.VERBATIM}
    assert stored == set(want), "file set differs; run python tests/golden_trees.py if intended"
    for rel in sorted(stored):
        assert golden_trees.normalize(got[rel].read_bytes()) == want[rel].read_bytes(), \
            f"{rel} differs from the golden tree"
    pins = json.loads(golden_trees.verbatim_path(case).read_text())
    assert set(got) - stored == set(pins), "verbatim copies differ; run python tests/golden_trees.py if intended"
    assert golden_trees.verbatim_mismatches(got, pins, inputs) == [], "not verbatim copies of their pinned sources"


def test_a_copy_under_the_wrong_name_fails(tmp_path):
    """Each path is pinned to one source: the right bytes under the wrong name do not pass."""
    inputs = golden_trees.build("embedded", tmp_path, tmp_path / "repo")
    got = golden_trees.tree(tmp_path / "repo")
    pins = json.loads(golden_trees.verbatim_path("embedded").read_text())
    one, two = "shapes_postprocess/1/boxes.py", "shapes_postprocess/1/stage_utils.py"
    assert golden_trees.verbatim_mismatches(got, pins, inputs) == []
    a, b = got[one].read_bytes(), got[two].read_bytes()
    got[one].write_bytes(b)
    got[two].write_bytes(a)
    assert golden_trees.verbatim_mismatches(got, pins, inputs) == [one, two]


def test_golden_files_do_not_embed_the_version():
    from generator import __version__

    for case in golden_trees.CASES:
        for rel, path in golden_trees.tree(golden_trees.GOLDEN / case).items():
            text = path.read_text(encoding="utf-8")
            assert f"tritonforge {__version__}" not in text and f'"tritonforge": "{__version__}"' not in text, rel


def test_python_models_carry_their_entry_module(tmp_path):
    golden_trees.build("embedded", tmp_path, tmp_path / "repo")
    repo = tmp_path / "repo"
    for model, entry in (("shapes_preprocess", "preprocess.py"), ("shapes", "detector.py"),
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
