"""Triton Python-backend model: raw detector output -> padded detections.

All requests handed over by the dynamic batcher are concatenated and decoded in one
vectorized pass, then NMS runs per image (``boxes.postprocess``) and the results are
split back per request. Thresholds and the maximum number
of detections come from the config parameters.

With ``nms: engine`` the plan already ran NMS (TensorRT's EfficientNMS): the inputs
``NUM``, ``BOXES``, ``SCORES``, ``CLASSES`` are its padded outputs, and only the boxes
are mapped back to original pixels.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

try:
    from . import boxes, stage_utils
except ImportError:
    import boxes
    import stage_utils


class TritonPythonModel:
    def initialize(self, args):
        params = stage_utils.read_parameters(args)
        self.score_threshold = float(params["score_threshold"])
        self.iou_threshold = float(params["iou_threshold"])
        self.max_detections = int(params["max_detections"])
        self.max_candidates = int(params.get("max_candidates", "1024"))
        self.engine_nms = params.get("nms", "postprocess") == "engine"

    def execute(self, requests):
        if self.engine_nms:
            return [self._rescale(r) for r in requests]
        raws = [pb_utils.get_input_tensor_by_name(r, "RAW").as_numpy() for r in requests]
        transforms = [pb_utils.get_input_tensor_by_name(r, "TRANSFORM").as_numpy() for r in requests]
        num, bxs, scores, classes = boxes.postprocess(
            np.concatenate(raws), np.concatenate(transforms), self.score_threshold,
            self.iou_threshold, self.max_detections, self.max_candidates,
        )
        responses, start = [], 0
        for raw in raws:
            end = start + raw.shape[0]
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("num_detections", num[start:end, None]),
                pb_utils.Tensor("boxes", bxs[start:end]),
                pb_utils.Tensor("scores", scores[start:end]),
                pb_utils.Tensor("classes", classes[start:end]),
            ]))
            start = end
        return responses

    def _rescale(self, request):
        def get(name):
            return pb_utils.get_input_tensor_by_name(request, name).as_numpy()

        num, bxs, scores, classes = boxes.rescale_detections(
            get("NUM"), get("BOXES"), get("SCORES"), get("CLASSES"), get("TRANSFORM"))
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("num_detections", num[:, None]), pb_utils.Tensor("boxes", bxs),
            pb_utils.Tensor("scores", scores), pb_utils.Tensor("classes", classes),
        ])
