"""Golden repository trees: build inputs inline, compare the whole output.

Regenerate after an intended change with ``python tests/golden_trees.py`` and review
the diff like any other code change.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"
TARGETS = ("embedded", "cpu", "gpu", "jetson")
VERBATIM = {".onnx", ".py", ".cu"}  # copies of source files: compared with their sources, not stored


def golden_options(target: str = "embedded"):
    from generator.repository.targets import GenerateOptions

    common = dict(name="shapes", queue_delay_us=500, score_threshold=0.3, iou_threshold=0.5, max_detections=50)
    if target == "jetson":  # the target's own sizes, on a DLA core
        return GenerateOptions.for_target(target, dla_core=0, **common)
    return GenerateOptions.for_target(target, max_batch_size=8, detector_instances=1, preprocess_instances=2, **common)


def build(target: str, work: Path, out: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).parent / "models"))
    import make_models
    from generator.repository.generate import generate

    onnx = make_models.contract_onnx(work / "contract.onnx")
    generate(onnx, target, out, golden_options(target))
    return onnx


def tree(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def regenerate() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for target in TARGETS:
            dest = GOLDEN / target
            shutil.rmtree(dest, ignore_errors=True)
            build(target, Path(tmp), Path(tmp) / target)
            for rel, path in tree(Path(tmp) / target).items():
                if path.suffix in VERBATIM:
                    continue
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest / rel)
            print(f"wrote {dest}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parents[1]))
    regenerate()
