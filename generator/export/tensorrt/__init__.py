"""TensorRT plans: ``tritonforge build`` and the deferred builds of generated repositories.

One concern per module:

========================  ==================================================================
``options``               ``BuildOptions`` and its checks; PRECISIONS, CALIBRATORS (defined once)
``onnx_facts``            Q/DQ, FP16 and fixed batch of the ONNX
``strategy``              ``plan_build``: the pure decision per TensorRT version (``BuildStrategy``)
``trtexec``               the same decision as trtexec flags, for ``build_plans.sh``
``record``                ``build.json``: path, read, make, canonical command
``calib_cache``           TensorRT's calibration-cache format (written by quantize, read here)
``calibrators``           the legacy implicit-INT8 calibrators (TensorRT <= 10)
``nms``                   EfficientNMS inside the plan: settings, outputs, network surgery
``network``               ONNX parsing, parser errors, the profile, IO entries
``engine``                the TensorRT builder run
``device``                the CUDA device query (ctypes, no toolkit)
``build``                 ``build_plan``: the orchestration, atomic outputs
========================  ==================================================================

Nothing here imports TensorRT, pycuda or onnx at import time.
"""

from generator.export.tensorrt.build import build_plan, write_files
from generator.export.tensorrt.device import cuda_device
from generator.export.tensorrt.network import format_parser_errors, profile_shapes, triton_dtype
from generator.export.tensorrt.nms import NMS_OUTPUTS, NMS_PLUGIN, nms_outputs, nms_plugin_fields
from generator.export.tensorrt.onnx_facts import OnnxFacts, check_batch_range, onnx_facts, onnx_has_qdq
from generator.export.tensorrt.options import (
    CALIBRATION_IMAGES, CALIBRATORS, PRECISIONS, BuildOptions, calibrator_of_cache,
)
from generator.export.tensorrt.record import (
    BUILD_INFO_NAME, CALIBRATION_CACHE_NAME, build_info_path, canonical_command, make_build_info, read_build_info,
)
from generator.export.tensorrt.strategy import BuildStrategy, plan_build, tensorrt_version
from generator.export.tensorrt.trtexec import trtexec_cases, trtexec_flags

__all__ = [
    "BUILD_INFO_NAME", "CALIBRATION_CACHE_NAME", "CALIBRATION_IMAGES", "CALIBRATORS", "NMS_OUTPUTS", "NMS_PLUGIN",
    "PRECISIONS", "BuildOptions", "BuildStrategy", "OnnxFacts", "build_info_path", "build_plan", "calibrator_of_cache",
    "canonical_command", "check_batch_range", "cuda_device", "format_parser_errors", "make_build_info",
    "nms_outputs", "nms_plugin_fields", "onnx_facts", "onnx_has_qdq", "plan_build", "profile_shapes",
    "read_build_info", "tensorrt_version", "triton_dtype", "trtexec_cases", "trtexec_flags", "write_files",
]
