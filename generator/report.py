"""Variant reports: size, cost, latency and mAP per runtime (PyTorch, ONNX Runtime,
TensorRT), measured in one run, printed as a table and written as JSON and a PNG bar chart."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from generator.atomic import atomic_path, write_text

COLUMNS = ("runtime", "params", "gflops", "latency_ms_b1", "latency_ms_b8", "map50_95", "map50")
RUNTIMES = ("pytorch", "onnxruntime", "tensorrt")
RATIO_COLUMN = "b8_vs_first"  # derived in the table: latency at batch 8 / the first measured row's


def runner_latency(runners: Dict[str, Callable[[np.ndarray], object]], height: int, width: int,
                   batches: Sequence[int] = (1, 8), rounds: int = 5,
                   runs: int = 6) -> Dict[str, Dict[int, Optional[float]]]:
    """Median latency (ms) per runner and batch size; a runner takes a ``[B, 3, H, W]`` float32 batch.

    Every round times every runner at every batch size (``runs`` calls each), so machine
    noise hits all of them alike. A runner with ``min_batch``/``max_batch`` attributes
    (a TensorRT plan's profile) gets None for the batch sizes outside them.
    """
    rng = np.random.default_rng(0)
    inputs = {b: rng.random((b, 3, height, width), dtype=np.float32) for b in batches}

    def fits(runner, b: int) -> bool:
        return getattr(runner, "min_batch", 1) <= b <= getattr(runner, "max_batch", b)

    samples: Dict[str, Dict[int, List[float]]] = {n: {b: [] for b in batches} for n in runners}
    for runner in runners.values():  # warm-up
        for b, x in inputs.items():
            if fits(runner, b):
                runner(x)
    for _ in range(rounds):
        for name, runner in runners.items():
            for b, x in inputs.items():
                if not fits(runner, b):
                    continue
                for _ in range(runs):
                    start = time.perf_counter()
                    runner(x)
                    samples[name][b].append((time.perf_counter() - start) * 1000)
    return {n: {b: (statistics.median(v) if v else None) for b, v in per.items()} for n, per in samples.items()}


def ort_latency(onnx_paths: Dict[str, Path], height: int, width: int, batches: Sequence[int] = (1, 8),
                rounds: int = 5, runs: int = 6, threads: int = 0) -> Dict[str, Dict[int, Optional[float]]]:
    """``runner_latency`` of ONNX Runtime CPU sessions, one per ONNX file."""
    from generator.runners import open_runner

    runners = {name: open_runner("onnxruntime", Path(path), threads=threads) for name, path in onnx_paths.items()}
    return runner_latency(runners, height, width, batches, rounds, runs)


def latency_ratios(rows: List[dict], key: str = "latency_ms_b8") -> List[Optional[float]]:
    """``row[key]`` relative to the first row that has one (None where either is missing)."""
    base = next((r[key] for r in rows if r.get(key)), None)
    return [r[key] / base if base and r.get(key) else None for r in rows]


def format_table(rows: List[dict], columns: Sequence[str] = COLUMNS) -> str:
    """A plain-text table of variant rows (``name`` first; ``-`` for what was not measured).

    After ``latency_ms_b8`` comes the batch-8 latency relative to the first measured row
    (``x1.00``, ``x0.45``: lower is faster); a ``note`` column when a row has one.
    """
    def cell(value, column: str) -> str:
        if value is None:
            return "-"
        if isinstance(value, float) and column.startswith("latency_ms"):
            return f"{value:.2f}"
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    columns = list(columns)
    ratios = latency_ratios(rows)
    if "latency_ms_b8" in columns and any(r is not None for r in ratios):
        columns.insert(columns.index("latency_ms_b8") + 1, RATIO_COLUMN)
    if any(r.get("note") for r in rows) and "note" not in columns:
        columns.append("note")
    header = ["name", *columns]
    body = []
    for row, ratio in zip(rows, ratios):
        values = {**row, RATIO_COLUMN: None if ratio is None else f"x{ratio:.2f}"}
        body.append([cell(values.get(c), c) if c != "note" else (row.get("note") or "") for c in header])
    widths = [max([len(h), *(len(b[i]) for b in body)]) for i, h in enumerate(header)]

    def line(cells) -> str:
        return "  ".join(v.ljust(w) if header[i] in ("name", "runtime", "note") else v.rjust(w)
                         for i, (v, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header), *(line(b) for b in body)])


def write_report(rows: List[dict], out_dir: Path, extra: Optional[dict] = None,
                 echo: Callable[[str], None] = print) -> Path:
    """``report.json`` (``{"variants": [...], ...}``) and ``report.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"variants": rows, **(extra or {})}
    path = out_dir / "report.json"
    write_text(path, json.dumps(payload, indent=2) + "\n")
    try:
        plot_report(rows, out_dir / "report.png")
    except ImportError:
        echo("matplotlib is not installed: report.png skipped (pip install 'tritonforge[compress]')")
    return path


