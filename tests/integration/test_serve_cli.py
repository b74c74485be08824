"""``tritonforge serve`` and ``tritonforge demo`` as a user runs them."""

import json
import shutil
import signal
import subprocess
import sys

import pytest

from .procs import start_serve, wait_serve_ready


def test_serve_prints_endpoints_and_stops_on_sigterm(served_repo):
    proc, ports = start_serve(served_repo)
    text = wait_serve_ready(proc)
    assert "Triton is ready" in text, text
    assert f"127.0.0.1:{ports[1]}" in text and f"127.0.0.1:{ports[0]}" in text
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "Triton stopped (exit code 0)" in out


def test_serve_names_the_model_that_failed_to_load(served_repo, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(served_repo, broken)
    model_py = broken / "shapes_postprocess" / "1" / "model.py"
    model_py.write_text(model_py.read_text().replace(
        "        params = stage_utils.read_parameters(args, PARAMETERS)",
        "        raise RuntimeError('weights are missing on purpose')", 1))
    proc, _ = start_serve(broken)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 4, out
    assert "shapes_postprocess" in out and "weights are missing on purpose" in out


def test_serve_refuses_a_cpu_repository_on_the_bundled_server(tiny_yolo_onnx, tmp_path):
    from generator.errors import UsageError
    from generator.repository.generate import generate
    from generator.repository.options import RepositoryOptions

    generate(tiny_yolo_onnx, "cpu", tmp_path / "cpu", RepositoryOptions())
    # a served repository's model.onnx has the uint8 hand-off folded in: refused, saying what to use
    with pytest.raises(UsageError, match="generate from the original ONNX"):
        generate(tmp_path / "cpu" / "detector" / "1" / "model.onnx", "cpu", tmp_path / "again", RepositoryOptions())
    proc, _ = start_serve(tmp_path / "cpu")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "needs the 'onnxruntime' backend" in out, out


def test_quick_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "model_repository"
    work = tmp_path / "work"
    r = subprocess.run([sys.executable, "-m", "generator", "demo", "--quick", "--out", str(out), "--work", str(work)],
                       capture_output=True, text=True, timeout=480)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "served" in r.stdout and "batch-1 end-to-end latency" in r.stdout
    assert (out / "detector_ensemble" / "config.pbtxt").is_file() and (work / "teacher.pt").is_file()
    report = json.loads((out / "report.json").read_text())
    rows = report["variants"]
    assert [r["name"] for r in rows] == ["teacher", "student", "student_kd", "pruned_kd", "int8",
                                         "teacher (pytorch)", "int8 (openvino)"]
    for row in rows:
        assert set(row) >= {"params", "gflops", "latency_ms_b1", "latency_ms_b8", "map50_95", "map50"}
        assert row["params"] > 0 and row["gflops"] > 0 and row["latency_ms_b8"] > 0
    by_name = {r["name"]: r for r in rows}
    assert by_name["pruned_kd"]["gflops"] < by_name["student_kd"]["gflops"]
    assert (out / "report.png").stat().st_size > 1000
    # the headline: the teacher in PyTorch against the fastest compressed row, with the trade-off plot
    figures = report["headline_figures"]
    assert report["headline"].startswith("compressed vs teacher in PyTorch: ") and report["headline"] in r.stdout
    assert figures["speedup_b8"] == pytest.approx(figures["teacher_latency_ms_b8"] / figures["final_latency_ms_b8"],
                                                  abs=0.006)  # stored to 2 decimals
    assert (out / "tradeoff.png").stat().st_size > 1000
    # served and offline runs at the same thresholds see the same images and code: equal mAP, and
    # not zero: the served threshold suits the briefly trained model
    served, offline = report["served"], report["offline"]["onnx_at_served_thresholds"]
    assert abs(served["map50_95"] - offline["map50_95"]) <= 1e-3 and served["images"] == offline["images"]
    assert served["map50"] > 0 and served["map50_95"] > 0
    # the run was sized to its budget and says how
    plan = report["budget"]["plan"]
    assert report["budget"]["minutes"] == 3 and plan["budget_s"] == 180
    assert set(plan["steps"]) == {"teacher", "student", "student_kd", "pruned_kd"}
    assert plan["steps"]["student_kd"]["epochs"] <= plan["steps"]["student"]["epochs"]
    assert all(step["epochs"] >= 1 and step["time_sizing"] for step in plan["steps"].values())
    assert "budget 3.0 min: measured" in r.stdout
    # a second run replaces its own previous repository; a foreign folder is refused
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    r = subprocess.run([sys.executable, "-m", "generator", "demo", "--quick", "--out", str(foreign)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not a tritonforge repository" in r.stderr
    assert (foreign / "notes.txt").read_text() == "mine"
