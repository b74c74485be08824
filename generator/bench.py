"""``tritonforge bench --variants``: several detectors side by side, offline."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Dict, List

from generator.errors import UsageError


def parse_variants(spec: str) -> Dict[str, Path]:
    """``name=path,name=path`` (checkpoints .pt or ONNX files) -> ordered dict."""
    variants: Dict[str, Path] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--variants: expected NAME=PATH, got {item!r}")
        if name in variants:
            raise UsageError(f"--variants: {name!r} given twice")
        if not Path(path).is_file():
            raise UsageError(f"--variants: {name}: file not found: {path}")
        variants[name] = Path(path)
    if not variants:
        raise UsageError("--variants: give at least one NAME=PATH")
    return variants


def run_variants(spec: str, data: Path, split: str = "val", echo=print) -> List[dict]:
    """Measure each variant: params, GFLOPs, ONNX Runtime latency at batch 1 and 8, mAP."""
    from generator.data.dataset import load_dataset
    from generator.export.onnx_export import export_onnx
    from generator.export.signature import read_signature
    from generator.models.checkpoint import load_checkpoint
    from generator.report import measure_variants

    variants = parse_variants(spec)
    dataset = load_dataset(Path(data), split)
    with tempfile.TemporaryDirectory(prefix="tritonforge-bench-") as tmp:
        prepared, sizes = {}, set()
        for name, path in variants.items():
            if path.suffix == ".onnx":
                sig = read_signature(path)
                prepared[name] = {"onnx": path, "model": None}
                sizes.add((sig.height, sig.width))
            else:
                det = load_checkpoint(path)
                onnx_path = Path(tmp) / f"{name}.onnx"
                export_onnx(det, onnx_path)
                prepared[name] = {"onnx": onnx_path, "model": det.model}
                sizes.add((det.imgsz, det.imgsz))
        if len(sizes) != 1:
            raise UsageError(f"--variants have different input sizes {sorted(sizes)}; compare like with like")
        (height, width), = sizes
        return measure_variants(prepared, dataset, height, width, echo=echo)
