"""The TensorRT network: parsing the ONNX (with errors that name the node), the one
optimization profile, and the plan's inputs/outputs as config.pbtxt entries.

The pure parts (``profile_shapes``, ``triton_dtype``, ``format_parser_errors``) are tested
without TensorRT; the rest gets the ``tensorrt`` module passed in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

from generator.errors import TritonForgeError
from generator.export.tensorrt.options import BuildOptions
from generator.export.tensorrt.strategy import WEAK_TYPING_REMOVED_IN, BuildStrategy

# TensorRT DataType member name -> Triton data type
TRITON_DTYPES = {"FLOAT": "TYPE_FP32", "HALF": "TYPE_FP16", "BF16": "TYPE_BF16", "INT8": "TYPE_INT8",
                 "UINT8": "TYPE_UINT8", "INT32": "TYPE_INT32", "INT64": "TYPE_INT64", "BOOL": "TYPE_BOOL"}


def profile_shapes(opts: BuildOptions, height: int, width: int) -> Dict[str, List[int]]:
    """The one optimization profile: the batch range on the input's batch dim."""
    return {k: [b, 3, height, width] for k, b in (("min", opts.min_batch), ("opt", opts.opt_batch),
                                                   ("max", opts.max_batch))}


def triton_dtype(trt_dtype_name: str) -> str:
    """``DataType.HALF`` (or ``HALF``) -> ``TYPE_FP16``."""
    name = str(trt_dtype_name).rsplit(".", 1)[-1]
    if name not in TRITON_DTYPES:
        raise TritonForgeError(f"TensorRT data type {trt_dtype_name!r} has no Triton equivalent here")
    return TRITON_DTYPES[name]


def io_entry(tensor) -> dict:
    """A network input/output as a config.pbtxt entry (dims without the batch axis)."""
    dims = [int(d) for d in tuple(tensor.shape)[1:]]
    return {"name": tensor.name, "data_type": triton_dtype(getattr(tensor.dtype, "name", str(tensor.dtype))),
            "dims": dims}


def io_entries(network) -> tuple:
    """(inputs, outputs) of the network as config.pbtxt entries."""
    return ([io_entry(network.get_input(i)) for i in range(network.num_inputs)],
            [io_entry(network.get_output(i)) for i in range(network.num_outputs)])


def parse_onnx(trt, builder, logger, onnx_path: Path, strategy: BuildStrategy, major: int):
    """A network definition typed as ``strategy`` says, parsed from ``onnx_path``."""
    flags = 0
    if strategy.strongly_typed and major < WEAK_TYPING_REMOVED_IN:  # always on (flag deprecated) from TensorRT 11
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise TritonForgeError(parser_error_text(parser, onnx_path))
    return network, parser  # the parser owns weights the network refers to: keep it alive


def parser_error_text(parser, onnx_path: Path) -> str:
    """The parser's errors, with node names and operators looked up in the ONNX when
    TensorRT gives only an index."""
    import onnx

    errors = []
    for i in range(parser.num_errors):
        e = parser.get_error(i)
        entry = {"desc": e.desc(), "node": int(e.node())}
        for attr in ("node_name", "node_operator"):  # TensorRT >= 10
            if hasattr(e, attr):
                entry[attr] = getattr(e, attr)()
        errors.append(entry)
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return format_parser_errors(onnx_path, errors, [n.name for n in graph.node], [n.op_type for n in graph.node])


def format_parser_errors(onnx_path: Path, errors: Sequence[dict], node_names: Sequence[str] = (),
                         node_ops: Sequence[str] = ()) -> str:
    """One line per TensorRT ONNX parser error, naming the node (by name, else by index)."""
    lines = [f"TensorRT could not parse {onnx_path} ({len(errors)} error{'s' if len(errors) != 1 else ''}):"]
    for e in errors:
        index = e.get("node", -1)
        name = e.get("node_name") or (node_names[index] if 0 <= index < len(node_names) else "")
        op = e.get("node_operator") or (node_ops[index] if 0 <= index < len(node_ops) else "")
        where = f"node {name!r} ({op})" if name else f"node #{index} ({op})" if index >= 0 else "model"
        lines.append(f"  {where}: {e.get('desc', '').strip()}")
    return "\n".join(lines)
