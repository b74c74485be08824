"""INT8 post-training quantization of a detector ONNX (explicit Q/DQ) and FP16 conversion.

One concern per module: ``graph`` (what stays float and why), ``qdq`` (ONNX Runtime
calibration and Q/DQ writing), ``report`` (``QuantReport``), ``int8`` (``quantize_onnx``,
the step itself), ``fp16`` (``convert_fp16``); beyond the head, what stays float:
``surgery`` (returning nodes of a Q/DQ model to float), ``select`` (measured selection on
the target runtime), ``accuracy`` (``--max-drop`` accuracy control), ``tuning`` (both, in order). Options: ``generator.compress.config.
QuantizeConfig``; the TensorRT calibration-cache format: ``generator.export.tensorrt.
calib_cache``. This package imports only numpy; ONNX Runtime is loaded when a step runs.
"""

from generator.compress.config import METHODS, QUANT_TYPES, QuantizeConfig
from generator.compress.quantize.fp16 import convert_fp16
from generator.compress.quantize.graph import (HEAD_REASONS, REASON_DECODE, REASON_DFL, REASON_HEAD_CONV,
                                               REASON_HEAD_LINEAR, REASON_SCORES, REASON_SELECT, REASON_SOFTMAX,
                                               REASON_USER, ExcludedNode, resolve_excludes, sensitive_nodes)
from generator.compress.quantize.int8 import collect_ranges, quantize_from_images, quantize_onnx
from generator.compress.quantize.qdq import META_QUANTIZATION
from generator.compress.quantize.report import QuantReport

__all__ = [
    "HEAD_REASONS", "META_QUANTIZATION", "METHODS", "QUANT_TYPES", "REASON_DECODE", "REASON_DFL",
    "REASON_HEAD_CONV", "REASON_HEAD_LINEAR", "REASON_SCORES", "REASON_SELECT", "REASON_SOFTMAX", "REASON_USER",
    "ExcludedNode", "QuantReport", "QuantizeConfig", "collect_ranges",
    "convert_fp16", "quantize_from_images", "quantize_onnx", "resolve_excludes", "sensitive_nodes",
]
