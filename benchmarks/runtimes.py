"""One detector, every CPU runtime and precision, measured side by side in one run.

A ``yolo-n`` (random weights: speed does not depend on them) exported to ONNX, quantized to
Q/DQ INT8 twice (the op-type rule, and measured selection timed on OpenVINO), then FP32 and
both INT8 files run on ONNX Runtime (thread spinning off) and OpenVINO (and OpenVINO bf16
on CPUs with bfloat16 units), at batch 1 and 8, in interleaved rounds
(``report.runner_latency``). Prints each row's latency and its ratio to ONNX Runtime FP32.

    python benchmarks/runtimes.py [--imgsz 320] [--threads 2] [--rounds 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generator.compress.config import QuantizeConfig  # noqa: E402
from generator.compress.quantize import quantize_onnx  # noqa: E402
from generator.export.onnx_export import export_onnx  # noqa: E402
from generator.models.checkpoint import build_detector  # noqa: E402
from generator.report import runner_latency  # noqa: E402
from generator.runners import open_runner  # noqa: E402
from generator.runtime.runners import available_runtimes  # noqa: E402

BASE = "fp32 (onnxruntime)"


def build_models(work: Path, imgsz: int, threads: int) -> dict:
    """fp32, int8 by op type, int8 selected by timing on OpenVINO (when installed): name -> ONNX."""
    det = build_detector("yolo-n", 3, imgsz, ["a", "b", "c"], seed=0)
    calib = np.random.default_rng(0).random((16, 3, imgsz, imgsz), dtype=np.float32)
    export_onnx(det, work / "fp32.onnx")
    models = {"fp32": work / "fp32.onnx"}
    t0 = time.perf_counter()
    quantize_onnx(models["fp32"], work / "int8_optype.onnx", calib, QuantizeConfig(method="minmax"))
    models["int8 op-type"] = work / "int8_optype.onnx"
    print(f"int8 by op type: {time.perf_counter() - t0:.1f} s")
    if "openvino" in available_runtimes(models["fp32"]):
        t0 = time.perf_counter()
        cfg = QuantizeConfig(method="minmax", select="measured", runtime="openvino", threads=threads)
        quantize_onnx(models["fp32"], work / "int8_measured.onnx", calib, cfg, echo=print)
        models["int8 measured"] = work / "int8_measured.onnx"
        print(f"int8 measured on openvino: {time.perf_counter() - t0:.1f} s")
    return models


def open_all(models: dict, threads: int) -> dict:
    runners = {}
    for name, path in models.items():
        for runtime in available_runtimes(path):
            options = {"threads": threads, **({"spinning": False} if runtime == "onnxruntime" else {})}
            runners[f"{name} ({runtime})"] = open_runner(runtime, path, **options)
    return runners


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tritonforge-runtimes-") as tmp:
        runners = open_all(build_models(Path(tmp), args.imgsz, args.threads), args.threads)
        latency = runner_latency(runners, args.imgsz, args.imgsz, rounds=args.rounds, runs=args.runs)
    base = latency[BASE]
    rows = {name: {**{f"b{b}_ms": round(ms[b], 2) for b in (1, 8)},
                   **{f"b{b}_vs_ort_fp32": round(base[b] / ms[b], 2) for b in (1, 8)}}
            for name, ms in latency.items()}
    print(f"yolo-n {args.imgsz} px, {args.threads} threads, median of {args.rounds} interleaved rounds "
          f"(ratio: ONNX Runtime FP32 latency / the row's; > 1 is faster)")
    for name, r in rows.items():
        print(f"  {name:<32} b1 {r['b1_ms']:8.2f} ms ({r['b1_vs_ort_fp32']:.2f}x)   "
              f"b8 {r['b8_ms']:8.2f} ms ({r['b8_vs_ort_fp32']:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps({"imgsz": args.imgsz, "threads": args.threads, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
