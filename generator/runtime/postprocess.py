"""Triton Python-backend model: raw detector output -> padded detections.

Inputs (per request, batch first):

- ``RAW``: the detector's output, e.g. FP32/FP16 ``[n, 4 + C, A]`` for the ``anchor-free``
  layout; ``TRANSFORM``: FP32 ``[n, 5]`` (scale, pad_x, pad_y, width, height).
- with ``nms: engine`` instead of ``RAW`` (the plan ran TensorRT's EfficientNMS):
  ``NUM`` INT32 ``[n, 1]``, ``BOXES`` FP32 ``[n, D, 4]`` (letterboxed pixels), ``SCORES``
  FP32 ``[n, D]``, ``CLASSES`` INT32 ``[n, D]``; only the boxes are mapped back.

Outputs: ``num_detections`` INT32 ``[n, 1]``, ``boxes`` FP32 ``[n, D, 4]`` (x1, y1, x2, y2
in original image pixels), ``scores`` FP32 ``[n, D]``, ``classes`` INT32 ``[n, D]`` (-1 in
padding), with ``D`` = ``max_detections``.

Parameters (config.pbtxt), defaults in ``PARAMETERS``:

- ``score_threshold``, ``iou_threshold``, ``max_detections``: required;
- ``max_candidates`` (1024): candidates per image kept for NMS, best first;
- ``nms`` (``postprocess``): ``engine`` when the plan already ran NMS;
- ``layout`` (``anchor-free``): the output layout decoding ``RAW`` (``layouts/``).

All requests handed over by the dynamic batcher are concatenated and decoded in one
vectorized pass (``boxes.postprocess``), then split back per request.
"""

from typing import Dict, Optional

import numpy as np
import triton_python_backend_utils as pb_utils

try:  # as part of the generator package (tests, offline use)
    from . import boxes, stage_utils
    from .layouts import get_layout
except ImportError:  # inside Triton: the modules are copied beside this file
    import boxes
    import stage_utils
    from layouts import get_layout

PARAMETERS: Dict[str, Optional[str]] = {
    "score_threshold": None,
    "iou_threshold": None,
    "max_detections": None,
    "max_candidates": "1024",
    "nms": "postprocess",
    "layout": "anchor-free",
}
NMS_MODES = ("postprocess", "engine")
OUTPUTS = ("num_detections", "boxes", "scores", "classes")


class TritonPythonModel:
    def initialize(self, args):
        params = stage_utils.read_parameters(args, PARAMETERS)
        self.score_threshold = float(params["score_threshold"])
        self.iou_threshold = float(params["iou_threshold"])
        self.max_detections = int(params["max_detections"])
        self.max_candidates = int(params["max_candidates"])
        if params["nms"] not in NMS_MODES:
            raise ValueError(f"postprocess: nms must be one of {NMS_MODES}, not {params['nms']!r}")
        self.engine_nms = params["nms"] == "engine"
        self.layout = get_layout(params["layout"])

    def execute(self, requests):
        if self.engine_nms:
            return [self._rescale(r) for r in requests]
        raws = [pb_utils.get_input_tensor_by_name(r, "RAW").as_numpy() for r in requests]
        transforms = [pb_utils.get_input_tensor_by_name(r, "TRANSFORM").as_numpy() for r in requests]
        results = boxes.postprocess(
            np.concatenate(raws), np.concatenate(transforms), self.score_threshold,
            self.iou_threshold, self.max_detections, self.max_candidates, self.layout,
        )
        responses, start = [], 0
        for raw in raws:
            end = start + raw.shape[0]
            responses.append(_response(*(result[start:end] for result in results)))
            start = end
        return responses

    def _rescale(self, request):
        def get(name):
            return pb_utils.get_input_tensor_by_name(request, name).as_numpy()

        return _response(*boxes.rescale_detections(
            get("NUM"), get("BOXES"), get("SCORES"), get("CLASSES"), get("TRANSFORM")))


def _response(num, bxs, scores, classes):
    """The stage's four outputs; ``num`` gets its ``[n, 1]`` shape here."""
    arrays = (num[:, None], bxs, scores, classes)
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, a) for n, a in zip(OUTPUTS, arrays)])
