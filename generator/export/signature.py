"""Read what the repository generator needs from a detector ONNX: its input, its outputs,
the output layout that decodes them, the class names and the input pixel format.

Nothing is assumed: the layout is forced (``layout=``) or detected
(``layout_detect.detect_layout``: output shapes, the exporter's metadata, the graph's
ops); dynamic height and width are fixed from the exporter's metadata or ``imgsz``.
Reading stays fast (no ONNX Runtime session); making a fixed batch axis dynamic is
``batch_axis.make_batch_dynamic``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from generator.errors import UsageError
from generator.export.exporter_meta import (  # noqa: F401 (META_*: re-exported for the exporter)
    META_FAMILY, META_IMGSZ, META_LAYOUT, META_NAMES, ExporterMeta, read_exporter_meta,
)
from generator.export.input_format import InputFormat, parse_scores
from generator.export.layout_detect import (
    DetectHints, OutputSpec, check_layout, describe_outputs, detect_layout, format_dims,
)
from generator.runtime.layouts import DEFAULT_LAYOUT, Layout, OutputShape, get_layout

# ONNX TensorProto element types -> Triton data type names (without TYPE_)
ONNX_TO_TRITON = {1: "FP32", 10: "FP16", 6: "INT32", 7: "INT64"}
FLOAT_TYPES = ("FP32", "FP16")
# layouts whose scores may be logits: the user or the metadata must say which
SCORES_MATTER = frozenset({"detr"})

__all__ = ["DetectorSignature", "InputFormat", "TensorSpec", "layout_of", "read_signature", "triton_dtype",
           "META_FAMILY", "META_IMGSZ", "META_NAMES"]


@dataclass(frozen=True)
class TensorSpec:
    """One graph output: name, Triton dtype name (FP32, FP16, INT32, INT64), dims without
    the batch axis (-1 where dynamic)."""

    name: str
    dtype: str
    dims: Tuple[int, ...]


@dataclass(frozen=True)
class DetectorSignature:
    """The detector's interface as read from the ONNX graph."""

    input_name: str
    input_dtype: str  # Triton data type name without TYPE_ (FP32 / FP16)
    height: int
    width: int
    outputs: Tuple[TensorSpec, ...]
    num_classes: int
    num_candidates: Optional[int]
    names: Tuple[str, ...]
    family: str = ""
    layout: str = DEFAULT_LAYOUT
    scores: str = "probs"  # "probs" | "logits" (read by DETR-style layouts)
    input_format: InputFormat = field(default_factory=InputFormat)
    batch: Optional[int] = None  # None: dynamic batch axis; an int: the graph's fixed batch
    has_trt_plugin: bool = False  # the graph holds TensorRT-only nodes (EfficientNMS_TRT, ...)
    source_meta: str = ""  # whose metadata was read: "tritonforge", "ultralytics", "yolov5", "names", ""

    @property
    def output_name(self) -> str:
        return self.outputs[0].name

    @property
    def output_dtype(self) -> str:
        return self.outputs[0].dtype

    @property
    def output_dims(self) -> Tuple[int, ...]:
        return self.outputs[0].dims

    @property
    def num_anchors(self) -> Optional[int]:
        return self.num_candidates


def layout_of(sig: DetectorSignature, **extra) -> Layout:
    """The configured layout object that decodes ``sig``'s outputs."""
    return get_layout(sig.layout, height=sig.height, width=sig.width, scores=sig.scores, **extra)


def triton_dtype(dtype) -> str:
    """A numpy dtype -> its Triton name (FP32, FP16, INT32, INT64); ValueError for others."""
    import numpy as np

    names = {np.dtype(np.float32): "FP32", np.dtype(np.float16): "FP16", np.dtype(np.int32): "INT32",
             np.dtype(np.int64): "INT64"}
    try:
        return names[np.dtype(dtype)]
    except KeyError:
        raise ValueError(f"no Triton type for {dtype}; expected one of float32, float16, int32, int64") from None


