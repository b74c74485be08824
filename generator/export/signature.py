"""Read what the repository generator needs from an ONNX detector: tensor names,
dims, image size, class count and class names. Nothing is assumed: the output layout
(``generator.runtime.layouts``) says whether the outputs have the shapes it decodes."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from generator.errors import UsageError
from generator.runtime.layouts import DEFAULT_LAYOUT, LayoutMismatch, get_layout

META_NAMES = "tritonforge.names"
META_IMGSZ = "tritonforge.imgsz"
META_FAMILY = "tritonforge.family"

_ONNX_FLOAT_TYPES = {1: "FP32", 10: "FP16"}


@dataclass(frozen=True)
class DetectorSignature:
    """The detector's interface as read from the ONNX graph."""

    input_name: str
    output_name: str
    input_dtype: str  # Triton data type name without TYPE_ (FP32 / FP16)
    output_dtype: str
    height: int
    width: int
    num_classes: int
    num_anchors: int
    names: Tuple[str, ...]
    family: str = ""
    layout: str = DEFAULT_LAYOUT

    @property
    def output_dims(self) -> Tuple[int, int]:
        return (4 + self.num_classes, self.num_anchors)


def _dims(value_info) -> List[Optional[int]]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]


def _names_from_metadata(meta: dict, num_classes: int, path: Path) -> Optional[List[str]]:
    if META_NAMES in meta:
        names = json.loads(meta[META_NAMES])
    elif "names" in meta:  # Ultralytics stores "{0: 'person', 1: 'bicycle'}"
        try:
            parsed = ast.literal_eval(meta["names"])
        except (ValueError, SyntaxError):
            return None
        names = [parsed[k] for k in sorted(parsed)] if isinstance(parsed, dict) else list(parsed)
    else:
        return None
    if len(names) != num_classes:
        raise UsageError(
            f"{path}: metadata lists {len(names)} class names but the output has {num_classes} classes"
        )
    return [str(n) for n in names]


def read_signature(path: Path, layout: str = DEFAULT_LAYOUT) -> DetectorSignature:
    """Inspect ``path`` and check it follows the detector contract: one image input
    ``[N, 3, H, W]`` and outputs that ``layout`` decodes."""
    path = Path(path)
    model = _load(path)
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    outputs = list(model.graph.output)
    if len(inputs) != 1:
        raise UsageError(f"{path}: expected one image input, found {[i.name for i in inputs]}")
    inp = inputs[0]
    in_dims = _dims(inp)
    if len(in_dims) != 4 or in_dims[1] != 3 or in_dims[2] is None or in_dims[3] is None:
        raise UsageError(f"{path}: input {inp.name!r} must be [N, 3, H, W] with fixed H and W, got {in_dims}")
    try:
        shape = get_layout(layout).check_outputs([(o.name, _dims(o)) for o in outputs])
    except LayoutMismatch as exc:
        raise UsageError(f"{path}: {exc}") from None
    out = outputs[0]
    in_type = _ONNX_FLOAT_TYPES.get(inp.type.tensor_type.elem_type)
    out_type = _ONNX_FLOAT_TYPES.get(out.type.tensor_type.elem_type)
    if in_type is None or out_type is None:
        raise UsageError(f"{path}: input and output must be float32 or float16 tensors")
    meta = {p.key: p.value for p in model.metadata_props}
    names = _names_from_metadata(meta, shape.num_classes, path) or [f"class{i}" for i in range(shape.num_classes)]
    return DetectorSignature(
        input_name=inp.name,
        output_name=out.name,
        input_dtype=in_type,
        output_dtype=out_type,
        height=in_dims[2],
        width=in_dims[3],
        num_classes=shape.num_classes,
        num_anchors=shape.num_candidates,
        names=tuple(names),
        family=meta.get(META_FAMILY, ""),
        layout=layout,
    )


def _load(path: Path):
    """The ONNX graph without external weights; UsageError when missing or unreadable."""
    import onnx

    if not path.is_file():
        raise UsageError(f"ONNX file not found: {path}")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UsageError(f"{path}: not a readable ONNX model ({exc})") from exc
