"""Triton Python-backend model: raw detector outputs -> padded detections.

Inputs (per request, batch first), in config order:

- the detector's outputs in graph order: ``RAW`` when it has one (e.g. FP32/FP16
  ``[n, 4 + C, A]`` for the ``anchor-free`` layout), ``RAW_0``, ``RAW_1``, ... when it has
  several (e.g. the four ``efficient-nms`` outputs, INT32 ``[n, 1]``, FP32 ``[n, D, 4]``,
  FP32 ``[n, D]``, INT32 ``[n, D]``), with the outputs' own data types and dims;
- ``TRANSFORM``: FP32 ``[n, 5]`` (scale, pad_x, pad_y, width, height).

Outputs: ``num_detections`` INT32 ``[n, 1]``, ``boxes`` FP32 ``[n, D, 4]`` (x1, y1, x2, y2
in original image pixels), ``scores`` FP32 ``[n, D]``, ``classes`` INT32 ``[n, D]`` (-1 in
padding), with ``D`` = ``max_detections``.

Parameters (config.pbtxt), defaults in ``PARAMETERS``:

- ``score_threshold``, ``iou_threshold``, ``max_detections``: required;
- ``max_candidates`` (1024): candidates per image kept for NMS, best first;
- ``layout`` (``anchor-free``): the output layout decoding the inputs (``layouts/``); NMS
  runs only when the layout has none (TensorRT's engine NMS is the ``efficient-nms`` layout);
- ``input_height``, ``input_width`` (0: not needed by the layout): the network input size
  in pixels, for layouts with normalized boxes (``detr``);
- ``scores`` (``probs``): ``logits`` when the layout's class scores still need a sigmoid.

All requests handed over by the dynamic batcher are concatenated and decoded in one
vectorized pass (``boxes.postprocess``), then split back per request; if that pass fails
(a request whose tensors do not fit the others), each request is decoded alone and only
the one at fault answers with an error.

Metrics (``stage_metrics``, label ``stage="postprocess"``): images and detections answered,
microseconds in ``execute`` (Triton counts the requests).
"""

import time
from typing import Dict, List, Optional

import numpy as np
import triton_python_backend_utils as pb_utils

try:  # as part of the generator package (tests, offline use)
    from . import boxes, stage_metrics, stage_utils
    from .layouts import get_layout
except ImportError:  # inside Triton: the modules are copied beside this file
    import boxes
    import stage_metrics
    import stage_utils
    from layouts import get_layout

PARAMETERS: Dict[str, Optional[str]] = {
    "score_threshold": None,
    "iou_threshold": None,
    "max_detections": None,
    "max_candidates": "1024",
    "layout": "anchor-free",
    "input_height": "0",
    "input_width": "0",
    "scores": "probs",
}
TRANSFORM = "TRANSFORM"
OUTPUTS = ("num_detections", "boxes", "scores", "classes")
METRICS = ("tritonforge_images_total", "tritonforge_execute_us_total", "tritonforge_detections_total")


class TritonPythonModel:
    def initialize(self, args):
        params = stage_utils.read_parameters(args, PARAMETERS)
        self.score_threshold = float(params["score_threshold"])
        self.iou_threshold = float(params["iou_threshold"])
        self.max_detections = int(params["max_detections"])
        self.max_candidates = int(params["max_candidates"])
        self.layout = get_layout(params["layout"], height=int(params["input_height"]),
                                 width=int(params["input_width"]), scores=params["scores"])
        self.inputs = raw_inputs(stage_utils.model_config(args), self.layout)
        self.metrics = stage_metrics.StageMetrics(pb_utils, args.get("model_name", "postprocess"), "postprocess",
                                                  METRICS)

    def execute(self, requests):
        start = time.perf_counter_ns()
        try:
            responses, images, detections = self._batched(requests)
        except Exception:  # one request's tensors spoil the batch: decode each alone
            outcomes = [self._alone(request) for request in requests]
            responses = [response for response, _, _ in outcomes]
            images, detections = sum(o[1] for o in outcomes), sum(o[2] for o in outcomes)
        self._count(images, detections, start)
        return responses

    def finalize(self):
        self.metrics.close()

    def _count(self, images: int, detections: int, start: int) -> None:
        """Time in ``execute``, and the images answered (a refused request adds none) and their detections."""
        self.metrics.add("tritonforge_execute_us_total", stage_metrics.elapsed_us(start))
        self.metrics.add("tritonforge_images_total", images)
        self.metrics.add("tritonforge_detections_total", detections)

    def _arrays(self, request) -> List[np.ndarray]:
        return [pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs + [TRANSFORM]]

    def _decode(self, arrays: List[List[np.ndarray]]):
        """Per input (raw outputs, then TRANSFORM) the requests' arrays -> the batch's detections."""
        joined = [np.concatenate(parts) for parts in arrays]
        return boxes.postprocess(joined[:-1], joined[-1], self.score_threshold, self.iou_threshold,
                                 self.max_detections, self.max_candidates, self.layout)

    def _batched(self, requests):
        """(a response per request, images, detections) of one decode over every request."""
        per_request = [self._arrays(r) for r in requests]
        results = self._decode([list(parts) for parts in zip(*per_request)])
        responses, start = [], 0
        for arrays in per_request:
            end = start + arrays[-1].shape[0]
            responses.append(_response(*(result[start:end] for result in results)))
            start = end
        return responses, start, int(results[0].sum())

    def _alone(self, request):
        """(the request's response, its images, its detections: 0 and 0 when refused)."""
        try:
            results = self._decode([[a] for a in self._arrays(request)])
        except Exception as exc:
            return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(
                f"postprocess ({self.layout.name}): {type(exc).__name__}: {exc}")), 0, 0
        return _response(*results), len(results[0]), int(results[0].sum())


def raw_inputs(config: dict, layout) -> List[str]:
    """The config's inputs except TRANSFORM, in config order: the detector's outputs.
    ValueError (the layout's LayoutMismatch) when they are not what the layout decodes."""
    tensors = [t for t in config.get("input", []) if t["name"] != TRANSFORM]
    try:
        layout.check_outputs([(t["name"], [None] + [d if d > 0 else None for d in map(int, t.get("dims", []))],
                               str(t.get("data_type", "")).replace("TYPE_", "")) for t in tensors])
    except ValueError as exc:
        raise ValueError(f"{config.get('name', 'postprocess')}: the config's inputs do not fit layout "
                         f"{layout.name!r} ({layout.outputs_text}): {exc}") from None
    return [t["name"] for t in tensors]


def _response(num, bxs, scores, classes):
    """The stage's four outputs; ``num`` gets its ``[n, 1]`` shape here."""
    arrays = (num[:, None], bxs, scores, classes)
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, a) for n, a in zip(OUTPUTS, arrays)])
