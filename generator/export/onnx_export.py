"""PyTorch detector -> ONNX with a dynamic batch axis, checked against PyTorch."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from generator._lazy import require
from generator.atomic import atomic_path
from generator.errors import TritonForgeError, UsageError
from generator.export.signature import META_FAMILY, META_IMGSZ, META_NAMES, triton_dtype
from generator.models.checkpoint import Detector
from generator.models.contract import INPUT_NAME, OUTPUT_NAME
from generator.reproducer import write_reproducer
from generator.runtime.layouts import DEFAULT_LAYOUT, LayoutMismatch, get_layout


@dataclass
class ExportReport:
    path: Path
    max_abs_diff: float
    opset: int
    simplified: bool

    def summary(self) -> str:
        return (f"wrote {self.path} (opset {self.opset}, simplified={self.simplified}); "
                f"max |onnxruntime - pytorch| = {self.max_abs_diff:.2e}")


def export_onnx(det: Detector, out: Path, opset: int = 17, simplify: bool = True,
                tolerance: float = 1e-2, check_images: Optional[np.ndarray] = None,
                command: Optional[Sequence[str]] = None) -> ExportReport:
    """Export ``det`` to ``out``; fail loudly when ONNX Runtime disagrees with PyTorch.

    ``check_images`` (``[B, 3, S, S]`` float32, letterboxed real images) are what the
    comparison runs on; without them, a seeded random batch. ``tolerance`` bounds the max
    abs difference over boxes (pixels) and class probabilities. ``command``: the command
    recorded in the reproducer ``out.export.json``. Atomic: nothing at ``out`` on failure.
    """
    torch = require("torch", "to export ONNX")
    out = Path(out)
    if det.imgsz % 32:
        raise UsageError(f"--imgsz must be a multiple of 32 (the largest stride), got {det.imgsz}")
    if not out.parent.exists():
        raise UsageError(f"output folder does not exist: {out.parent}")
    model = det.model.eval()
    dummy = torch.rand(1, 3, det.imgsz, det.imgsz)
    with atomic_path(out) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (dummy,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=opset, dynamo=False,
            )
        simplified = _simplify(tmp) if simplify else False
        _write_metadata(tmp, det)
        diff = _compare(model, tmp, _check_batch(det.imgsz, check_images))
        if not diff <= tolerance:
            raise TritonForgeError(
                f"export check failed: ONNX Runtime differs from PyTorch by {diff:.3e} > {tolerance:g}; nothing written"
            )
    report = ExportReport(out, diff, opset, simplified)
    _write_reproducer(out, det, report, command)
    return report


def _simplify(path: Path) -> bool:
    try:
        import onnxslim
    except ImportError:
        return False
    import onnx

    slim = onnxslim.slim(onnx.load(str(path)))
    onnx.save(slim, str(path))
    return True


def _write_metadata(path: Path, det: Detector) -> None:
    import onnx

    model = onnx.load(str(path))
    meta = {META_NAMES: json.dumps(list(det.names)), META_IMGSZ: str(det.imgsz), META_FAMILY: det.family}
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "tritonforge"
    onnx.save(model, str(path))


def _check_batch(imgsz: int, images: Optional[np.ndarray]):
    torch = require("torch")
    if images is not None:
        return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    return torch.rand(2, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0))


def check_images_from(data_spec: Path, imgsz: int, count: int = 8) -> np.ndarray:
    """Letterboxed validation images of a dataset, for the export check."""
    from generator.data.dataset import load_dataset

    return letterboxed_samples(load_dataset(Path(data_spec), "val").samples[:count], imgsz)


def letterboxed_samples(samples, imgsz: int) -> np.ndarray:
    """Samples' images as the server feeds them to the detector: ``[N, 3, S, S]`` float32."""
    from generator.runtime.imaging import preprocess_bytes

    return np.stack([preprocess_bytes(s.image_path.read_bytes(), imgsz, imgsz)[0] for s in samples])


def _compare(model, path: Path, x, layout: str = DEFAULT_LAYOUT) -> float:
    """Max abs difference between PyTorch and ONNX Runtime on the same batch, after checking
    that the ONNX outputs have the shapes ``layout`` decodes (as serving and eval will)."""
    torch = require("torch")
    ort = require("onnxruntime", "to check the export")
    with torch.no_grad():
        ref = model(x).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    try:
        get_layout(layout).check_outputs([(o.name, a.shape, triton_dtype(a.dtype))
                                          for o, a in zip(sess.get_outputs(), outputs)])
    except LayoutMismatch as exc:
        raise TritonForgeError(f"export check failed: {exc}") from None
    got = outputs[0]
    if got.shape != ref.shape:
        raise TritonForgeError(f"export check failed: ONNX output shape {got.shape} != PyTorch {ref.shape}")
    return float(np.abs(got - ref).max())


def _write_reproducer(out: Path, det: Detector, report: ExportReport, command: Optional[Sequence[str]]) -> None:
    """Leave the command that made the ONNX file, and the versions, beside it."""
    torch = require("torch")
    write_reproducer(out, "export", command, versions={"torch": torch.__version__},
                     family=det.family, imgsz=det.imgsz, num_classes=det.num_classes, opset=report.opset,
                     simplified=report.simplified, max_abs_diff=report.max_abs_diff, torch=torch.__version__)


def default_out(model_spec: str, out: Optional[Path]) -> Path:
    return Path(out) if out else Path(Path(model_spec).stem + ".onnx")
