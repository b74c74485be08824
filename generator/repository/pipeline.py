"""The stages every target shares: preprocess, postprocess and the ensemble around a
target's detector, with the tensors that connect them.

A target supplies only its detector stage (and may vary the preprocess, e.g. the CUDA
kernel); everything here is the same for all of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from generator.errors import UsageError
from generator.export.signature import DetectorSignature
from generator.repository.options import RepositoryOptions
from generator.repository.shipping import stage_files
from generator.repository.stages import (
    DynamicBatching, EnsembleStage, EnsembleStep, PythonStage, Stage, Tensor, default_batching,
)
from generator.runtime.letterbox import TRANSFORM_SIZE

FileSource = Union[Path, bytes]

# the plan's NMS outputs -> the postprocess stage's inputs
ENGINE_NMS_INPUTS = {"num_detections": "NUM", "detection_boxes": "BOXES", "detection_scores": "SCORES",
                     "detection_classes": "CLASSES"}
PREPROCESS_COMMENT = "decode, letterbox (pad 114), RGB, /255, CHW; TRANSFORM = scale, pad_x, pad_y, w, h"


@dataclass
class ModelDir:
    """One model folder: its stage config and the files of version 1."""

    stage: Stage
    files: Dict[str, FileSource] = field(default_factory=dict)  # path relative to the model folder


def batching(opts: RepositoryOptions) -> Optional[DynamicBatching]:
    """The dynamic batcher of the batched stages, or None when the user turned it off."""
    if not opts.dynamic_batching:
        return None
    return default_batching(opts.max_batch_size, opts.queue_delay_us)


def transform_tensor() -> Tensor:
    """The letterbox transform handed from preprocess to postprocess (one row per image)."""
    return Tensor("TRANSFORM", "TYPE_FP32", (TRANSFORM_SIZE,))


def runtime_stage_files(entry: str) -> Dict[str, FileSource]:
    """A Python stage's code: ``entry`` as ``1/model.py`` plus the runtime modules it imports."""
    return dict(stage_files(entry))


def detector_tensors(sig: DetectorSignature) -> Tuple[List[Tensor], List[Tensor]]:
    """The detector's own input and raw output, as read from the ONNX."""
    return ([Tensor(sig.input_name, f"TYPE_{sig.input_dtype}", (3, sig.height, sig.width))],
            [Tensor(sig.output_name, f"TYPE_{sig.output_dtype}", sig.output_dims)])


def preprocess_model(sig: DetectorSignature, opts: RepositoryOptions, entry: str = "preprocess.py",
                     parameters: Optional[Dict[str, str]] = None, instance_kind: str = "KIND_CPU",
                     comment: str = PREPROCESS_COMMENT) -> ModelDir:
    """The preprocess stage; the ``entry`` module and extra ``parameters`` vary by target."""
    stage = PythonStage(
        name=f"{opts.name}_preprocess", max_batch_size=opts.max_batch_size,
        inputs=[Tensor("IMAGE", "TYPE_STRING", (1,))],
        outputs=[Tensor("PREPROCESSED", f"TYPE_{sig.input_dtype}", (3, sig.height, sig.width)), transform_tensor()],
        parameters={"height": str(sig.height), "width": str(sig.width), "dtype": sig.input_dtype,
                    "max_pixels": str(opts.max_image_pixels), **(parameters or {})},
        comment=comment, instance_count=opts.preprocess_instances, instance_kind=instance_kind,
        dynamic_batching=batching(opts),
    )
    return ModelDir(stage, runtime_stage_files(entry))


