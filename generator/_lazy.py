"""Import optional dependencies where they are used, with an install hint when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from generator.errors import MissingDependencyError

# module -> extra of the tritonforge distribution that installs it
_EXTRA = {
    "torch": "compress",
    "onnxruntime": "compress",
    "onnxslim": "compress",
    "cv2": "server",
    "yaml": "compress",
    "pycocotools": "compress",
    "torch_pruning": "compress",
    "matplotlib": "compress",
    "pytriton": "server",
    "openvino": "server",
    "tensorrt": "gpu",
    "pycuda": "gpu",
    "tritonclient.http": "client",
    "tritonclient.grpc": "client",
}


def require(module: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise MissingDependencyError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = _EXTRA.get(module, "all")
        what = f" (needed {purpose})" if purpose else ""
        raise MissingDependencyError(
            f"{module} is not installed{what}: pip install 'tritonforge[{extra}]' ({exc})"
        ) from exc
