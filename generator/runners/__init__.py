"""Every detector runtime tritonforge knows, for library code (eval, bench, the demo).

The registry lives in the shipped ``generator.runtime.runners`` (the embedded detector
stage opens its runner there); the runners that are never shipped (PyTorch, TensorRT)
are registered here. Library code opens runners through :func:`open_runner` below, which
also turns a missing runtime library into an install hint.
"""

from __future__ import annotations

from generator._lazy import require
from generator.runners.tensorrt_runner import TensorRTRunner
from generator.runners.torch_runner import TorchRunner
from generator.runtime import runners as _registry
from generator.runtime.runners import Runner, register_runner, runner_names

__all__ = ["Runner", "open_runner", "register_runner", "runner_names"]

register_runner(TorchRunner.name, TorchRunner)
register_runner(TensorRTRunner.name, TensorRTRunner)


def open_runner(name: str, path, **options) -> Runner:
    """``generator.runtime.runners.open_runner``, with a MissingDependencyError naming the
    extra to install when the runtime's library (e.g. onnxruntime) is missing."""
    try:
        return _registry.open_runner(name, path, **options)
    except ImportError as exc:
        require(exc.name or name, f"to run the {name} runtime")  # raises, with the install hint
        raise
