"""Launching Triton: the server bundled in nvidia-pytriton, or any tritonserver."""

from generator.serve.server import TritonServer, required_backends

__all__ = ["TritonServer", "required_backends"]