def read_signature(path: Path, layout: Optional[str] = None, imgsz: Optional[Tuple[int, int]] = None,
                   scores: Optional[str] = None, labels: Optional[Sequence[str]] = None,
                   input_format: Optional[InputFormat] = None) -> DetectorSignature:
    """Inspect ``path``: one image input ``[N, 3, H, W]`` and outputs in a known layout.

    ``layout`` None detects it; ``imgsz`` (H, W) fixes a dynamic height and width (else the
    exporter's metadata does); ``labels`` (class names) are checked against the class count
    and win over the metadata's; ``scores`` and ``input_format`` override the metadata.
    UsageError, naming the file, for anything that does not fit.
    """
    path = Path(path)
    model = _load(path)
    meta = read_exporter_meta({p.key: p.value for p in model.metadata_props}, str(path))
    try:
        return _read(model, meta, layout, imgsz, parse_scores(scores), labels, input_format)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None


def _read(model, meta: ExporterMeta, layout, imgsz, scores, labels, input_format) -> DetectorSignature:
    inp = _image_input(model)
    in_dims = _dims(inp)
    height, width = _image_size(inp.name, in_dims, imgsz, meta)
    outputs = _output_specs(model)
    if (in_dims[2], in_dims[3]) != (height, width) or any(None in dims[1:] for _, dims, _ in outputs):
        outputs = _output_specs(_with_image_size(model, inp.name, height, width))
    ops = _op_types(model)
    hints = _hints(meta, labels, ops, scores)
    name, shape = (layout, check_layout(layout, outputs)) if layout else detect_layout(outputs, hints)
    num_classes = _num_classes(name, shape, meta, labels)
    return DetectorSignature(
        input_name=inp.name, input_dtype=_input_dtype(inp), height=height, width=width,
        outputs=tuple(TensorSpec(n, t, tuple(-1 if d is None else d for d in dims[1:])) for n, dims, t in outputs),
        num_classes=num_classes, num_candidates=shape.num_candidates,
        names=tuple(labels) if labels is not None else (meta.names or tuple(f"class{i}" for i in range(num_classes))),
        family=meta.family, layout=name, scores=_scores(name, scores, meta),
        input_format=input_format or meta.input_format or InputFormat(),
        batch=in_dims[0], has_trt_plugin=any(_is_trt_plugin(n) for n in model.graph.node), source_meta=meta.source,
    )


def _image_input(model):
    """The one graph input that is not an initializer."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UsageError(f"expected one image input, found {[i.name for i in inputs]}")
    inp = inputs[0]
    dims = _dims(inp)
    if len(dims) != 4 or dims[1] != 3:
        raise UsageError(f"input {inp.name!r} must be [N, 3, H, W], got {format_dims(dims)}")
    return inp


def _input_dtype(inp) -> str:
    dtype = ONNX_TO_TRITON.get(inp.type.tensor_type.elem_type)
    if dtype not in FLOAT_TYPES:
        from onnx import TensorProto

        code = inp.type.tensor_type.elem_type
        name = TensorProto.DataType.Name(code).lower() if code in TensorProto.DataType.values() else f"type {code}"
        hint = (" (a repository's model.onnx takes uint8 pixels with the input format folded in: "
                "generate from the original ONNX)") if code == TensorProto.UINT8 else ""
        raise UsageError(f"input {inp.name!r} must be float32 or float16, got {name}{hint}")
    return dtype


def _image_size(name: str, dims: List[Optional[int]], imgsz, meta: ExporterMeta) -> Tuple[int, int]:
    """(H, W): the graph's own where fixed; dynamic ones from ``imgsz``, else the metadata."""
    fixed = (dims[2], dims[3])
    if None not in fixed:
        if imgsz is not None and tuple(imgsz) != fixed:
            raise UsageError(f"input {name!r} has a fixed size {fixed[0]}x{fixed[1]} (HxW); "
                             f"--imgsz {imgsz[0]},{imgsz[1]} does not match it")
        return fixed
    size = tuple(imgsz) if imgsz is not None else meta.imgsz
    if size is None:
        raise UsageError(f"input {name!r} has a dynamic height or width ({format_dims(dims)}) and the metadata "
                         f"gives no image size: pass --imgsz H,W")
    for have, want, what in zip(fixed, size, ("height", "width")):
        if have is not None and have != want:
            raise UsageError(f"input {name!r} has a fixed {what} {have}, not {want}")
    return int(size[0]), int(size[1])


