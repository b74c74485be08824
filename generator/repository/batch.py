"""The batch a generated repository may declare: never one the model cannot run.

A detector ONNX with a dynamic batch axis runs any batch the options ask for. One exported
with a fixed batch (Ultralytics' default: 1) does not: the dynamic batcher's batches of 2
and more would fail inside the runtime, taking single-image requests down with them. So
the batch axis is made dynamic when the graph allows it, checked by running the edited
graph (``generator.export.batch_axis.make_batch_dynamic``: batch 2 against two batch-1
runs); otherwise the repository declares max batch 1 with dynamic batching off (a fixed
batch N > 1: max batch N, padded by the embedded detector stage, refused elsewhere). Either
way the decision is recorded (``tritonforge.json``: ``batch_axis``) and printed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

from generator.errors import UsageError
from generator.export.signature import DetectorSignature
from generator.repository.options import RepositoryOptions

DYNAMIC = "dynamic in the ONNX"
FIXED_ONE = "max_batch_size 1, dynamic batching off: {reason}"
FIXED_PADDED = "max_batch_size {n}, the detector stage pads smaller batches to the graph's fixed {n}: {reason}"


@dataclass(frozen=True)
class BatchDecision:
    """What the repository is generated from after the batch axis was looked at."""

    onnx: Path
    sig: DetectorSignature
    opts: RepositoryOptions
    note: str  # what was done, for tritonforge.json and the CLI
    changed: bool  # whether the ONNX or the options differ from what was given


def settle_batch(onnx: Path, sig: DetectorSignature, opts: RepositoryOptions, workdir: Path,
                 pads: bool = False) -> BatchDecision:
    """``onnx`` as is when its batch axis is dynamic; else an edited copy in ``workdir`` whose
    batch axis was made dynamic and checked, or max batch 1 without dynamic batching. A fixed
    batch N above 1 that cannot be made dynamic: max batch N where the detector stage ``pads``
    smaller batches to N (the embedded target), else UsageError (no request could run)."""
    if sig.batch is None:
        return BatchDecision(onnx, sig, opts, DYNAMIC, False)
    edited = Path(workdir) / Path(onnx).name
    made, reason = _make_dynamic(onnx, sig, edited)
    if made:
        return BatchDecision(edited, dataclasses.replace(sig, batch=None), opts, reason, True)
    if sig.batch == 1:
        return BatchDecision(onnx, sig, single_batch(opts), FIXED_ONE.format(reason=reason), True)
    if not pads:
        raise UsageError(f"{onnx}: the batch axis is fixed at {sig.batch} and could not be made dynamic "
                         f"({reason}); export it with a dynamic batch axis or with batch 1 (the embedded "
                         f"target runs a fixed batch, padding smaller ones)")
    padded = dataclasses.replace(opts, max_batch_size=sig.batch)
    return BatchDecision(onnx, sig, padded, FIXED_PADDED.format(n=sig.batch, reason=reason), True)


def _make_dynamic(onnx: Path, sig: DetectorSignature, out: Path) -> Tuple[bool, str]:
    """(True, what was done) when the edited, checked graph was written to ``out``; else (False, why not)."""
    if sig.has_trt_plugin:
        return False, f"batch axis kept at {sig.batch}: ONNX Runtime cannot run TensorRT-only nodes to check an edit"
    from generator.export.batch_axis import make_batch_dynamic

    edit = make_batch_dynamic(Path(onnx), out, imgsz=(sig.height, sig.width))
    return edit.made_dynamic, edit.reason


def single_batch(opts: RepositoryOptions) -> RepositoryOptions:
    """``opts`` with max batch 1 and no dynamic batching (and no larger TensorRT opt batch)."""
    changes = {"max_batch_size": 1, "dynamic_batching": False}
    if getattr(opts, "opt_batch", None) is not None:
        changes["opt_batch"] = 1
    return dataclasses.replace(opts, **changes)