def plot_report(rows: List[dict], path: Path) -> None:
    """Bar charts of latency, mAP and GFLOPs per row (0 where not measured)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def label(row) -> str:
        runtime = row.get("runtime")
        text = row["name"] if not runtime or runtime in row["name"] else f"{row['name']}\n{runtime}"
        return text + ("\n(skipped)" if str(row.get("note") or "").startswith("skipped") else "")

    names = [label(r) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(max(12.0, 2.4 * len(rows)), 4.0))
    panels = (("latency (ms)", ("latency_ms_b1", "latency_ms_b8")), ("mAP", ("map50", "map50_95")),
              ("GFLOPs", ("gflops",)))
    for ax, (title, keys) in zip(axes, panels):
        width = 0.8 / len(keys)
        for k, key in enumerate(keys):
            values = [float(r.get(key) or 0) for r in rows]
            ax.bar(np.arange(len(rows)) + k * width, values, width, label=key)
        ax.set_xticks(np.arange(len(rows)) + width * (len(keys) - 1) / 2, names, rotation=25, ha="right",
                      fontsize=8)
        ax.set_title(title)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
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
                     echo: Callable[[str], None] = print, threads: int = 0, rounds: int = 5,
                     runs: int = 6) -> List[dict]:
    """One row per entry of ``variants``, measured in one run. An entry (row name -> dict):

    - ``runtime``: ``pytorch``, ``onnxruntime`` (the default) or ``tensorrt``;
    - ``model``: the PyTorch module (runs the ``pytorch`` row; params and GFLOPs come from it);
    - ``onnx``: the ONNX file (runs the ``onnxruntime`` row; params from it without ``model``);
    - ``runner``: a ready runner (``[B, 3, H, W]`` -> the detector's outputs), e.g. ``open_runner("tensorrt", plan)``;
    - ``note``: shown in the row; an entry with a note and nothing to run is a skipped row;
    - ``map``: False to time the runner without scoring it (a plan with NMS inside);
    - ``decode``: ``offline_detector``'s ``layout`` / ``input_format`` (an ONNX of another layout).

    mAP on ``heldout`` with the serving code (COCO protocol), the same path for every
    runtime; latency at batch 1 and 8 in interleaved rounds (``runner_latency``).
    ``threads``: ONNX Runtime's intra-op threads (0: its default); PyTorch uses torch's setting.
    """
    from generator.evaluation.coco import evaluate
    from generator.evaluation.predictors import offline_detector
    from generator.runners import open_runner

    rows, runners = [], {}
    for name, v in variants.items():
        runtime = v.get("runtime", "onnxruntime")
        if runtime not in RUNTIMES:
            raise ValueError(f"{name}: unknown runtime {runtime!r} (one of {', '.join(RUNTIMES)})")
        row = {"name": name, "runtime": runtime, "params": None, "gflops": None, "latency_ms_b1": None,
               "latency_ms_b8": None, "map50_95": None, "map50": None}
        if v.get("model") is not None:
            from generator.models.profile import count_params, gflops

            row["params"] = count_params(v["model"])
            row["gflops"] = round(gflops(v["model"], height), 3)
        elif v.get("onnx") is not None:
            row["params"] = onnx_params(Path(v["onnx"]))
        if v.get("params") is not None:
            row["params"] = v["params"]
        if v.get("note"):
            row["note"] = v["note"]
        rows.append(row)
        runner = v.get("runner")
        if runner is None and runtime == "pytorch" and v.get("model") is not None:
            runner = open_runner("torch", v["model"])
        elif runner is None and runtime == "onnxruntime" and v.get("onnx") is not None:
            runner = open_runner("onnxruntime", Path(v["onnx"]), threads=threads)
        if runner is None:
            continue
        runners[name] = runner
        if v.get("map", True):
            detect = offline_detector(runner, height, width, **v.get("decode", {}))
            result = evaluate(heldout, detect, progress=progress, desc=f"mAP {name}")
            row["map50_95"], row["map50"] = round(result.map50_95, 4), round(result.map50, 4)
    if runners:
        used = sorted({r["runtime"] for r in rows if r["name"] in runners}, key=RUNTIMES.index)
        echo(f"      timing {len(runners)} rows ({', '.join(used)}) at batch 1 and 8, interleaved rounds")
        latency = runner_latency(runners, height, width, rounds=rounds, runs=runs)
        for row in rows:
            if row["name"] in latency:
                for b in (1, 8):
                    ms = latency[row["name"]].get(b)
                    row[f"latency_ms_b{b}"] = None if ms is None else round(ms, 2)
    return rows
