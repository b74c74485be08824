"""A real Triton server (the one bundled in nvidia-pytriton) on a generated repository."""

from pathlib import Path

import pytest

from generator.repository.generate import generate
from generator.repository.options import RepositoryOptions
from generator.serve.server import TritonServer, free_port

MAX_BATCH = 8
OPTIONS = dict(name="shapes", max_batch_size=MAX_BATCH, score_threshold=0.3, iou_threshold=0.5, max_detections=50)


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def served_repo(tiny_yolo_onnx, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("served") / "repo"
    generate(tiny_yolo_onnx, "embedded", out, RepositoryOptions(**OPTIONS))
    return out


@pytest.fixture(scope="session")
def server(served_repo):
    srv = TritonServer(served_repo, free_port(), free_port(), free_port())
    srv.start().wait_ready(timeout=180)
    yield srv
    assert srv.stop() == 0, "Triton did not shut down cleanly"
