"""tritonforge: make object detectors light and serve them on NVIDIA Triton.

The package is importable with the base dependencies only; torch, onnxruntime,
TensorRT and pycuda are imported inside the functions that need them.
"""

__version__ = "0.1.0"
