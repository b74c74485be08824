"""Variant reports: size, cost, latency and mAP per runtime (PyTorch, TorchScript, ONNX
Runtime, OpenVINO, TensorRT), measured in one run, printed as a table and written as JSON,
a PNG bar chart and, across runtimes, a speed-versus-mAP scatter with its Pareto front and
the headline "compressed vs teacher in PyTorch"."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from generator.atomic import atomic_path, write_text
from generator.errors import MissingDependencyError

COLUMNS = ("runtime", "params", "gflops", "latency_ms_b1", "latency_ms_b8", "map50_95", "map50")
# the rows' runtime names, in display order; "pytorch" is the registry's eager "torch" runner,
# and any other runtime registered in generator.runtime.runners is accepted after these
RUNTIMES = ("pytorch", "torchscript", "onnxruntime", "openvino", "openvino-bf16", "tensorrt")
REGISTRY_NAME = {"pytorch": "torch"}
# the entry key holding a runtime's model file (the rest read "onnx")
FILE_KEY = {"torchscript": "torchscript", "tensorrt": "plan"}
RATIO_COLUMN = "b8_vs_first"  # derived in the table: latency at batch 8 / the first measured row's
TRADEOFF_NAME = "tradeoff.png"


def runner_latency(runners: Dict[str, Callable[[np.ndarray], object]], height: int, width: int,
                   batches: Sequence[int] = (1, 8), rounds: int = 5, runs: int = 6,
                   warmup: int = 1) -> Dict[str, Dict[int, Optional[float]]]:
    """Median latency (ms) per runner and batch size; a runner takes a ``[B, 3, H, W]`` float32 batch.

    Every round times every runner at every batch size (``runs`` calls each), so machine
    noise hits all of them alike, after ``warmup`` untimed calls per runner and batch size.
    A runner with ``min_batch``/``max_batch`` attributes (a TensorRT plan's profile) gets
    None for the batch sizes outside them.
    """
    rng = np.random.default_rng(0)
    inputs = {b: rng.random((b, 3, height, width), dtype=np.float32) for b in batches}

    def fits(runner, b: int) -> bool:
        return getattr(runner, "min_batch", 1) <= b <= getattr(runner, "max_batch", b)

    samples: Dict[str, Dict[int, List[float]]] = {n: {b: [] for b in batches} for n in runners}
    for runner in runners.values():  # warm-up
        for b, x in inputs.items():
            for _ in range(warmup if fits(runner, b) else 0):
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
                 echo: Callable[[str], None] = print, teacher: str = "teacher",
                 final: Optional[str] = None) -> Path:
    """``report.json`` (``{"variants": [...], ...}``) and ``report.png`` in ``out_dir``.

    When the rows hold the ``teacher`` on ``pytorch`` and compressed variants, the JSON also
    gets ``headline`` (the sentence) and ``headline_figures`` (``headline_figures``); when
    they span several runtimes, ``tradeoff.png`` (``plot_tradeoff``) is written beside the
    bar chart.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"variants": rows, **(extra or {})}
    try:
        payload.update(headline=headline(rows, teacher, final), headline_figures=headline_figures(rows, teacher, final))
    except ValueError:
        pass  # no teacher on PyTorch, or nothing compressed to compare: no headline
    path = out_dir / "report.json"
    write_text(path, json.dumps(payload, indent=2) + "\n")
    several = len({r.get("runtime") for r in rows if r.get("latency_ms_b8") is not None}) > 1
    try:
        plot_report(rows, out_dir / "report.png")
        if several:
            plot_tradeoff(rows, out_dir / TRADEOFF_NAME, title=payload.get("headline"))
    except ImportError:
        echo("matplotlib is not installed: report.png skipped (pip install 'tritonforge[compress]')")
    return path


def _has(row: dict, *keys: str) -> bool:
    return all(isinstance(row.get(k), (int, float)) and np.isfinite(row[k]) for k in keys)


