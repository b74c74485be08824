"""Model compression: INT8 post-training quantization (explicit Q/DQ), FP16 conversion,
TensorRT calibration caches. Submodules import their heavy dependencies where used."""
