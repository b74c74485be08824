"""``tritonforge bench --variants``: several detectors side by side, offline, per runtime.

A checkpoint (``.pt``) gives two rows, PyTorch and ONNX Runtime (exported to a temporary
ONNX); an ONNX file (FP32, FP16, INT8 Q/DQ) one ONNX Runtime row; a TensorRT plan
(``.plan`` / ``.engine``) one TensorRT row, or a skipped row where TensorRT or a GPU is
missing. Latency and mAP of every row are measured in the same run, the same way.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from generator.errors import UsageError

PLAN_SUFFIXES = (".plan", ".engine")
TENSORRT_SKIPPED = "skipped: needs TensorRT and a GPU"


def parse_variants(spec: str) -> Dict[str, Path]:
    """``name=path,name=path`` (checkpoints .pt, ONNX files, TensorRT plans) -> ordered dict."""
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


def row_name(name: str, runtime: str) -> str:
    return f"{name} ({runtime})"


def cpu_threads() -> int:
    """The CPU threads every CPU runtime gets: torch's setting (``OMP_NUM_THREADS``,
    ``torch.set_num_threads``), 0 (ONNX Runtime's default) without torch."""
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.get_num_threads())


def plan_variant(name: str, path: Path, echo: Callable[[str], None] = print) -> Tuple[dict, Optional[Tuple[int, int]]]:
    """The ``measure_variants`` entry for a TensorRT plan, and its input size (None: unknown).

    Size from the ``build.json`` beside the plan, else from the engine's input shape. Without
    TensorRT, pycuda or a GPU the entry is a skipped row, not an error.
    """
    from generator.export.tensorrt.record import read_build_info
    from generator.runners import open_runner, tensorrt_runner

    info = read_build_info(path) or {}
    size = tuple(info["image_size"]) if info.get("image_size") else None
    why = tensorrt_runner.tensorrt_unavailable()
    if why:
        echo(f"      {name}: {TENSORRT_SKIPPED} ({why})")
        return {"runtime": "tensorrt", "note": TENSORRT_SKIPPED}, size
    runner = open_runner("tensorrt", path)
    entry = {"runtime": "tensorrt", "runner": runner}
    if info.get("precision"):
        entry["note"] = f"{info['precision']} plan"
    if runner.nms:
        entry.update(runner=_AllOutputs(runner), map=False,
                     note="latency only: EfficientNMS inside the plan (rebuild without --nms for mAP)")
    return entry, (runner.height, runner.width)


def onnx_variant(name: str, path: Path, read_options: dict, threads: int = 0,
                 names=None) -> Tuple[str, dict, Tuple[int, int]]:
    """(row name, ``measure_variants`` entry, input size) of an ONNX file in any output layout:
    decoded by its layout, fed in its input format, timed at the batch sizes it runs; the
    dataset's class ``names`` name its classes where its outputs and metadata do not."""
    from generator.evaluation.ort_only import EVAL_HINT, read_for_dataset, refuse_trt_plugin
    from generator.evaluation.predictors import decode_options, open_onnx

    sig = read_for_dataset(path, names, read_options)
    refuse_trt_plugin(path, sig, "to bench it offline", EVAL_HINT)
    entry = {"runtime": "onnxruntime", "onnx": path, "decode": decode_options(sig)}
    if sig.batch is not None:  # a fixed-batch export runs only its own batch size
        entry.update(runner=open_onnx(path, sig, threads), note=f"fixed batch {sig.batch}")
    return row_name(name, "onnxruntime"), entry, (sig.height, sig.width)


class _AllOutputs:
    """A plan with NMS inside, for timing: every output, batches within its profile."""

    def __init__(self, runner):
        self.runner, self.min_batch, self.max_batch = runner, runner.min_batch, runner.max_batch

    def __call__(self, x):
        return self.runner.run(x)


def run_variants(spec: str, data: Path, split: str = "val", echo=print, threads: Optional[int] = None,
                 rounds: int = 5, runs: int = 6, read_options: Optional[dict] = None) -> List[dict]:
    """Rows ``NAME (runtime)``: params, GFLOPs, latency at batch 1 and 8, mAP, per runtime.

    ``threads``: ONNX Runtime's intra-op threads (default ``cpu_threads()``: as many as
    PyTorch uses, whose setting is left as it is). ``read_options``: ``read_signature``
    keywords (``layout``, ``imgsz``, ``scores``) for the ONNX variants; each ONNX is
    decoded by its own layout, detected or given.
    """
    from generator.data.dataset import load_dataset
    from generator.report import measure_variants

    variants = parse_variants(spec)
    dataset = load_dataset(Path(data), split)
    threads = cpu_threads() if threads is None else threads
    with tempfile.TemporaryDirectory(prefix="tritonforge-bench-") as tmp:
        entries: Dict[str, dict] = {}
        sizes: Dict[Tuple[int, int], List[str]] = {}
        for name, path in variants.items():
            for row, entry, size in _entries(name, path, Path(tmp), echo, read_options or {}, threads, dataset.names):
                entries[row] = entry
                if size is not None:
                    sizes.setdefault(tuple(size), []).append(name)
        if len(sizes) > 1:
            listed = "; ".join(f"{h}x{w}: {', '.join(sorted(set(n)))}" for (h, w), n in sorted(sizes.items()))
            raise UsageError(f"--variants have different input sizes ({listed}); compare like with like")
        (height, width), = sizes or [(0, 0)]  # none: only skipped plans without build.json, nothing to run
        if threads:
            echo(f"      CPU runtimes use {threads} thread{'s' if threads > 1 else ''} each")
        return measure_variants(entries, dataset, height, width, echo=echo, threads=threads, rounds=rounds, runs=runs)


def _entries(name: str, path: Path, tmp: Path, echo, read_options: dict, threads: int, names):
    """(row name, measure_variants entry, input size) for one variant."""
    suffix = path.suffix.lower()
    if suffix in PLAN_SUFFIXES:
        entry, size = plan_variant(name, path, echo)
        return [(row_name(name, "tensorrt"), entry, size)]
    if suffix == ".onnx":
        return [onnx_variant(name, path, read_options, threads, names)]
    from generator.export.onnx_export import export_onnx
    from generator.models.checkpoint import load_checkpoint

    det = load_checkpoint(path)
    onnx_path = tmp / f"{len(list(tmp.glob('*.onnx')))}.onnx"  # names may hold any character
    export_onnx(det, onnx_path)
    size = (det.imgsz, det.imgsz)
    return [(row_name(name, "pytorch"), {"runtime": "pytorch", "model": det.model}, size),
            (row_name(name, "onnxruntime"), {"runtime": "onnxruntime", "onnx": onnx_path, "model": det.model}, size)]
