"""Make a fixed batch axis dynamic, and keep the edit only if the graph still computes the
same thing (Ultralytics' default export is fixed at batch 1).

The edit: dim 0 of the image input, and of every output whose dim 0 is that same fixed
batch, becomes the symbolic ``batch``; intermediate shapes (``value_info``) are cleared so
nothing recorded for batch 1 is trusted. The check: ONNX Runtime runs the edited graph on
a batch of 2 seeded random images and on each image alone; the edit stands only if every
output agrees within ``TOLERANCE``. A graph with the batch baked in (a ``Reshape`` to
``[1, ...]``, a per-image loop unrolled for batch 1) fails it: then nothing is written
and the reason says why, so the caller can serve it at max batch 1 instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from generator._lazy import require
from generator.atomic import atomic_path
from generator.errors import UsageError

TOLERANCE = 1e-4
BATCH_DIM = "batch"
_CHECK_BATCH = 2


@dataclass(frozen=True)
class BatchEdit:
    """Whether ``dst`` now holds a graph with a dynamic batch axis, and why (not)."""

    made_dynamic: bool
    reason: str


def make_batch_dynamic(src: Path, dst: Path, imgsz: Optional[Tuple[int, int]] = None) -> BatchEdit:
    """Edit ``src``'s batch axis to dynamic, check it in ONNX Runtime, and save it (atomically)
    to ``dst`` only if the check passes. ``imgsz`` (H, W) sizes the check images when the
    graph's height and width are dynamic."""
    onnx = require("onnx", "to edit the ONNX batch axis")
    model = onnx.load(str(src))
    inp = _image_input(model, src)
    fixed = _dim(inp, 0)
    edited_outputs = _make_symbolic(model, inp, fixed)
    x = _check_images(model, inp, src, imgsz)
    failure = _compare(model.SerializeToString(), inp.name, x)
    if failure:
        return BatchEdit(False, f"batch axis kept at {fixed}: {failure}")
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    outs = ", ".join(edited_outputs) or "no output"
    return BatchEdit(True, f"batch axis made dynamic (input and {outs}; checked: batch {_CHECK_BATCH} == "
                           f"{_CHECK_BATCH} batch-1 runs within {TOLERANCE:g})")


def _image_input(model, src: Path):
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(inputs[0].type.tensor_type.shape.dim) != 4:
        raise UsageError(f"{src}: expected one image input [N, 3, H, W], found {[i.name for i in inputs]}")
    return inputs[0]


def _dim(value_info, axis: int) -> Optional[int]:
    d = value_info.type.tensor_type.shape.dim[axis]
    return d.dim_value if d.HasField("dim_value") else None


def _make_symbolic(model, inp, fixed: Optional[int]) -> List[str]:
    """Dim 0 of the input, and of outputs fixed at the input's batch, -> ``batch``; the
    outputs edited, by name."""
    inp.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    edited = []
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        if len(dims) and (fixed is None or _dim(out, 0) in (fixed, None)):
            dims[0].dim_param = BATCH_DIM
            edited.append(out.name)
    del model.graph.value_info[:]
    return edited


def _check_images(model, inp, src: Path, imgsz) -> np.ndarray:
    """``[2, 3, H, W]`` seeded uniform 0..1 images in the input's dtype."""
    h, w = _dim(inp, 2), _dim(inp, 3)
    if h is None or w is None:
        if imgsz is None:
            raise UsageError(f"{src}: input {inp.name!r} has a dynamic height or width: pass its size (--imgsz H,W)")
        h, w = imgsz
    dtype = np.float16 if inp.type.tensor_type.elem_type == 10 else np.float32
    rng = np.random.default_rng(0)
    return rng.random((_CHECK_BATCH, 3, h, w), dtype=np.float32).astype(dtype)


def _compare(model_bytes: bytes, input_name: str, x: np.ndarray) -> str:
    """'' when batch 2 equals the single runs; else what went wrong, for the user."""
    ort = require("onnxruntime", "to check the edited batch axis")
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 4  # the failure is reported in the reason, not logged
        sess = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        batched = sess.run(None, {input_name: x})
        singles = [sess.run(None, {input_name: x[i:i + 1]}) for i in range(len(x))]
    except Exception as exc:  # ONNX Runtime's own message says which node refused the batch
        return f"ONNX Runtime cannot run a batch of {len(x)}: {_ort_failure(exc)}"
    for out, got, parts in zip(sess.get_outputs(), batched, zip(*singles)):
        problem = _differs(out.name, np.asarray(got), [np.asarray(p) for p in parts])
        if problem:
            return problem
    return ""


def _differs(name: str, got: np.ndarray, parts: List[np.ndarray]) -> str:
    if any(p.shape[:1] != (1,) for p in parts) or got.shape[:1] != (len(parts),):
        return (f"output {name!r} has shape {list(got.shape)} for a batch of {len(parts)} "
                f"(single runs: {list(parts[0].shape)})")
    want = np.concatenate(parts)
    if got.shape != want.shape:
        return f"output {name!r} has shape {list(got.shape)} for a batch of {len(parts)}, expected {list(want.shape)}"
    diff = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max(initial=0.0))
    if not diff <= TOLERANCE:
        return f"output {name!r} differs by {diff:.3g} between the batch and the single runs (> {TOLERANCE:g})"
    return ""


def _ort_failure(exc: Exception) -> str:
    """ONNX Runtime's failure, short: the node that refused the batch and the shapes, when it says."""
    text = str(exc)
    node = re.search(r"running (\w+) node\. Name:'([^']*)'", text)
    shapes = re.search(r"Input shape:\{[^}]*\}, requested shape:\{[^}]*\}", text)
    if node:
        name = f" {node.group(2)!r}" if node.group(2) else ""
        return f"{node.group(1)} node{name} fails" + (f" ({shapes.group(0)})" if shapes else "")
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