def pareto_front(rows: List[dict], x: str = "latency_ms_b8", y: str = "map50_95") -> List[str]:
    """Names of the rows no other row beats: lower ``x`` (latency) and higher ``y`` (mAP).

    A row is dominated by one at least as good on both and better on one; rows with equal
    ``x`` and ``y`` are both kept. Rows missing either value are left out. Ordered by
    ``x`` (fastest first), so ``y`` rises along the list.
    """
    points = [(r[x], r[y], r["name"]) for r in rows if _has(r, x, y)]
    front = [(px, py, name) for px, py, name in points
             if not any(qx <= px and qy >= py and (qx < px or qy > py) for qx, qy, _ in points)]
    return [name for _, _, name in sorted(front, key=lambda p: (p[0], -p[1]))]


def variant_of(row: dict) -> str:
    """The variant a row measures: ``row["variant"]``, else its name less a ``" (runtime)"`` tail."""
    if row.get("variant"):
        return row["variant"]
    tail = f" ({row.get('runtime')})"
    return row["name"][:-len(tail)] if row["name"].endswith(tail) else row["name"]


def _teacher_row(rows: List[dict], teacher: str) -> dict:
    found = [r for r in rows if variant_of(r) == teacher and r.get("runtime") == "pytorch"]
    if not found or not _has(found[0], "latency_ms_b8", "map50_95") or not found[0]["map50_95"]:
        raise ValueError(f"no {teacher!r} row on pytorch with a batch-8 latency and a non-zero mAP50-95")
    return found[0]


def _final_row(rows: List[dict], teacher: str, final: Optional[str]) -> dict:
    """``final`` (a row name, or a variant: its fastest row), else the fastest compressed row
    on the Pareto front."""
    scored = [r for r in rows if _has(r, "latency_ms_b8", "map50_95")]
    if final is not None:
        named = [r for r in scored if r["name"] == final] or [r for r in scored if variant_of(r) == final]
        if not named:
            raise ValueError(f"final {final!r}: no such row with a batch-8 latency and a mAP50-95")
        return min(named, key=lambda r: r["latency_ms_b8"])
    front = set(pareto_front([r for r in scored if variant_of(r) != teacher]))
    if not front:
        raise ValueError(f"no compressed row (a variant other than {teacher!r}) with a latency and a mAP")
    return min((r for r in scored if r["name"] in front), key=lambda r: r["latency_ms_b8"])


def headline_figures(rows: List[dict], teacher: str = "teacher", final: Optional[str] = None) -> dict:
    """The figures behind ``headline``: both rows' names, runtimes, batch-8 latencies and
    mAP50-95, the speed-up (teacher latency / final latency) and the mAP kept (final / teacher)."""
    t, f = _teacher_row(rows, teacher), _final_row(rows, teacher, final)
    return {"teacher": t["name"], "final": f["name"], "final_variant": variant_of(f), "final_runtime": f["runtime"],
            "teacher_latency_ms_b8": t["latency_ms_b8"], "final_latency_ms_b8": f["latency_ms_b8"],
            "teacher_map50_95": t["map50_95"], "final_map50_95": f["map50_95"],
            "speedup_b8": round(t["latency_ms_b8"] / f["latency_ms_b8"], 2),
            "map_kept": round(f["map50_95"] / t["map50_95"], 4)}


def headline(rows: List[dict], teacher: str = "teacher", final: Optional[str] = None) -> str:
    """"compressed vs teacher in PyTorch: N× faster, M% of its mAP" and the rows behind it.

    The teacher row is ``teacher`` on ``pytorch`` (eager) at batch 8; ``final`` names the
    compressed row (or variant), by default the fastest compressed row on the Pareto front.
    Raises ValueError when either row is missing.
    """
    h = headline_figures(rows, teacher, final)
    return (f"compressed vs teacher in PyTorch: {h['speedup_b8']:.1f}× faster, {100 * h['map_kept']:.1f}% of its mAP "
            f"({h['final_variant']} on {h['final_runtime']}: {h['final_latency_ms_b8']:.2f} ms vs "
            f"{h['teacher_latency_ms_b8']:.2f} ms at batch 8; mAP50-95 {h['final_map50_95']:.4f} vs "
            f"{h['teacher_map50_95']:.4f})")


