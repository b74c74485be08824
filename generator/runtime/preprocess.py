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
"""

from typing import Dict, Optional

import numpy as np
import triton_python_backend_utils as pb_utils

try:  # as part of the generator package (tests, offline use)
    from . import imaging, stage_utils
except ImportError:  # inside Triton: the modules are copied beside this file
    import imaging
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

    def execute(self, requests):
        return [self._one(request) for request in requests]

    def _prepare(self, item):
        if self.dtype == np.uint8:
            return imaging.letterbox_uint8(item, self.height, self.width, self.max_pixels)
        return imaging.preprocess_bytes(item, self.height, self.width, self.max_pixels, self.input_format)

    def _one(self, request):
        items = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
        images, transforms = [], []
        for index, item in enumerate(items.reshape(-1)):
            try:
                chw, transform = self._prepare(item)
            except Exception as exc:  # anything about one item fails its own request, never the batch
                return pb_utils.InferenceResponse(
                    output_tensors=[], error=stage_utils.bad_input(pb_utils, imaging.item_error(self.input_name, index, exc))
                )
            images.append(chw)
            transforms.append(transform)
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("PREPROCESSED", np.stack(images).astype(self.dtype, copy=False)),
            pb_utils.Tensor("TRANSFORM", np.stack(transforms)),
        ])
