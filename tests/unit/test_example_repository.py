"""The committed example repository (what ``tritonforge demo`` writes) stays current."""

from pathlib import Path

import pytest

from generator.repository.render import parse_config
from generator.repository.shipping import stage_files

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "model_repository"
# the runtime entry module of each Python stage of the embedded target
ENTRIES = {"detector_preprocess": "preprocess.py", "detector": "detector.py", "detector_postprocess": "postprocess.py"}


def test_every_config_parses_with_triton_schema():
    configs = sorted(EXAMPLE.glob("*/config.pbtxt"))
    assert [p.parent.name for p in configs] == [
        "detector", "detector_ensemble", "detector_postprocess", "detector_preprocess"]
    for path in configs:
        assert parse_config(path.read_text(), str(path)).name == path.parent.name


@pytest.mark.parametrize("model", sorted(ENTRIES))
def test_runtime_copies_are_current(model):
    expected = stage_files(ENTRIES[model])
    shipped = {p.relative_to(EXAMPLE / model).as_posix() for p in (EXAMPLE / model / "1").rglob("*.py")}
    assert shipped == set(expected), f"model_repository/{model} ships other files than the runtime: run tritonforge demo"
    for rel, source in expected.items():
        assert (EXAMPLE / model / rel).read_bytes() == source.read_bytes(), \
            f"model_repository/{model}/{rel} is stale: run tritonforge demo"