def postprocess_model(sig: DetectorSignature, opts: RepositoryOptions, engine_nms: bool = False) -> ModelDir:
    """Decode + NMS of the raw output, or (``engine_nms``) only the mapping back of the
    plan's own detections; labels.txt beside the config."""
    d = opts.max_detections
    parameters = {"score_threshold": repr(opts.score_threshold), "iou_threshold": repr(opts.iou_threshold),
                  "max_detections": str(d)}
    if engine_nms:  # the plan's outputs under the stage's own input names (its outputs are num_detections, ...)
        inputs = [Tensor(ENGINE_NMS_INPUTS[t.name], t.data_type, t.dims) for t in engine_nms_outputs(d)]
        parameters["nms"] = "engine"
        comment = "detections from the plan's NMS mapped back to original pixels"
    else:
        inputs = [Tensor("RAW", f"TYPE_{sig.output_dtype}", sig.output_dims)]
        parameters["layout"] = sig.layout  # the decoder the postprocess runs (generator.runtime.layouts)
        comment = "decode + class-aware NMS over the whole batch; boxes in original pixels"
    stage = PythonStage(
        name=f"{opts.name}_postprocess", max_batch_size=opts.max_batch_size, inputs=inputs + [transform_tensor()],
        outputs=detection_outputs(d), parameters=parameters, comment=comment,
        instance_count=1, dynamic_batching=batching(opts),
    )
    files = runtime_stage_files("postprocess.py")
    files["labels.txt"] = ("\n".join(class_names(sig, opts)) + "\n").encode()
    return ModelDir(stage, files)


def detection_outputs(max_detections: int) -> List[Tensor]:
    """The repository's answer: padded detections, like EfficientNMS."""
    return [Tensor("num_detections", "TYPE_INT32", (1,)), Tensor("boxes", "TYPE_FP32", (max_detections, 4)),
            Tensor("scores", "TYPE_FP32", (max_detections,)), Tensor("classes", "TYPE_INT32", (max_detections,))]


def engine_nms_outputs(max_detections: int) -> List[Tensor]:
    """Outputs of a plan built with ``tritonforge build --nms`` (TensorRT's EfficientNMS):
    boxes x1, y1, x2, y2 in network-input pixels."""
    return [Tensor("num_detections", "TYPE_INT32", (1,)), Tensor("detection_boxes", "TYPE_FP32", (max_detections, 4)),
            Tensor("detection_scores", "TYPE_FP32", (max_detections,)),
            Tensor("detection_classes", "TYPE_INT32", (max_detections,))]


def class_names(sig: DetectorSignature, opts: RepositoryOptions) -> List[str]:
    """``--labels`` if given, else the names in the ONNX; their count must match the model's."""
    names = opts.labels if opts.labels is not None else list(sig.names)
    if len(names) != sig.num_classes:
        raise UsageError(f"--labels lists {len(names)} names but the model has {sig.num_classes} classes")
    return names


def ensemble_model(sig: DetectorSignature, opts: RepositoryOptions, engine_nms: bool = False) -> ModelDir:
    """The ensemble clients call: preprocess -> detector -> postprocess."""
    n = opts.name
    outputs = detection_outputs(opts.max_detections)
    if engine_nms:  # the plan's NMS outputs, renamed inside the ensemble so they don't clash with its outputs
        detector_out = {name: f"engine_{name}" for name in ENGINE_NMS_INPUTS}
        post_in = {stage_input: f"engine_{name}" for name, stage_input in ENGINE_NMS_INPUTS.items()}
    else:
        detector_out, post_in = {sig.output_name: "raw"}, {"RAW": "raw"}
    stage = EnsembleStage(
        name=f"{n}_ensemble", max_batch_size=opts.max_batch_size,
        inputs=[Tensor("IMAGE", "TYPE_STRING", (1,))], outputs=outputs,
        parameters={"class_names": json.dumps(class_names(sig, opts)), "input_height": str(sig.height),
                    "input_width": str(sig.width)},
        comment="encoded images in ([N, 1] BYTES), padded detections out",
        steps=[
            EnsembleStep(f"{n}_preprocess", {"IMAGE": "IMAGE"}, {"PREPROCESSED": "preprocessed", "TRANSFORM": "transform"}),
            EnsembleStep(n, {sig.input_name: "preprocessed"}, detector_out),
            EnsembleStep(f"{n}_postprocess", {**post_in, "TRANSFORM": "transform"}, {t.name: t.name for t in outputs}),
        ],
    )
    return ModelDir(stage, {"1/.keep": b""})
