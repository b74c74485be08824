"""Detector runtimes: a registry of runner factories, keyed by name.

``open_runner("onnxruntime", "model.onnx", threads=2)`` gives a :class:`Runner`. Only
runtimes a server runs are shipped here (ONNX Runtime); runners used offline only
(PyTorch, TensorRT) live in ``generator.runners`` and register into this registry when
that package is imported. A new runtime is one module plus one ``register_runner`` call.
"""

from __future__ import annotations

from typing import Callable, Dict, List

from .base import FixedBatch, Runner
from .onnxruntime_runner import OnnxRuntimeRunner

__all__ = ["FixedBatch", "Runner", "open_runner", "register_runner", "runner_names"]

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


register_runner(OnnxRuntimeRunner.name, OnnxRuntimeRunner)
