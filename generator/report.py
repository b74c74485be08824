"""Variant reports: size, cost, ONNX Runtime CPU latency and mAP, measured in one run,
printed as a table and written as JSON and a PNG bar chart."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

COLUMNS = ("params", "gflops", "latency_ms_b1", "latency_ms_b8", "map50_95", "map50")


def ort_latency(onnx_paths: Dict[str, Path], height: int, width: int, batches: Sequence[int] = (1, 8),
                rounds: int = 5, runs: int = 6) -> Dict[str, Dict[int, float]]:
    """Median ONNX Runtime CPU latency (ms) per model and batch size.

    Models are timed in alternating rounds, so that machine noise hits every variant alike.
    """
    from generator.evaluation.predictors import OnnxRunner

    runners = {name: OnnxRunner(path) for name, path in onnx_paths.items()}
    rng = np.random.default_rng(0)
    inputs = {b: rng.random((b, 3, height, width), dtype=np.float32) for b in batches}
    samples: Dict[str, Dict[int, List[float]]] = {n: {b: [] for b in batches} for n in runners}
    for runner in runners.values():  # warm-up
        for x in inputs.values():
            runner(x)
    for _ in range(rounds):
        for name, runner in runners.items():
            for b, x in inputs.items():
                for _ in range(runs):
                    start = time.perf_counter()
                    runner(x)
                    samples[name][b].append((time.perf_counter() - start) * 1000)
    return {n: {b: statistics.median(v) for b, v in per.items()} for n, per in samples.items()}


def format_table(rows: List[dict], columns: Sequence[str] = COLUMNS) -> str:
    """A plain-text table of variant rows (``name`` first)."""
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    header = ["name", *columns]
    body = [[cell(r.get(c, "")) for c in header] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines += ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(b, widths))) for b in body]
    return "\n".join(lines)


def write_report(rows: List[dict], out_dir: Path, extra: Optional[dict] = None,
                 echo: Callable[[str], None] = print) -> Path:
    """``report.json`` (``{"variants": [...], ...}``) and ``report.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"variants": rows, **(extra or {})}
    path = out_dir / "report.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    try:
        plot_report(rows, out_dir / "report.png")
    except ImportError:
        echo("matplotlib is not installed: report.png skipped (pip install 'tritonforge[compress]')")
    return path


def plot_report(rows: List[dict], path: Path) -> None:
    """Bar charts of latency and mAP per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    panels = (("latency (ms)", ("latency_ms_b1", "latency_ms_b8")), ("mAP", ("map50", "map50_95")),
              ("GFLOPs", ("gflops",)))
    for ax, (title, keys) in zip(axes, panels):
        width = 0.8 / len(keys)
        for k, key in enumerate(keys):
            values = [float(r.get(key) or 0) for r in rows]
            ax.bar(np.arange(len(rows)) + k * width, values, width, label=key)
        ax.set_xticks(np.arange(len(rows)) + width * (len(keys) - 1) / 2, names, rotation=20)
        ax.set_title(title)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def onnx_params(path: Path) -> int:
    """Weights stored in an ONNX file (quantized weights count once, scales and zero points not)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    quant_aux = {n.input[i] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                 for i in (1, 2) if len(n.input) > i}
    return int(sum(numpy_helper.to_array(t).size for t in model.graph.initializer
                   if t.name not in quant_aux and len(t.dims) > 1))


def measure_variants(variants: Dict[str, dict], heldout, height: int, width: int, progress: bool = False,
                     echo: Callable[[str], None] = print) -> List[dict]:
    """Rows for ``{name: {"onnx": path, "model": torch module or None}}``, measured in one run.

    mAP on ``heldout`` with the serving code (ONNX Runtime, COCO protocol); latency in
    interleaved rounds; params and GFLOPs from the PyTorch model when there is one.
    """
    from generator.evaluation.coco import evaluate
    from generator.evaluation.predictors import OnnxRunner, offline_detector

    rows = []
    for name, v in variants.items():
        result = evaluate(heldout, offline_detector(OnnxRunner(Path(v["onnx"])), height, width), progress=progress)
        row = {"name": name, "params": None, "gflops": None, "map50_95": round(result.map50_95, 4),
               "map50": round(result.map50, 4)}
        if v.get("model") is not None:
            from generator.models.profile import count_params, gflops

            row["params"] = count_params(v["model"])
            row["gflops"] = round(gflops(v["model"], height), 3)
        else:
            row["params"] = onnx_params(Path(v["onnx"]))
        rows.append(row)
    echo(f"      timing {len(variants)} variants with ONNX Runtime (batch 1 and 8, interleaved rounds)")
    latency = ort_latency({n: Path(v["onnx"]) for n, v in variants.items()}, height, width)
    for row in rows:
        row["latency_ms_b1"] = round(latency[row["name"]][1], 2)
        row["latency_ms_b8"] = round(latency[row["name"]][8], 2)
    return rows
