"""report.py: the Pareto front, the teacher-vs-compressed headline, the trade-off plot, and
``measure_variants`` rows for every registered runtime (PyTorch, ONNX Runtime, OpenVINO...)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from generator.report import (headline, headline_figures, known_runtimes, measure_variants, open_entry_runner,
                              pareto_front, plot_tradeoff, variant_of, write_report)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def row(name, runtime, b8, map50_95, **extra):
    return {"name": name, "runtime": runtime, "params": None, "gflops": None, "latency_ms_b1": None,
            "latency_ms_b8": b8, "map50_95": map50_95, "map50": None, **extra}


ROWS = [
    row("teacher (pytorch)", "pytorch", 200.0, 0.50),
    row("teacher (onnxruntime)", "onnxruntime", 80.0, 0.50),
    row("student (onnxruntime)", "onnxruntime", 20.0, 0.40),
    row("student_kd (onnxruntime)", "onnxruntime", 20.0, 0.45),
    row("pruned_kd (openvino)", "openvino", 12.0, 0.48),
    row("int8 (openvino)", "openvino", 8.0, 0.47),
    row("int8 (onnxruntime)", "onnxruntime", 10.0, 0.46),
    row("int8 (openvino-bf16)", "openvino-bf16", None, None, note="skipped: no bfloat16 units"),
]


# ------------------------------------------------------------------ Pareto front


def test_front_is_the_undominated_rows_fastest_first():
    assert pareto_front(ROWS) == ["int8 (openvino)", "pruned_kd (openvino)", "teacher (onnxruntime)"]


def test_front_ties():
    rows = [row("a", "x", 10.0, 0.5), row("a2", "x", 10.0, 0.5),  # identical: neither dominates
            row("b", "x", 10.0, 0.4),  # as fast as a, less accurate: dominated
            row("c", "x", 12.0, 0.5),  # as accurate as a, slower: dominated
            row("d", "x", 5.0, 0.1)]
    assert pareto_front(rows) == ["d", "a", "a2"]


def test_front_leaves_out_rows_missing_a_value():
    rows = [row("none", "x", None, 0.9), row("nan", "x", 1.0, math.nan), {"name": "bare", "runtime": "x"},
            row("str", "x", "fast", 0.9), row("ok", "x", 3.0, 0.2)]
    assert pareto_front(rows) == ["ok"]
    assert pareto_front([]) == []
    assert pareto_front(rows, x="latency_ms_b1") == []  # nobody has it


def test_front_on_other_columns():
    rows = [row("a", "x", 10.0, 0.5, map50=0.6, latency_ms_b1=2.0), row("b", "x", 5.0, 0.6, map50=0.5,
                                                                        latency_ms_b1=1.0)]
    assert pareto_front(rows) == ["b"]
    assert pareto_front(rows, x="latency_ms_b1", y="map50") == ["b", "a"]


# ------------------------------------------------------------------ headline


def test_headline_default_final_is_the_fastest_compressed_row_on_the_front():
    text = headline(ROWS)
    assert text.startswith("compressed vs teacher in PyTorch: 25.0× faster, 94.0% of its mAP (")
    assert "int8 on openvino: 8.00 ms vs 200.00 ms at batch 8" in text
    assert "mAP50-95 0.4700 vs 0.5000" in text
    h = headline_figures(ROWS)
    assert (h["teacher"], h["final"], h["final_runtime"]) == ("teacher (pytorch)", "int8 (openvino)", "openvino")
    assert h["speedup_b8"] == 25.0 and h["map_kept"] == pytest.approx(0.94)


def test_headline_named_final_by_row_or_variant():
    assert headline(ROWS, final="int8 (onnxruntime)").startswith(
        "compressed vs teacher in PyTorch: 20.0× faster, 92.0% of its mAP (int8 on onnxruntime")
    assert headline_figures(ROWS, final="int8")["final"] == "int8 (openvino)"  # the variant's fastest row
    assert headline_figures(ROWS, final="student_kd")["speedup_b8"] == 10.0
    with pytest.raises(ValueError, match="final 'nope'"):
        headline(ROWS, final="nope")


def test_headline_teacher_must_run_in_pytorch():
    no_pt = [r for r in ROWS if r["name"] != "teacher (pytorch)"]
    with pytest.raises(ValueError, match="no 'teacher' row on pytorch"):
        headline(no_pt)
    plain = [row("big", "pytorch", 100.0, 0.6), row("small", "onnxruntime", 10.0, 0.3)]  # names without a tail
    assert headline(plain, teacher="big").startswith(
        "compressed vs teacher in PyTorch: 10.0× faster, 50.0% of its mAP")
    with pytest.raises(ValueError, match="no compressed row"):
        headline(plain[:1], teacher="big")
    with pytest.raises(ValueError, match="non-zero mAP50-95"):
        headline([row("big", "pytorch", 100.0, 0.0), row("small", "onnxruntime", 10.0, 0.3)], teacher="big")


def test_variant_of():
    assert variant_of(row("int8 (openvino-bf16)", "openvino-bf16", 1.0, 0.1)) == "int8"
    assert variant_of(row("int8 (openvino)", "onnxruntime", 1.0, 0.1)) == "int8 (openvino)"
    assert variant_of(row("x", "onnxruntime", 1.0, 0.1, variant="y")) == "y"


# ------------------------------------------------------------------ plot and report


def test_plot_tradeoff_writes_a_png_atomically(tmp_path):
    path = tmp_path / "tradeoff.png"
    plot_tradeoff(ROWS, path, title=headline(ROWS))
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir()] == ["tradeoff.png"]
    plot_tradeoff([row("only", "custom-runtime", None, None)], tmp_path / "empty.png")  # nothing to plot: still a PNG
    assert (tmp_path / "empty.png").read_bytes()[:8] == PNG_MAGIC


def test_write_report_adds_the_headline_and_the_tradeoff_plot(tmp_path):
    path = write_report(ROWS, tmp_path / "a", {"seconds": 1.0}, echo=lambda _: None)
    saved = json.loads(path.read_text())
    assert saved["headline"] == headline(ROWS) and saved["headline_figures"]["final"] == "int8 (openvino)"
    assert saved["seconds"] == 1.0 and len(saved["variants"]) == len(ROWS)
    assert (tmp_path / "a" / "report.png").is_file() and (tmp_path / "a" / "tradeoff.png").is_file()

    one_runtime = [r for r in ROWS if r["runtime"] == "onnxruntime"]
    saved = json.loads(write_report(one_runtime, tmp_path / "b", echo=lambda _: None).read_text())
    assert "headline" not in saved  # no teacher in PyTorch
    assert (tmp_path / "b" / "report.png").is_file() and not (tmp_path / "b" / "tradeoff.png").exists()


# ------------------------------------------------------------------ measure_variants across runtimes


class _Fake:
    """A runner factory recording its options; ``spinning`` accepted or not."""

    def __init__(self, takes_spinning: bool):
        self.takes_spinning, self.calls = takes_spinning, []

    def __call__(self, path, threads=0, **options):
        if options and not self.takes_spinning:
            raise TypeError(f"__init__() got an unexpected keyword argument {next(iter(options))!r}")
        self.calls.append({"path": path, "threads": threads, **options})
        return lambda x: [np.zeros((len(x), 7, 4), np.float32)]


def test_open_entry_runner_turns_spinning_off_where_the_runner_can(monkeypatch, tmp_path):
    from generator.runtime import runners as registry

    spins, plain = _Fake(True), _Fake(False)
    monkeypatch.setitem(registry._RUNNERS, "fake-spins", spins)
    monkeypatch.setitem(registry._RUNNERS, "fake-plain", plain)
    assert "fake-spins" in known_runtimes()
    open_entry_runner("fake-spins", {"onnx": tmp_path / "m.onnx"}, threads=2)
    open_entry_runner("fake-plain", {"onnx": tmp_path / "m.onnx"}, threads=2)
    assert spins.calls == [{"path": tmp_path / "m.onnx", "threads": 2, "spinning": False}]
    assert plain.calls == [{"path": tmp_path / "m.onnx", "threads": 2}]
    assert open_entry_runner("fake-plain", {"model": object()}) is None  # no file for it
    ready = object()
    assert open_entry_runner("fake-plain", {"runner": ready}) is ready


SIZE = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from generator.data.dataset import load_dataset
    from generator.data.synth import synthesize
    from generator.export.onnx_export import export_onnx
    from generator.models.checkpoint import build_detector

    root = tmp_path_factory.mktemp("report")
    data = synthesize(root / "data", 6, seed=3, imgsz=SIZE, classes=3, val_fraction=0.5, progress=False)
    det = build_detector("yolo-n", 3, SIZE, ["circle", "rectangle", "triangle"], seed=0)
    export_onnx(det, root / "m.onnx")
    return det, root / "m.onnx", load_dataset(Path(data), "val")


def test_measure_variants_one_row_per_registered_runtime(tiny):
    from generator.runners import runner_names

    det, onnx, heldout = tiny
    entries = {"m (pytorch)": {"runtime": "torch", "model": det.model},
               "m (onnxruntime)": {"runtime": "onnxruntime", "onnx": onnx, "model": det.model}}
    for name in ("openvino", "openvino-bf16"):
        if name in runner_names():
            entries[f"m ({name})"] = {"runtime": name, "onnx": onnx, "model": det.model}
    lines = []
    rows = {r["name"]: r for r in measure_variants(entries, heldout, SIZE, SIZE, echo=lines.append, threads=1,
                                                   rounds=1, runs=1)}
    assert list(rows) == list(entries)
    assert rows["m (pytorch)"]["runtime"] == "pytorch"  # the registry's "torch", as report rows call it
    for r in rows.values():
        measured = r["latency_ms_b8"] is not None
        assert measured or r["note"].startswith("skipped: "), r  # e.g. bf16 on a CPU without bfloat16 units
        if measured:
            assert r["latency_ms_b1"] > 0 and r["map50_95"] is not None and r["params"] == rows["m (pytorch)"]["params"]
    assert "pytorch" in lines[-1] and "onnxruntime" in lines[-1]


def test_measure_variants_runtime_errors(tiny, monkeypatch):
    from generator.runtime import runners as registry

    det, onnx, heldout = tiny
    with pytest.raises(ValueError, match="unknown runtime 'tflite'"):
        measure_variants({"m": {"runtime": "tflite", "onnx": onnx}}, heldout, SIZE, SIZE, echo=lambda _: None)

    def no_bf16(path, **options):
        raise ValueError("this CPU has no bfloat16 units (OpenVINO capabilities: FP32, INT8)")

    monkeypatch.setitem(registry._RUNNERS, "openvino-bf16", no_bf16)
    monkeypatch.delitem(registry._RUNNERS, "openvino", raising=False)
    lines = []
    rows = measure_variants({"bf16": {"runtime": "openvino-bf16", "onnx": onnx},
                             "ov": {"runtime": "openvino", "onnx": onnx}}, heldout, SIZE, SIZE, echo=lines.append)
    assert rows[0]["note"] == "skipped: this CPU has no bfloat16 units (OpenVINO capabilities: FP32, INT8)"
    assert rows[1]["note"].startswith("skipped: the openvino runtime is not available here")
    assert all(r["latency_ms_b8"] is None and r["map50_95"] is None for r in rows)
    assert len(lines) == 2  # the two skips, and nothing timed


# ------------------------------------------------------------------ benchmarks/compression.py (not run: its CLI)


def _compression_benchmark(monkeypatch):
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "compression.py"
    spec = importlib.util.spec_from_file_location("compression_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_compression_benchmark_cli_and_time_split(monkeypatch):
    bench = _compression_benchmark(monkeypatch)
    plan = bench.plan_from(bench.parse_args(["--quick", "--minutes", "3", "--imgsz", "96"]))
    assert (plan.minutes, plan.imgsz, plan.teacher, plan.train_images) == (3.0, 96, "yolo-s", bench.QUICK.train_images)
    assert bench.plan_from(bench.parse_args([])) == bench.FULL and bench.FULL.minutes == 60
    assert sum(bench.SHARES.values()) == pytest.approx(1.0)
    now = [1000.0]
    monkeypatch.setattr(bench.time, "time", lambda: now[0])
    clock = bench.Clock(total_s=1000.0, reserve_s=200.0)  # 800 s of training
    assert clock.budget("teacher") == pytest.approx(800 * bench.SHARES["teacher"])
    now[0] += 500.0  # the teacher overran: the rest share what is left
    left = 300.0 * bench.SHARES["student_kd"] / (1 - bench.SHARES["teacher"])
    assert clock.budget("student_kd") == pytest.approx(max(bench.MIN_STEP_S, left))
    now[0] += 10_000.0
    assert clock.budget("pruned_kd") == bench.MIN_STEP_S  # past the deadline: still a (short) step
