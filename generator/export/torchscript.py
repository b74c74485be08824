"""PyTorch detector -> TorchScript (``torch.jit.trace``), checked against eager PyTorch.

``tritonforge export --torchscript`` writes ``<out stem>.torchscript`` beside the ONNX. The
archive carries a ``tritonforge.json`` extra file (input and output names, input dtype,
class names, size) that the TorchScript runner and ``generate`` read. For the uint8 hand-off
:func:`fold_input_format` wraps a traced file so it takes the letterboxed uint8 pixels and
does the input format itself, like ``export.uint8_input`` does for an ONNX graph.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from generator._lazy import require
from generator.atomic import atomic_path
from generator.errors import TritonForgeError, UsageError
from generator.export.input_format import InputFormat
from generator.models.checkpoint import Detector
from generator.models.contract import INPUT_NAME, OUTPUT_NAME
from generator.reproducer import write_reproducer
from generator.runtime.runners.torchscript_runner import META_FILE, TorchScriptRunner, _load

SUFFIX = ".torchscript"
EXPORT_COMMAND = "tritonforge export --model CHECKPOINT.pt --out MODEL.onnx --torchscript"


def torchscript_path(onnx_path: Path) -> Path:
    """The TorchScript file that goes with an ONNX: ``model.onnx`` -> ``model.torchscript``."""
    return Path(onnx_path).with_suffix(SUFFIX)


@dataclass
class TorchScriptReport:
    path: Path
    max_abs_diff: float
    batch: int  # images the check ran on

    def summary(self) -> str:
        return (f"wrote {self.path} (torch.jit.trace); max |torchscript - pytorch| = {self.max_abs_diff:.2e} "
                f"on {self.batch} images")


def _meta(det: Detector) -> dict:
    return {"input_name": INPUT_NAME, "input_dtype": "float32", "output_names": [OUTPUT_NAME],
            "names": list(det.names), "imgsz": det.imgsz, "family": det.family}


def export_torchscript(det: Detector, out: Path, tolerance: float = 1e-2, check_images: Optional[np.ndarray] = None,
                       command: Optional[Sequence[str]] = None) -> TorchScriptReport:
    """Trace ``det`` at batch 1 and save it to ``out``; refuse (nothing written) when the saved
    file, run at the check batch (so another batch size than traced), differs from eager
    PyTorch by more than ``tolerance`` (max abs difference over all outputs). ``check_images``
    as for the ONNX export (letterboxed real images; default: a seeded random batch of 2)."""
    torch = require("torch", "to export TorchScript")
    from generator.export.onnx_export import _check_batch

    out = Path(out)
    if not out.parent.exists():
        raise UsageError(f"output folder does not exist: {out.parent}")
    model = det.model.eval()
    x = _check_batch(det.imgsz, check_images)
    with atomic_path(out) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent Python values
            traced = torch.jit.trace(_named_input(torch, model), torch.rand(1, 3, det.imgsz, det.imgsz),
                                     check_trace=False)
        torch.jit.save(traced, str(tmp), _extra_files={META_FILE: json.dumps(_meta(det))})
        diff = max_abs_diff(model, tmp, x.numpy())
        if not diff <= tolerance:
            raise TritonForgeError(f"TorchScript check failed: the traced module differs from PyTorch by "
                                   f"{diff:.3e} > {tolerance:g} (--tolerance); nothing written")
    report = TorchScriptReport(out, diff, len(x))
    write_reproducer(out, "export", command, versions={"torch": torch.__version__}, format="torchscript",
                     family=det.family, imgsz=det.imgsz, num_classes=det.num_classes, max_abs_diff=diff,
                     check_batch=len(x), tolerance=tolerance)
    return report


def max_abs_diff(model, path: Path, x: np.ndarray) -> float:
    """Max abs difference between eager ``model`` and the TorchScript file on ``x``, over every
    output (shapes must match)."""
    from generator.runners.torch_runner import TorchRunner

    want, got = TorchRunner(model)(x), TorchScriptRunner(path)(x)
    if len(want) != len(got) or any(a.shape != b.shape for a, b in zip(want, got)):
        raise TritonForgeError(f"TorchScript check failed: output shapes {[g.shape for g in got]} != "
                               f"PyTorch {[w.shape for w in want]}")
    return float(max(np.abs(a - b).max() for a, b in zip(want, got)))


def fold_input_format(path: Path, fmt: InputFormat) -> bytes:
    """The TorchScript file at ``path`` wrapped to take uint8 ``[N, 3, H, W]`` RGB pixels: cast,
    channel order, ``* scale``, ``- mean``, ``/ std`` in float32, then the traced module (the
    same float32 operations as the preprocess stage's float hand-off). Returns the archive."""
    torch = require("torch", "to fold the input format into a TorchScript file")
    extra = {META_FILE: ""}
    inner = _load(torch, path, extra)
    meta = json.loads(extra[META_FILE]) if extra[META_FILE] else {}
    if meta.get("input_dtype", "float32") != "float32":
        raise UsageError(f"{path}: takes {meta['input_dtype']} input, not float32: cannot fold the input format")
    size = int(meta.get("imgsz", 64))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        wrapped = torch.jit.trace(_formatted(torch, inner, fmt), torch.zeros(1, 3, size, size, dtype=torch.uint8),
                                  check_trace=False)
    buf = io.BytesIO()
    torch.jit.save(wrapped, buf, _extra_files={META_FILE: json.dumps({**meta, "input_dtype": "uint8"})})
    return buf.getvalue()


def _named_input(torch, model):
    """``model`` behind a ``forward(images)``: Triton's libtorch backend matches config inputs
    to forward()'s argument names, so the served input keeps the ONNX's name."""

    class Named(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, images):
            return self.model(images)

    return Named()


def _formatted(torch, inner, fmt: InputFormat):
    """A module doing ``fmt`` on uint8 pixels, then ``inner``."""

    class Formatted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner
            self.bgr = fmt.channel_order == "BGR"
            self.register_buffer("scale", torch.tensor(fmt.scale, dtype=torch.float32))
            self.register_buffer("mean", torch.tensor(fmt.mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(fmt.std, dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, images):
            y = images.to(torch.float32)
            if self.bgr:
                y = y.flip(1)
            return self.inner((y * self.scale - self.mean) / self.std)

    return Formatted()
