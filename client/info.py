"""What the client learns about the served model: its config (batch size, class names,
input size) and metadata (tensor names, types and shapes, versions). Both protocols'
answers arrive as dicts with the same field names (gRPC asked with ``as_json=True``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

import numpy as np

from client.errors import DetectionClientError

OUTPUTS = ("num_detections", "boxes", "scores", "classes")
_NUMPY = {"BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
          "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
          "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the model; ``shape`` excludes the batch axis (-1: variable)."""

    name: str
    datatype: str  # KServe v2 name: "FP32", "INT32", "BYTES", ...
    shape: Tuple[int, ...]

    @property
    def item_bytes(self) -> int:
        """Bytes of one batch item (fixed-size types and shapes only)."""
        if self.datatype not in _NUMPY or any(d < 0 for d in self.shape):
            raise DetectionClientError(f"output {self.name!r} ({self.datatype}, shape {list(self.shape)}) has no "
                                       "fixed size; shared memory needs fixed-size outputs")
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(_NUMPY[self.datatype]).itemsize

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(_NUMPY[self.datatype])


@dataclass(frozen=True)
class ModelInfo:
    """What the client learns from the model's config and metadata on first use."""

    name: str
    version: str
    max_batch_size: int
    class_names: Tuple[str, ...]
    input_size: Optional[Tuple[int, int]]  # (height, width) of the detector input
    platform: str = ""
    versions: Tuple[str, ...] = ()  # versions the server has loaded
    inputs: Tuple[TensorSpec, ...] = ()
    outputs: Tuple[TensorSpec, ...] = ()

    @property
    def input_name(self) -> str:
        return self.inputs[0].name if self.inputs else "IMAGE"

    @property
    def max_detections(self) -> Optional[int]:
        """Detections per image the server pads to (the ``scores`` output's length)."""
        for spec in self.outputs:
            if spec.name == "scores" and spec.shape:
                return spec.shape[0]
        return None

    def output(self, name: str) -> TensorSpec:
        for spec in self.outputs:
            if spec.name == name:
                return spec
        raise DetectionClientError(f"model {self.name!r} has no output {name!r}; it has "
                                   f"{[s.name for s in self.outputs]}")


def _specs(entries: Any, batched: bool) -> Tuple[TensorSpec, ...]:
    specs = []
    for e in entries or ():
        shape = tuple(int(d) for d in e.get("shape", ()))
        specs.append(TensorSpec(e["name"], e["datatype"], shape[1:] if batched else shape))
    return tuple(specs)


def model_info(model: str, version: str, config: Mapping[str, Any], metadata: Mapping[str, Any]) -> ModelInfo:
    """Parse a model config and metadata (as dicts) into :class:`ModelInfo`."""
    config = config.get("config", config)  # gRPC wraps the config in a response message
    params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
    max_batch = int(config.get("max_batch_size", 0))
    names = tuple(json.loads(params["class_names"])) if "class_names" in params else ()
    size = None
    if "input_height" in params and "input_width" in params:
        size = (int(params["input_height"]), int(params["input_width"]))
    batched = max_batch > 0
    return ModelInfo(model, version, max_batch, names, size, str(metadata.get("platform", config.get("platform", ""))),
                     tuple(str(v) for v in metadata.get("versions", ())), _specs(metadata.get("inputs"), batched),
                     _specs(metadata.get("outputs"), batched))
