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

PREPROCESS_COMMENT = "decode, letterbox (pad 114), {format}, CHW; TRANSFORM = scale, pad_x, pad_y, w, h"
UINT8_COMMENT = ("decode, letterbox (pad 114), CHW uint8 RGB (the detector graph makes it {format}); "
                 "TRANSFORM = scale, pad_x, pad_y, w, h")


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


def detector_tensors(sig: DetectorSignature, input_dtype: Optional[str] = None) -> Tuple[List[Tensor], List[Tensor]]:
    """The detector's own input (``input_dtype``: the hand-off's type, e.g. ``UINT8``; default
    the graph's) and every raw output (graph order, their own data types)."""
    return ([Tensor(sig.input_name, f"TYPE_{input_dtype or sig.input_dtype}", (3, sig.height, sig.width))],
            [Tensor(o.name, f"TYPE_{o.dtype}", tuple(o.dims)) for o in sig.outputs])


def raw_names(count: int) -> List[str]:
    """The postprocess stage's names for the detector's outputs: ``RAW``, or ``RAW_0``, ``RAW_1``, ..."""
    return ["RAW"] if count == 1 else [f"RAW_{i}" for i in range(count)]


def preprocess_model(sig: DetectorSignature, opts: RepositoryOptions, entry: str = "preprocess.py",
                     parameters: Optional[Dict[str, str]] = None, instance_kind: str = "KIND_CPU",
                     comment: Optional[str] = None, dtype: Optional[str] = None) -> ModelDir:
    """The preprocess stage; the ``entry`` module and extra ``parameters`` vary by target.
    ``dtype`` ``UINT8``: the uint8 hand-off (the detector graph applies the input format)."""
    dtype = dtype or sig.input_dtype
    uint8 = dtype == "UINT8"
    stage = PythonStage(
        name=f"{opts.name}_preprocess", max_batch_size=opts.max_batch_size,
        inputs=[Tensor("IMAGE", "TYPE_STRING", (1,))],
        outputs=[Tensor("PREPROCESSED", f"TYPE_{dtype}", (3, sig.height, sig.width)), transform_tensor()],
        parameters={"height": str(sig.height), "width": str(sig.width), "dtype": dtype,
                    "max_pixels": str(opts.max_image_pixels), **({} if uint8 else sig.input_format.parameters()),
                    **(parameters or {})},
        comment=comment or (UINT8_COMMENT.format(format=sig.input_format.describe()) if uint8
                            else PREPROCESS_COMMENT.format(format=sig.input_format.describe())),
        instance_count=opts.preprocess_instances, instance_kind=instance_kind, dynamic_batching=batching(opts),
    )
    return ModelDir(stage, runtime_stage_files(entry))


def postprocess_model(sig: DetectorSignature, opts: RepositoryOptions) -> ModelDir:
    """Decode of the raw outputs with the signature's layout (+ class-aware NMS where the model
    has none), boxes mapped back to original pixels; labels.txt beside the config."""
    from generator.runtime.layouts import get_layout

    layout = get_layout(sig.layout)
    parameters = {"score_threshold": repr(opts.score_threshold), "iou_threshold": repr(opts.iou_threshold),
                  "max_detections": str(opts.max_detections), "layout": sig.layout,
                  "input_height": str(sig.height), "input_width": str(sig.width), "scores": sig.scores}
    inputs = [Tensor(raw, f"TYPE_{o.dtype}", tuple(o.dims)) for raw, o in zip(raw_names(len(sig.outputs)), sig.outputs)]
    comment = (f"decode ({sig.layout})" + (" + class-aware NMS" if layout.needs_nms else " without NMS (none needed)")
               + " over the whole batch; boxes in original pixels")
    stage = PythonStage(
        name=f"{opts.name}_postprocess", max_batch_size=opts.max_batch_size, inputs=inputs + [transform_tensor()],
        outputs=detection_outputs(opts.max_detections), parameters=parameters, comment=comment,
        instance_count=1, dynamic_batching=batching(opts),
    )
    files = runtime_stage_files("postprocess.py")
    files["labels.txt"] = ("\n".join(class_names(sig, opts)) + "\n").encode()
    return ModelDir(stage, files)


def detection_outputs(max_detections: int) -> List[Tensor]:
    """The repository's answer: padded detections, like EfficientNMS."""
    return [Tensor("num_detections", "TYPE_INT32", (1,)), Tensor("boxes", "TYPE_FP32", (max_detections, 4)),
            Tensor("scores", "TYPE_FP32", (max_detections,)), Tensor("classes", "TYPE_INT32", (max_detections,))]


def class_names(sig: DetectorSignature, opts: RepositoryOptions) -> List[str]:
    """``--labels`` if given, else the names in the ONNX; their count must match the model's
    (where its outputs tell it)."""
    names = opts.labels if opts.labels is not None else list(sig.names)
    if sig.num_classes is not None and len(names) != sig.num_classes:
        raise UsageError(f"--labels lists {len(names)} names but the model has {sig.num_classes} classes")
    return names


def ensemble_model(sig: DetectorSignature, opts: RepositoryOptions) -> ModelDir:
    """The ensemble clients call: preprocess -> detector -> postprocess; the detector's outputs
    travel as ``raw`` (``raw_0``, ``raw_1``, ... when several) to the postprocess inputs."""
    n = opts.name
    outputs = detection_outputs(opts.max_detections)
    posts = raw_names(len(sig.outputs))
    wires = [name.lower() for name in posts]  # ensemble tensors, never clashing with its outputs
    stage = EnsembleStage(
        name=f"{n}_ensemble", max_batch_size=opts.max_batch_size,
        inputs=[Tensor("IMAGE", "TYPE_STRING", (1,))], outputs=outputs,
        parameters={"class_names": json.dumps(class_names(sig, opts)), "input_height": str(sig.height),
                    "input_width": str(sig.width)},
        comment="encoded images in ([N, 1] BYTES), padded detections out",
        steps=[
            EnsembleStep(f"{n}_preprocess", {"IMAGE": "IMAGE"}, {"PREPROCESSED": "preprocessed", "TRANSFORM": "transform"}),
            EnsembleStep(n, {sig.input_name: "preprocessed"}, {o.name: w for o, w in zip(sig.outputs, wires)}),
            EnsembleStep(f"{n}_postprocess", {**dict(zip(posts, wires)), "TRANSFORM": "transform"},
                         {t.name: t.name for t in outputs}),
        ],
    )
    return ModelDir(stage, {"1/.keep": b""})
