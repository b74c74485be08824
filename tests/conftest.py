"""Shared fixtures: tiny models, the Triton stand-in, a real server."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS / "models"))
sys.path.insert(0, str(TESTS))

import make_models  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests need CUDA; skip them by capability, never by default."""
    try:
        import pycuda.driver as cuda  # noqa: F401

        cuda.init()
        has_gpu = cuda.Device.count() > 0
    except Exception:
        has_gpu = False
    for item in items:
        if item.get_closest_marker("gpu") and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs an NVIDIA GPU with CUDA (pycuda)"))


@pytest.fixture(scope="session")
def contract_onnx(tmp_path_factory) -> Path:
    return make_models.contract_onnx(tmp_path_factory.mktemp("models") / "contract.onnx")


@pytest.fixture(scope="session")
def tiny_yolo_onnx(tmp_path_factory) -> Path:
    return make_models.tiny_yolo_onnx(tmp_path_factory.mktemp("models") / "tiny_yolo.onnx")


@pytest.fixture()
def pb_utils(monkeypatch):
    """Install the stand-in ``triton_python_backend_utils`` and (re)import the runtime models."""
    sys.path.insert(0, str(TESTS / "fakes"))
    fake = importlib.import_module("triton_python_backend_utils")
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake)
    for name in ("preprocess", "preprocess_gpu", "postprocess", "detector"):
        sys.modules.pop(f"generator.runtime.{name}", None)
    yield fake
    sys.path.remove(str(TESTS / "fakes"))
