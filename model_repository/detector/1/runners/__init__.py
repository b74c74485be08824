"""Detector runtimes: a registry of runner factories, keyed by name.

``open_runner("onnxruntime", "model.onnx", threads=2)`` gives a :class:`Runner`. Only
runtimes a server runs are shipped here (ONNX Runtime, OpenVINO, TorchScript; each imports
its library when a runner opens); runners used offline only
(PyTorch, TensorRT) live in ``generator.runners`` and register into this registry when
that package is imported. A new runtime is one module plus one ``register_runner`` call.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Callable, Dict, List, Optional, Union

from .base import FixedBatch, Runner
from .onnxruntime_runner import OnnxRuntimeRunner
from .openvino_runner import OpenVinoBf16Runner, OpenVinoRunner, bf16_supported
from .torchscript_runner import TorchScriptRunner

__all__ = ["FixedBatch", "Runner", "available_runtimes", "open_runner", "register_runner", "runner_names"]

RunnerFactory = Callable[..., Runner]
_RUNNERS: Dict[str, RunnerFactory] = {}


def register_runner(name: str, factory: RunnerFactory) -> None:
    """Make ``factory(path, **options)`` available as runtime ``name``; a name is taken once."""
    if not name:
        raise ValueError("a runner needs a name")
    if name in _RUNNERS:
        raise ValueError(f"runner {name!r} is already registered ({_RUNNERS[name]!r})")
    _RUNNERS[name] = factory


def runner_names() -> List[str]:
    """The registered runtime names, sorted."""
    return sorted(_RUNNERS)


def open_runner(name: str, path, **options) -> Runner:
    """Load ``path`` (a model file; the torch runner also takes a module) with runtime ``name``."""
    factory = _RUNNERS.get(name)
    if factory is None:
        raise ValueError(f"unknown runtime {name!r}; known runtimes: {', '.join(runner_names()) or 'none'}")
    return factory(path, **options)


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def available_runtimes(onnx_path: Optional[Union[str, os.PathLike]] = None,
                       torchscript: Optional[Union[str, os.PathLike]] = None) -> List[str]:
    """The shipped runtimes usable on this host for a model: for an ONNX, ``onnxruntime`` and
    ``openvino`` (if importable), ``openvino-bf16`` (if the CPU has bfloat16 units); with a
    TorchScript file that exists, ``torchscript`` (if torch is importable)."""
    names = []
    if onnx_path is not None:
        names += [name for name, module in ((OnnxRuntimeRunner.name, "onnxruntime"),
                                            (OpenVinoRunner.name, "openvino")) if _importable(module)]
        if OpenVinoRunner.name in names and bf16_supported():
            names.append(OpenVinoBf16Runner.name)
    if torchscript is not None and os.path.isfile(torchscript) and _importable("torch"):
        names.append(TorchScriptRunner.name)
    return names


for _runner in (OnnxRuntimeRunner, OpenVinoRunner, OpenVinoBf16Runner, TorchScriptRunner):
    register_runner(_runner.name, _runner)
