"""Triton Python-backend model: encoded images -> letterboxed CHW tensors + transforms.

Input: ``IMAGE`` BYTES ``[n, 1]`` (one encoded JPEG/PNG/BMP/GIF/WebP per batch item).

Outputs: ``PREPROCESSED`` ``[n, 3, H, W]``, padded with 114: with ``dtype`` UINT8 (the
uint8 hand-off) the letterboxed RGB pixels as they are, the detector graph doing the input
format (``export.uint8_input``); with FP32 or FP16, in the input format below (by default
RGB, 0..1). And ``TRANSFORM`` FP32 ``[n, 5]`` (scale, pad_x, pad_y, width, height:
``letterbox.transform_row``).

Parameters (config.pbtxt), defaults in ``PARAMETERS``:

- ``height``, ``width``: the model input size, required;
- ``dtype`` (``FP32``): ``UINT8`` for the uint8 hand-off, ``FP16`` for a detector with
  float16 input (float hand-off);
- ``max_pixels`` (50000000): an image whose header claims more pixels is refused
  before decoding;
- the input format, ``((pixel RGB-or-BGR uint8) * scale - mean) / std`` per channel
  (``imaging.PixelFormat``): ``scale`` (0.00392156862745098, i.e. 1/255; 1 for 0..255
  input), ``channel_order`` (RGB, or BGR), ``mean`` (0,0,0) and ``std`` (1,1,1), one
  value per network input channel in units of pixel * scale. With ``dtype`` UINT8 the
  format is the detector's business: a non-default one is refused here.

An image that cannot be decoded, or is over ``max_pixels``, fails its own request only,
with a message naming the item (``IMAGE[i]: ...``).

Metrics (``stage_metrics``, label ``stage="preprocess"``): requests, images, microseconds
in ``execute``, and refused images by ``reason`` (:func:`failure_reason`).
"""

import time
from typing import Dict, Optional

import numpy as np
import triton_python_backend_utils as pb_utils

try:  # as part of the generator package (tests, offline use)
    from . import imaging, stage_metrics, stage_utils
except ImportError:  # inside Triton: the modules are copied beside this file
    import imaging
    import stage_metrics
    import stage_utils

PARAMETERS: Dict[str, Optional[str]] = {
    "height": None,
    "width": None,
    "dtype": "FP32",
    "max_pixels": str(imaging.DEFAULT_MAX_PIXELS),
    "scale": repr(imaging.DEFAULT_FORMAT.scale),
    "channel_order": "RGB",
    "mean": "0,0,0",
    "std": "1,1,1",
}
FORMAT_PARAMETERS = ("scale", "channel_order", "mean", "std")
DTYPES = {"UINT8": np.uint8, "FP32": np.float32, "FP16": np.float16}
METRICS = ("tritonforge_requests_total", "tritonforge_images_total", "tritonforge_execute_us_total",
           stage_metrics.DECODE_FAILURES)


class TritonPythonModel:
    def initialize(self, args):
        params = stage_utils.read_parameters(args, PARAMETERS)
        self.height = int(params["height"])
        self.width = int(params["width"])
        self.max_pixels = imaging.pixel_limit(params["max_pixels"])
        self.input_name = "IMAGE"
        # uint8 hand-off, or the detector's float input (float16 for an FP16 ONNX); the config says which
        if params["dtype"] not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {params['dtype']!r}")
        self.dtype = DTYPES[params["dtype"]]
        self.input_format = imaging.parse_pixel_format(*(params[key] for key in FORMAT_PARAMETERS))
        if self.dtype == np.uint8 and self.input_format != imaging.DEFAULT_FORMAT:
            raise ValueError("dtype UINT8 hands the detector raw pixels: its graph applies the input format, "
                             "so scale/channel_order/mean/std must keep their defaults here")
        self.metrics = stage_metrics.StageMetrics(pb_utils, args.get("model_name", "preprocess"), "preprocess", METRICS)

    def execute(self, requests):
        start = time.perf_counter_ns()
        outcomes = [self._one(request) for request in requests]  # (response, images, failure reason or None)
        self._count(outcomes, start)
        return [response for response, _, _ in outcomes]

    def finalize(self):
        self.metrics.close()

    def _count(self, outcomes, start: int) -> None:
        self.metrics.add("tritonforge_execute_us_total", stage_metrics.elapsed_us(start))
        self.metrics.add("tritonforge_requests_total", len(outcomes))
        self.metrics.add("tritonforge_images_total", sum(images for _, images, _ in outcomes))
        for _, _, reason in outcomes:
            if reason is not None:
                self.metrics.add(stage_metrics.DECODE_FAILURES, 1, reason=reason)

    def _prepare(self, item):
        if self.dtype == np.uint8:
            return imaging.letterbox_uint8(item, self.height, self.width, self.max_pixels)
        return imaging.preprocess_bytes(item, self.height, self.width, self.max_pixels, self.input_format)

    def _one(self, request):
        """(the request's response, its number of images, why an image was refused or None)."""
        items = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy().reshape(-1)
        images, transforms = [], []
        for index, item in enumerate(items):
            try:
                chw, transform = self._prepare(item)
            except Exception as exc:  # anything about one item fails its own request, never the batch
                error = stage_utils.bad_input(pb_utils, imaging.item_error(self.input_name, index, exc))
                return (pb_utils.InferenceResponse(output_tensors=[], error=error), len(items),
                        failure_reason(item, exc, self.max_pixels))
            images.append(chw)
            transforms.append(transform)
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("PREPROCESSED", np.stack(images).astype(self.dtype, copy=False)),
            pb_utils.Tensor("TRANSFORM", np.stack(transforms)),
        ]), len(items), None


def failure_reason(item, exc: BaseException, max_pixels: int) -> str:
    """The ``reason`` label of a refused image: ``not_an_image`` (empty, or not a format whose
    header we read), ``too_large`` (header over ``max_pixels``), ``truncated`` (a known format
    whose header or data is corrupt or cut short), ``other`` (anything else)."""
    if not isinstance(exc, imaging.ImageError) or not isinstance(item, (bytes, bytearray, memoryview)):
        return "other"
    data = bytes(item)
    if not data or imaging.image_format(data[:12]) is None:
        return "not_an_image"
    try:
        _, width, height = imaging.header_size(data)
    except imaging.ImageError:
        return "truncated"
    return "too_large" if width * height > max_pixels else "truncated"
