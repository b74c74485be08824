"""The committed example repository (what ``tritonforge demo`` writes) stays current."""

from pathlib import Path

import pytest

from generator.repository.render import parse_config

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "model_repository"
RUNTIME = ROOT / "generator" / "runtime"


def test_every_config_parses_with_triton_schema():
    configs = sorted(EXAMPLE.glob("*/config.pbtxt"))
    assert [p.parent.name for p in configs] == [
        "detector", "detector_ensemble", "detector_postprocess", "detector_preprocess"]
    for path in configs:
        assert parse_config(path.read_text(), str(path)).name == path.parent.name


@pytest.mark.parametrize("path", sorted(p.relative_to(EXAMPLE).as_posix() for p in EXAMPLE.glob("*/1/*.py")))
def test_runtime_copies_are_current(path):
    entry = {"detector_preprocess/1/model.py": "preprocess.py", "detector/1/model.py": "detector_ort.py",
             "detector_postprocess/1/model.py": "postprocess.py"}.get(path, Path(path).name)
    assert (EXAMPLE / path).read_bytes() == (RUNTIME / entry).read_bytes(), \
        f"model_repository/{path} is stale: run tritonforge demo"
