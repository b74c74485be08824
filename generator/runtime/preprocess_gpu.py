"""Triton Python-backend model: encoded images -> letterboxed CHW tensors, on the GPU.

The ``gpu``/``jetson`` targets' preprocess stage, with ``preprocess.py``'s contract:

Input: ``IMAGE`` BYTES ``[n, 1]`` (one encoded image per batch item).

Outputs: ``PREPROCESSED`` FP32 or FP16 (the ``dtype`` parameter) ``[n, 3, H, W]`` (RGB,
0..1, padded with 114; a GPU tensor with ``output_device: gpu``) and ``TRANSFORM`` FP32
``[n, 5]`` (scale, pad_x, pad_y, width, height: ``letterbox.transform_row``).

Parameters (config.pbtxt), defaults in ``PARAMETERS``:

- ``height``, ``width``: the model input size, required;
- ``dtype`` (``FP32``): or ``FP16``;
- ``max_pixels`` (50000000): images whose header claims more pixels are refused before
  decoding;
- ``output_device`` (``gpu``): PREPROCESSED leaves as a GPU tensor through DLPack, or
  ``cpu``: copied back to host memory (Jetson, whose Python backend has no GPU tensors);
- the input format, as in ``preprocess.py``: ``scale`` (0.00392156862745098, i.e. 1/255),
  ``channel_order`` (RGB), ``mean`` (0,0,0), ``std`` (1,1,1). The CUDA kernel makes the
  default format only; for any other the stage logs why and runs the CPU path.

An image that cannot be decoded fails its own request only, naming ``IMAGE[i]``.
Decoding stays on the CPU (OpenCV, to BGR uint8); resize + pad + RGB + /255 + CHW run
as one CUDA kernel (``cuda_letterbox.py`` + ``letterbox.cu``/``letterbox.fatbin`` beside
this file) in the primary context of the instance's GPU. Without pycuda, a GPU, or a
loadable kernel, the model logs one line saying why and runs the CPU path
(``imaging.preprocess_bytes``, exactly what ``preprocess.py`` does).
"""
from typing import Dict, Optional

import numpy as np
import triton_python_backend_utils as pb_utils

try:  # as part of the generator package (tests, offline use)
    from . import cuda_letterbox, imaging, stage_utils
    from .letterbox import letterbox_params, transform_row
except ImportError:  # inside Triton: the modules are copied beside this file
    import cuda_letterbox
    import imaging
    import stage_utils
    from letterbox import letterbox_params, transform_row

PARAMETERS: Dict[str, Optional[str]] = {
    "height": None,
    "width": None,
    "dtype": "FP32",
    "max_pixels": str(imaging.DEFAULT_MAX_PIXELS),
    "output_device": "gpu",
    "scale": repr(imaging.DEFAULT_FORMAT.scale),
    "channel_order": "RGB",
    "mean": "0,0,0",
    "std": "1,1,1",
}
FORMAT_PARAMETERS = ("scale", "channel_order", "mean", "std")
OUTPUT_DEVICES = ("gpu", "cpu")
DTYPES = {"FP32": np.float32, "FP16": np.float16}


def _log(level, message):
    """pb_utils.Logger when this Triton has it, else stdout (which Triton's log captures)."""
    logger = getattr(pb_utils, "Logger", None)
    method = getattr(logger, {"info": "log_info", "warn": "log_warn", "error": "log_error"}[level], None)
    if method is not None:
        method(message)
    else:
        print(message, flush=True)


