"""``tritonforge bench --variants``: several detectors side by side, offline, per runtime.

One row per runtime. A checkpoint (``.pt``) gives PyTorch, TorchScript (traced to a
temporary file) and a row per ONNX runtime (exported to a temporary ONNX); an ONNX file
(FP32, FP16, INT8 Q/DQ) a row per ONNX runtime (ONNX Runtime, OpenVINO, OpenVINO bf16 where
the CPU has it), plus TorchScript when ``<stem>.torchscript`` lies beside it; a TensorRT plan
(``.plan`` / ``.engine``) one TensorRT row, or a skipped row where TensorRT or a GPU is
missing. ``--runtimes`` picks the runtimes instead. Latency and mAP of every row are
measured in the same run, the same way.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from generator.errors import UsageError

PLAN_SUFFIXES = (".plan", ".engine")
ONNX_RUNTIMES = ("onnxruntime", "openvino", "openvino-bf16")  # the runtimes that read an ONNX
BENCH_RUNTIMES = ("pytorch", "torchscript") + ONNX_RUNTIMES
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


def parse_runtimes(spec: Optional[str]) -> Optional[List[str]]:
    """``--runtimes a,b``: the names, checked (None: every runtime available per variant)."""
    if spec is None:
        return None
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCH_RUNTIMES]
    if unknown or not names:
        raise UsageError(f"--runtimes: unknown {', '.join(unknown) or 'empty list'}; "
                         f"choose from {', '.join(BENCH_RUNTIMES)}")
    return list(dict.fromkeys(names))


def onnx_runtimes(path: Path, requested: Optional[Sequence[str]]) -> List[str]:
    """The runtimes an ONNX variant gets rows for: those requested that read an ONNX (plus
    torchscript when requested), or by default every one available here, plus torchscript
    when ``<stem>.torchscript`` lies beside the ONNX."""
    from generator.export.torchscript import torchscript_path
    from generator.runtime.runners import available_runtimes

    if requested is not None:
        return [r for r in requested if r in ONNX_RUNTIMES + ("torchscript",)]
    return available_runtimes(path, torchscript_path(path))


def onnx_variant(name: str, path: Path, read_options: dict, threads: int = 0,
                 names=None, runtime: str = "onnxruntime") -> Tuple[str, dict, Tuple[int, int]]:
    """(row name, ``measure_variants`` entry, input size) of an ONNX file in any output layout
    on ``runtime`` (``torchscript``: its sibling ``<stem>.torchscript``): decoded by its layout,
    fed in its input format, timed at the batch sizes it runs; the dataset's class ``names``
    name its classes where its outputs and metadata do not."""
    from generator.evaluation.ort_only import EVAL_HINT, read_for_dataset, refuse_trt_plugin
    from generator.evaluation.predictors import decode_options

    sig = read_for_dataset(path, names, read_options)
    refuse_trt_plugin(path, sig, "to bench it offline", EVAL_HINT)
    entry = {"runtime": runtime, "onnx": path, "decode": decode_options(sig)}
    if runtime == "torchscript":
        entry.update(_torchscript_entry(path))
    elif sig.batch is not None:  # a fixed-batch export runs only its own batch size
        entry.update(_fixed_batch_entry(runtime, path, sig, threads))
    return row_name(name, runtime), entry, (sig.height, sig.width)


def _torchscript_entry(onnx_path: Path) -> dict:
    from generator.export.torchscript import EXPORT_COMMAND, torchscript_path

    traced = torchscript_path(onnx_path)
    if traced.is_file():
        return {"torchscript": traced}
    return {"note": f"skipped: no {traced.name} beside the ONNX ({EXPORT_COMMAND})"}


def _fixed_batch_entry(runtime: str, path: Path, sig, threads: int) -> dict:
    """A ready runner padding to the graph's fixed batch, or a skipped row saying why it cannot open."""
    from generator.errors import MissingDependencyError
    from generator.runners import open_runner
    from generator.runtime.runners import FixedBatch

    try:
        runner = FixedBatch(open_runner(runtime, Path(path), threads=threads), sig.batch)
    except (MissingDependencyError, ValueError) as exc:
        return {"note": f"skipped: {exc}"}
    return {"runner": runner, "note": f"fixed batch {sig.batch}"}


