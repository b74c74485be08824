"""The Ultralytics peer: found, run once per session, its report cached.

The interpreter is ``$TRITONFORGE_ULTRALYTICS_PYTHON``, else ``<repo>/.venv-interop/bin/python``
(``.ci/run`` creates it). Without one that imports ``ultralytics`` every interop test is
skipped: Ultralytics is AGPL, a test-only peer, never a dependency of tritonforge.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Optional

import pytest

HERE = Path(__file__).parent
REPO = HERE.parent.parent
PEER = HERE / "ultralytics_peer.py"
IMAGES = 64  # synthetic images: all of them cropped to several aspect ratios are the prediction pool
POOL = 64
SIZES = [(320, 320), (200, 320), (320, 240), (256, 320), (320, 180)]  # (h, w) crops
PEER_TIMEOUT_S = 1800


def peer_python() -> Optional[str]:
    """The interpreter with ultralytics, or None."""
    candidate = os.environ.get("TRITONFORGE_ULTRALYTICS_PYTHON") or str(REPO / ".venv-interop" / "bin" / "python")
    if not Path(candidate).is_file():
        return None
    probe = subprocess.run([candidate, "-c", "import ultralytics"], capture_output=True, timeout=120,
                           env={**os.environ, "YOLO_OFFLINE": "1"})
    return candidate if probe.returncode == 0 else None


def pytest_collection_modifyitems(items):
    python = None
    checked = False
    for item in items:
        if HERE not in Path(str(item.fspath)).parents:
            continue
        item.add_marker(pytest.mark.interop)
        if not checked:
            python, checked = peer_python(), True
        if python is None:
            item.add_marker(pytest.mark.skip(
                reason="needs an interpreter with ultralytics: $TRITONFORGE_ULTRALYTICS_PYTHON or .venv-interop"))


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    """A synthetic dataset (YOLO format): class names, calibration images, eval data."""
    from generator.data import synth

    return synth.synthesize(tmp_path_factory.mktemp("interop") / "shapes", IMAGES, 0, 320, 3, progress=False)


@pytest.fixture(scope="session")
def image_pool(synth_data, tmp_path_factory) -> Path:
    """Images of several aspect ratios (crops of the synthetic ones), JPEG and PNG."""
    import cv2

    out = tmp_path_factory.mktemp("pool")
    files = sorted((synth_data.parent / "images").glob("*/*.jpg"))[:POOL]
    for i, path in enumerate(files):
        h, w = SIZES[i % len(SIZES)]
        name = f"{i:03d}.png" if i % 4 == 0 else f"{i:03d}.jpg"
        assert cv2.imwrite(str(out / name), cv2.imread(str(path))[:h, :w])
    return out


@pytest.fixture(scope="session")
def peer(synth_data, image_pool, tmp_path_factory) -> dict:
    """Run the peer once: ``peer.json`` plus ``folder`` (where the ONNX files are)."""
    python = peer_python()
    out = tmp_path_factory.mktemp("ultralytics")
    cmd = [python, str(PEER), "--out", str(out), "--images", str(image_pool), "--data", str(synth_data)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=PEER_TIMEOUT_S,
                         env={**os.environ, "YOLO_OFFLINE": "1"})
    assert run.returncode == 0, f"ultralytics peer failed:\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    report = json.loads((out / "peer.json").read_text())
    report.update(folder=out, images=str(image_pool), data=str(synth_data))
    return report