def _with_image_size(model, input_name: str, height: int, width: int):
    """A copy of the graph with the input's H and W fixed and shapes re-inferred, so that
    outputs whose dims follow the image size (anchors, ...) get them."""
    import onnx
    from onnx import shape_inference

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    inp = next(i for i in copy.graph.input if i.name == input_name)
    for axis, value in ((2, height), (3, width)):
        inp.type.tensor_type.shape.dim[axis].dim_value = value
    for out in copy.graph.output:
        for d in out.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.Clear()
    del copy.graph.value_info[:]
    try:
        return shape_inference.infer_shapes(copy, data_prop=True)
    except Exception:  # inference is a help, not a requirement: the layout check says what is missing
        return copy


def _output_specs(model) -> List[OutputSpec]:
    specs = []
    for out in model.graph.output:
        dtype = ONNX_TO_TRITON.get(out.type.tensor_type.elem_type)
        if dtype is None:
            raise UsageError(f"output {out.name!r} has ONNX type {out.type.tensor_type.elem_type}; "
                             f"expected float32, float16, int32 or int64")
        specs.append((out.name, _dims(out), dtype))
    return specs


def _op_types(model) -> frozenset:
    return frozenset(n.op_type for n in model.graph.node)


def _is_trt_plugin(node) -> bool:
    """A node only TensorRT runs: the TRT domain or a ``*_TRT`` plugin op."""
    return node.domain == "TRT" or node.op_type.endswith("_TRT")


def _hints(meta: ExporterMeta, labels, ops, scores) -> DetectHints:
    if labels is not None:
        count, source = len(labels), "--labels"
    else:
        count, source = (len(meta.names), "metadata") if meta.names is not None else (None, "metadata")
    return DetectHints(num_classes=count, class_source=source, ops=ops, layout=meta.layout,
                       layout_required=meta.layout_required, layout_detail=meta.detail,
                       scores_given=scores is not None)


def _num_classes(layout: str, shape: OutputShape, meta: ExporterMeta, labels) -> int:
    """From the outputs' shape where the layout tells it, else the metadata, else --labels;
    names given must agree with it."""
    if shape.num_classes is not None:
        for names, source in ((labels, "--labels"), (None if labels is not None else meta.names, "metadata")):
            if names is not None and len(names) != shape.num_classes:
                raise UsageError(f"{source} lists {len(names)} class names but the output has "
                                 f"{shape.num_classes} classes (layout {layout})")
        return shape.num_classes
    if labels is not None:
        return len(labels)
    if meta.names is not None:
        return len(meta.names)
    raise UsageError(f"the {layout} layout's outputs do not tell the class count and the metadata lists no "
                     f"class names: pass --labels FILE")


def _scores(layout: str, scores: Optional[str], meta: ExporterMeta) -> str:
    """probs or logits: --scores, else the metadata; a DETR-style layout must be told."""
    chosen = scores or meta.scores
    if chosen is None and layout in SCORES_MATTER:
        raise UsageError(f"the {layout} layout's class scores may be logits or probabilities and the metadata "
                         f"does not say which: pass --scores logits|probs")
    return chosen or "probs"


def _dims(value_info) -> List[Optional[int]]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]


def _load(path: Path):
    """The ONNX graph without external weights; UsageError when missing or unreadable."""
    import onnx

    if not path.is_file():
        raise UsageError(f"ONNX file not found: {path}")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UsageError(f"{path}: not a readable ONNX model ({exc})") from exc


def describe(sig: DetectorSignature) -> str:
    """One line for CLI output: input, outputs, layout, classes."""
    outs = describe_outputs([(o.name, [sig.batch] + [None if d < 0 else d for d in o.dims], o.dtype)
                             for o in sig.outputs])
    return (f"detector {sig.input_name} {format_dims([sig.batch, 3, sig.height, sig.width])} -> {outs}; "
            f"layout {sig.layout}, {sig.num_classes} classes")
