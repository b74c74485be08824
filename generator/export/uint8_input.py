"""The uint8 hand-off: fold the input format into the detector graph.

The preprocess stage then hands the detector the letterboxed image as it is, ``uint8``
``[N, 3, H, W]`` in RGB order, a quarter of the bytes of float32; the graph does the rest
of what the preprocess used to do, with the same float32 operations in the same order
(cast, channel order, ``* scale``, ``- mean``, ``/ std``, then float16 for an FP16 model).
So the network's input is bit-for-bit what the float hand-off gave it, and served results
equal offline ones.

The input keeps its name and shape; only its element type changes. Runtimes that read
ONNX (ONNX Runtime, OpenVINO, Triton's ONNX Runtime and OpenVINO backends) run the
folded graph as any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Union

import numpy as np

from generator.errors import UsageError
from generator.export.input_format import InputFormat

# the internal name of the float input the original graph consumed
FLOAT_SUFFIX = "_float"


def fold_input_format(onnx_model: Union[str, Path, "onnx.ModelProto"], fmt: InputFormat) -> "onnx.ModelProto":
    """A copy of ``onnx_model`` whose image input is uint8, with ``fmt`` done inside the graph.

    The first graph input must be a float32 or float16 ``[N, 3, H, W]`` tensor; anything
    else is refused with the file and tensor named.
    """
    import onnx
    from onnx import TensorProto, helper

    source = str(onnx_model) if not isinstance(onnx_model, onnx.ModelProto) else "the model"
    model = onnx.load(str(onnx_model)) if not isinstance(onnx_model, onnx.ModelProto) else onnx_model
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    graph = folded.graph
    initializers = {t.name for t in graph.initializer}
    image = next((i for i in graph.input if i.name not in initializers), None)
    if image is None:
        raise UsageError(f"{source}: the graph has no input to fold the input format into")
    elem = image.type.tensor_type.elem_type
    dims = image.type.tensor_type.shape.dim
    if elem not in (TensorProto.FLOAT, TensorProto.FLOAT16) or len(dims) != 4 or dims[1].dim_value not in (0, 3):
        raise UsageError(f"{source}: input {image.name!r} must be float32 or float16 [N, 3, H, W] for the uint8 "
                         f"hand-off (use --handoff float)")
    name, inner = image.name, image.name + FLOAT_SUFFIX
    for node in graph.node:
        node.input[:] = [inner if i == name else i for i in node.input]
    for output in graph.output:  # an input passed straight through (never in a detector, but keep it valid)
        if output.name == name:
            raise UsageError(f"{source}: input {name!r} is also a graph output; cannot fold the input format")
    image.type.tensor_type.elem_type = TensorProto.UINT8
    nodes = _format_nodes(name, inner, fmt, elem, helper, TensorProto)
    graph.initializer.extend(_format_constants(name, fmt, helper, TensorProto))
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)  # before every consumer: the graph stays topologically sorted
    return folded  # not re-checked: converters (fp16) leave graphs unsorted that runtimes load fine


def _format_constants(name: str, fmt: InputFormat, helper, TensorProto) -> List:
    constants = [helper.make_tensor(f"{name}_scale", TensorProto.FLOAT, [], [np.float32(fmt.scale)])]
    if fmt.channel_order == "BGR":
        constants.append(helper.make_tensor(f"{name}_bgr", TensorProto.INT64, [3], [2, 1, 0]))
    for field in ("mean", "std"):
        values = getattr(fmt, field)
        if values != getattr(InputFormat(), field):
            constants.append(helper.make_tensor(f"{name}_{field}", TensorProto.FLOAT, [1, 3, 1, 1],
                                                [float(np.float32(v)) for v in values]))
    return constants


def _format_nodes(name: str, inner: str, fmt: InputFormat, elem: int, helper, TensorProto) -> List:
    """Cast -> [Gather BGR] -> Mul scale -> [Sub mean] -> [Div std] -> [Cast FP16], ending in ``inner``."""
    steps = [("Cast", [], {"to": TensorProto.FLOAT})]
    if fmt.channel_order == "BGR":
        steps.append(("Gather", [f"{name}_bgr"], {"axis": 1}))
    steps.append(("Mul", [f"{name}_scale"], {}))
    if fmt.mean != InputFormat().mean:
        steps.append(("Sub", [f"{name}_mean"], {}))
    if fmt.std != InputFormat().std:
        steps.append(("Div", [f"{name}_std"], {}))
    if elem == TensorProto.FLOAT16:
        steps.append(("Cast", [], {"to": TensorProto.FLOAT16}))
    nodes, current = [], name
    for index, (op, extra, attrs) in enumerate(steps):
        out = inner if index == len(steps) - 1 else f"{name}_u8_{index}"
        # Gather takes (data, indices); the arithmetic ops take (x, constant)
        nodes.append(helper.make_node(op, [current, *extra], [out], name=f"{name}_u8_{op.lower()}_{index}", **attrs))
        current = out
    return nodes


def folded_bytes(onnx_path: Union[str, Path], fmt: InputFormat) -> bytes:
    """:func:`fold_input_format` serialized, for a repository's ``model.onnx``."""
    return fold_input_format(onnx_path, fmt).SerializeToString()