def plot_tradeoff(rows: List[dict], path: Path, x: str = "latency_ms_b8", y: str = "map50_95",
                  title: Optional[str] = None) -> None:
    """Speed vs mAP: one labelled marker per row (colour and marker by runtime), the Pareto
    front as a step line, written atomically as PNG. Rows missing ``x`` or ``y`` are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if _has(r, x, y)]
    fig, ax = plt.subplots(figsize=(9.0, 6.0))
    order = known_runtimes()
    runtimes = sorted({r["runtime"] for r in points}, key=lambda n: order.index(n) if n in order else len(order))
    markers = "osD^v<>ph*"
    for i, runtime in enumerate(runtimes):
        mine = [r for r in points if r["runtime"] == runtime]
        ax.scatter([r[x] for r in mine], [r[y] for r in mine], marker=markers[i % len(markers)], s=60,
                   label=runtime, zorder=3)
        for k, r in enumerate(mine):  # alternate above / below: rows of one runtime often sit close
            ax.annotate(variant_of(r), (r[x], r[y]), textcoords="offset points", xytext=(5, 4 if k % 2 else -11),
                        fontsize=8)
    _draw_front(ax, points, pareto_front(points, x, y), x, y)
    if points and max(r[x] for r in points) > 8 * min(r[x] for r in points):
        ax.set_xscale("log")
    ax.set_xlabel(f"{x} (lower is faster)" if x.startswith("latency") else x)
    ax.set_ylabel(y)
    ax.grid(True, which="both", alpha=0.3)
    if points:
        ax.legend(fontsize=8, title="runtime")
    if title:
        ax.set_title(title, fontsize=9, wrap=True)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _draw_front(ax, points: List[dict], front: List[str], x: str, y: str) -> None:
    """The front as a staircase: each front row's mAP holds until the next, slower row's."""
    by_name = {r["name"]: r for r in points}
    xs, ys = [by_name[n][x] for n in front], [by_name[n][y] for n in front]
    if xs:
        ax.step(xs, ys, where="post", color="black", linewidth=1.0, alpha=0.6, label="Pareto front", zorder=2)


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


def known_runtimes() -> List[str]:
    """The runtime names a ``measure_variants`` entry may give: ``RUNTIMES``, then any other
    registered runtime (``pytorch`` stands for the registry's eager ``torch``)."""
    from generator.runners import runner_names

    extra = [n for n in runner_names() if n not in RUNTIMES and n not in REGISTRY_NAME.values()]
    return [*RUNTIMES, *extra]


def _row_runtime(name: str, entry: dict) -> str:
    runtime = entry.get("runtime", "onnxruntime")
    runtime = {v: k for k, v in REGISTRY_NAME.items()}.get(runtime, runtime)
    known = known_runtimes()
    if runtime not in known:
        raise ValueError(f"{name}: unknown runtime {runtime!r} (one of {', '.join(known)})")
    return runtime


def open_entry_runner(runtime: str, entry: dict, threads: int = 0):
    """The runner of a ``measure_variants`` entry, or None when it has nothing to run.

    ``pytorch`` runs ``entry["model"]``; any other runtime opens the entry's model file
    (``FILE_KEY``, else ``onnx``) with ``threads`` intra-op threads, ONNX Runtime's thread
    spinning off where the runner has that option (spinning threads steal the cores of
    the runtime timed next). Raises MissingDependencyError / ValueError when this host
    cannot run it (library missing, no bfloat16 units).
    """
    from generator.runners import open_runner, runner_names

    if entry.get("runner") is not None:
        return entry["runner"]
    if runtime == "pytorch":
        return None if entry.get("model") is None else open_runner("torch", entry["model"])
    path = entry.get(FILE_KEY.get(runtime, "onnx"))
    if path is None:
        return None
    if runtime not in runner_names():
        raise ValueError(f"the {runtime} runtime is not available here (registered: {', '.join(runner_names())})")
    if runtime == "tensorrt":
        return open_runner(runtime, Path(path))
    try:
        return open_runner(runtime, Path(path), threads=threads, spinning=False)
    except TypeError as exc:  # a runner without the spinning option
        if "spinning" not in str(exc):
            raise
        return open_runner(runtime, Path(path), threads=threads)


def _base_row(name: str, runtime: str, v: dict, height: int) -> dict:
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
    if v.get("variant"):
        row["variant"] = v["variant"]
    return row


def measure_variants(variants: Dict[str, dict], heldout, height: int, width: int, progress: bool = False,
                     echo: Callable[[str], None] = print, threads: int = 0, rounds: int = 5,
                     runs: int = 6) -> List[dict]:
    """One row per entry of ``variants``, measured in one run. An entry (row name -> dict):

    - ``runtime``: ``onnxruntime`` (the default), ``pytorch`` (eager; ``torch`` is taken too),
      ``torchscript``, ``openvino``, ``openvino-bf16``, ``tensorrt`` or any other registered runtime;
    - ``model``: the PyTorch module (runs the ``pytorch`` row; params and GFLOPs come from it);
    - ``onnx``: the ONNX file (run by ``onnxruntime``, ``openvino``, ``openvino-bf16``; params from it
      without ``model``); ``torchscript``: the traced file; ``plan``: a TensorRT plan;
    - ``runner``: a ready runner (``[B, 3, H, W]`` -> the detector's outputs), e.g. ``open_runner("tensorrt", plan)``;
    - ``note``: shown in the row; an entry with a note and nothing to run is a skipped row;
    - ``variant``: copied into the row: the model it measures, when the row name is not ``variant_of``'s;
    - ``map``: False to time the runner without scoring it (a plan with NMS inside);
    - ``decode``: ``offline_detector``'s ``layout`` / ``input_format`` (an ONNX of another layout).

    A runtime this host cannot run (its library missing, no bfloat16 units) gives a skipped
    row whose note says why. mAP on ``heldout`` with the serving code (COCO protocol), the
    same path for every runtime; latency at batch 1 and 8 in interleaved rounds
    (``runner_latency``). ``threads``: the CPU runtimes' intra-op threads (0: their
    default); PyTorch uses torch's setting.
    """
    from generator.evaluation.coco import evaluate
    from generator.evaluation.predictors import offline_detector

    rows, runners = [], {}
    for name, v in variants.items():
        runtime = _row_runtime(name, v)
        row = _base_row(name, runtime, v, height)
        rows.append(row)
        try:
            runner = open_entry_runner(runtime, v, threads)
        except (MissingDependencyError, ValueError) as exc:
            row["note"] = f"skipped: {exc}"
            echo(f"      {name}: {row['note']}")
            continue
        if runner is None:
            continue
        runners[name] = runner
        if v.get("map", True):
            detect = offline_detector(runner, height, width, **v.get("decode", {}))
            result = evaluate(heldout, detect, progress=progress, desc=f"mAP {name}")
            row["map50_95"], row["map50"] = round(result.map50_95, 4), round(result.map50, 4)
    if runners:
        order = known_runtimes()
        used = sorted({r["runtime"] for r in rows if r["name"] in runners}, key=order.index)
        echo(f"      timing {len(runners)} rows ({', '.join(used)}) at batch 1 and 8, interleaved rounds")
        # two warm-up calls per batch size: TorchScript's profiling executor optimises a shape
        # on its second call, OpenVINO compiles each batch size on its first
        latency = runner_latency(runners, height, width, rounds=rounds, runs=runs, warmup=2)
        for row in rows:
            if row["name"] in latency:
                for b in (1, 8):
                    ms = latency[row["name"]].get(b)
                    row[f"latency_ms_b{b}"] = None if ms is None else round(ms, 2)
    return rows