class _AllOutputs:
    """A plan with NMS inside, for timing: every output, batches within its profile."""

    def __init__(self, runner):
        self.runner, self.min_batch, self.max_batch = runner, runner.min_batch, runner.max_batch

    def __call__(self, x):
        return self.runner.run(x)


def run_variants(spec: str, data: Path, split: str = "val", echo=print, threads: Optional[int] = None,
                 rounds: int = 5, runs: int = 6, read_options: Optional[dict] = None,
                 runtimes: Optional[str] = None) -> List[dict]:
    """Rows ``NAME (runtime)``: params, GFLOPs, latency at batch 1 and 8, mAP, per runtime.

    ``threads``: ONNX Runtime's intra-op threads (default ``cpu_threads()``: as many as
    PyTorch uses, whose setting is left as it is). ``read_options``: ``read_signature``
    keywords (``layout``, ``imgsz``, ``scores``) for the ONNX variants; each ONNX is
    decoded by its own layout, detected or given. ``runtimes``: ``--runtimes`` (comma-separated;
    default: every runtime available per variant on this host).
    """
    from generator.data.dataset import load_dataset
    from generator.report import measure_variants

    variants = parse_variants(spec)
    requested = parse_runtimes(runtimes)
    dataset = load_dataset(Path(data), split)
    threads = cpu_threads() if threads is None else threads
    with tempfile.TemporaryDirectory(prefix="tritonforge-bench-") as tmp:
        entries: Dict[str, dict] = {}
        sizes: Dict[Tuple[int, int], List[str]] = {}
        for name, path in variants.items():
            for row, entry, size in _entries(name, path, Path(tmp), echo, read_options or {}, threads, dataset.names,
                                             requested):
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


def _entries(name: str, path: Path, tmp: Path, echo, read_options: dict, threads: int, names,
             requested: Optional[Sequence[str]] = None):
    """(row name, measure_variants entry, input size) for each runtime of one variant."""
    suffix = path.suffix.lower()
    if suffix in PLAN_SUFFIXES:
        entry, size = plan_variant(name, path, echo)
        return [(row_name(name, "tensorrt"), entry, size)]
    if suffix == ".onnx":
        return [onnx_variant(name, path, read_options, threads, names, runtime)
                for runtime in onnx_runtimes(path, requested)]
    return _checkpoint_entries(name, path, tmp, requested)


def _checkpoint_entries(name: str, path: Path, tmp: Path, requested: Optional[Sequence[str]]):
    """PyTorch, TorchScript (traced here) and the ONNX runtimes (on an ONNX exported here)."""
    from generator.export.onnx_export import export_onnx
    from generator.export.torchscript import export_torchscript
    from generator.models.checkpoint import load_checkpoint
    from generator.runtime.runners import available_runtimes

    det = load_checkpoint(path)
    stem = tmp / str(len(list(tmp.glob("*.onnx"))))  # names may hold any character
    onnx_path = stem.with_suffix(".onnx")
    export_onnx(det, onnx_path)
    runtimes = list(requested) if requested is not None else ["pytorch", "torchscript", *available_runtimes(onnx_path)]
    size, rows = (det.imgsz, det.imgsz), []
    for runtime in runtimes:
        entry = {"runtime": runtime, "model": det.model}
        if runtime == "torchscript":
            entry["torchscript"] = export_torchscript(det, stem.with_suffix(".torchscript")).path
        elif runtime != "pytorch":
            entry["onnx"] = onnx_path
        rows.append((row_name(name, runtime), entry, size))
    return rows