class TritonPythonModel:
    def initialize(self, args):
        params = stage_utils.read_parameters(args, PARAMETERS)
        self.height = int(params["height"])
        self.width = int(params["width"])
        self.max_pixels = imaging.pixel_limit(params["max_pixels"])
        self.input_name = "IMAGE"
        dtype = params["dtype"].upper()
        if dtype not in DTYPES:
            raise ValueError(f"preprocess_gpu: dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
        self.dtype = DTYPES[dtype]
        self.output_device = params["output_device"].lower()
        if self.output_device not in OUTPUT_DEVICES:
            raise ValueError(
                f"preprocess_gpu: output_device must be one of {OUTPUT_DEVICES}, not {self.output_device!r}")
        if args.get("model_instance_kind") == "GPU":
            self.device_id = int(args.get("model_instance_device_id", 0))
        else:
            self.device_id = 0
        self.input_format = imaging.parse_pixel_format(*(params[key] for key in FORMAT_PARAMETERS))
        if self.input_format == imaging.DEFAULT_FORMAT:
            self._open_engine(dtype)
        else:  # the kernel makes RGB /255 only: keep it simple, the CPU path makes any format
            self.engine = None
            self.fallback_reason = f"input format {tuple(self.input_format)} is not the kernel's (RGB, /255)"
            _log("info", f"preprocess_gpu: {self.fallback_reason}; using the CPU path (OpenCV letterbox)")

    def _open_engine(self, dtype: str):
        """The CUDA engine on this instance's GPU, or None (and one log line saying why)."""
        self.engine = None
        try:
            self.engine = cuda_letterbox.CudaLetterbox(device_id=self.device_id)
        except Exception as exc:  # GpuUnavailable says why; anything else is reported as is
            self.fallback_reason = str(exc) if isinstance(exc, cuda_letterbox.GpuUnavailable) \
                else f"{type(exc).__name__}: {exc}"
            _log("warn", f"preprocess_gpu: CUDA preprocessing unavailable on device {self.device_id} "
                         f"({self.fallback_reason}); using the CPU path (OpenCV letterbox)")
        else:
            self.fallback_reason = None
            name = getattr(self.engine, "device_name", f"device {self.device_id}")
            _log("info", f"preprocess_gpu: CUDA letterbox on GPU {self.device_id} ({name}), kernel from "
                         f"{self.engine.loaded_from}, {dtype} output on the {self.output_device}")

    def execute(self, requests):
        return [self._one(request) for request in requests]

    def _error(self, index, exc):
        return pb_utils.InferenceResponse(
            output_tensors=[], error=stage_utils.bad_input(pb_utils, imaging.item_error(self.input_name, index, exc)))

    def _one(self, request):
        items = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy().reshape(-1)
        if self.engine is None:
            return self._one_cpu(items)
        images, geometries, transforms = [], [], []
        for index, item in enumerate(items):
            try:
                bgr = imaging.decode_bgr(item, self.max_pixels)
            except Exception as exc:  # one item fails its own request, never the batch
                return self._error(index, exc)
            h, w = bgr.shape[:2]
            geometry = letterbox_params(h, w, self.height, self.width)
            images.append(bgr)
            geometries.append(geometry)
            transforms.append(transform_row(geometry, h, w))
        try:
            batch = self.engine.letterbox_batch(images, self.height, self.width, self.dtype, geometry=geometries)
            if self.output_device == "gpu":
                preprocessed = pb_utils.Tensor.from_dlpack("PREPROCESSED", batch)
            else:
                preprocessed = pb_utils.Tensor("PREPROCESSED", batch.to_host())
        except Exception as exc:  # a CUDA error poisons the context: stay on the CPU from now on
            _log("error", f"preprocess_gpu: CUDA letterbox failed ({type(exc).__name__}: {exc}); "
                          "using the CPU path from now on")
            self.fallback_reason = f"runtime failure: {exc}"
            self._close_engine()
            return self._one_cpu(items)
        return pb_utils.InferenceResponse(output_tensors=[
            preprocessed, pb_utils.Tensor("TRANSFORM", np.stack(transforms))])

    def _one_cpu(self, items):
        """What preprocess.py does."""
        images, transforms = [], []
        for index, item in enumerate(items):
            try:
                chw, transform = imaging.preprocess_bytes(item, self.height, self.width, self.max_pixels,
                                                              self.input_format)
            except Exception as exc:  # one item fails its own request, never the batch
                return self._error(index, exc)
            images.append(chw)
            transforms.append(transform)
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("PREPROCESSED", np.stack(images).astype(self.dtype, copy=False)),
            pb_utils.Tensor("TRANSFORM", np.stack(transforms)),
        ])

    def _close_engine(self):
        engine, self.engine = self.engine, None
        if engine is not None:
            try:
                engine.close()
            except Exception:
                pass

    def finalize(self):
        self._close_engine()
