"""Serving on the embedded target, measured side by side in one run (ratios, not absolutes).

(a) served ensemble throughput at concurrency C over in-process throughput doing the same
    work (decode, letterbox, ONNX Runtime, NMS) on the same model and images, batches of C;
(b) dynamic batching on vs off at concurrency C (two servers, same ONNX);
(c) SDK overhead vs raw tritonclient (same bytes, same server, interleaved, concurrency 1);
(e) gRPC vs HTTP vs system shared memory for 1080p inputs (PNG, interleaved, concurrency 1).

Throughputs are measured in alternating rounds so machine noise hits every side alike.
Also written as JSON with ``--json``; Triton's own per-model statistics for (a) are
printed so the limit can be located (queue vs compute per stage).

    python benchmarks/serving.py [--imgsz 320] [--concurrency 16] [--seconds 8] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from client import DetectionClient  # noqa: E402
from generator.export.onnx_export import export_onnx  # noqa: E402
from generator.loadtest import latency_summary, run_level  # noqa: E402
from generator.models.checkpoint import build_detector  # noqa: E402
from generator.repository.generate import generate  # noqa: E402
from generator.repository.options import RepositoryOptions  # noqa: E402
from generator.runtime import boxes, imaging  # noqa: E402
from generator.samples import sample_image, write_samples  # noqa: E402
from generator.serve.server import TritonServer, free_port  # noqa: E402

MODEL = "detector_ensemble"


def served_throughput(url: str, images, concurrency: int, seconds: float) -> float:
    """Images per second with ``concurrency`` threads, each keeping one request in flight
    (the same load generator as ``tritonforge bench --url``)."""
    row = run_level(url, "grpc", MODEL, images, concurrency, seconds)
    if row["errors"]:
        raise RuntimeError(f"{row['errors']} failed requests at concurrency {concurrency}: {row['first_error']}")
    return row["throughput_img_s"]


def in_process_throughput(onnx: Path, images, batch: int, seconds: float, imgsz: int) -> float:
    """The same work in one process: decode + letterbox each image, one call per batch of the
    runner the embedded detector stage uses (ONNX Runtime, same session settings), NMS."""
    from generator.runners import open_runner

    runner = open_runner("onnxruntime", onnx)
    done, i = 0, 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        pre = [imaging.preprocess_bytes(images[(i + j) % len(images)], imgsz, imgsz) for j in range(batch)]
        x = np.stack([p[0] for p in pre])
        t = np.stack([p[1] for p in pre])
        boxes.postprocess(runner(x), t, 0.25, 0.45, 100)
        done += batch
        i += batch
    return done / (time.monotonic() - start)


def raw_tritonclient(url: str):
    """What an application without the SDK writes: one infer call, outputs as numpy."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    outputs = [grpcclient.InferRequestedOutput(n) for n in ("num_detections", "boxes", "scores", "classes")]

    def detect(data: bytes):
        inp = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
        inp.set_data_from_numpy(np.array([[data]], dtype=np.object_))
        result = client.infer(MODEL, [inp], outputs=outputs)
        return [result.as_numpy(n) for n in ("num_detections", "boxes", "scores", "classes")]

    return detect


def interleaved_latency(callers: dict, payloads, requests: int) -> dict:
    """``{name: latency_summary}``; request i goes to every caller in turn, same payload."""
    times = {name: [] for name in callers}
    for fn in callers.values():
        fn(payloads[0])  # warm-up
    for i in range(requests):
        for name, fn in callers.items():
            t0 = time.perf_counter()
            fn(payloads[i % len(payloads)])
            times[name].append((time.perf_counter() - t0) * 1000)
    return {name: latency_summary(v) for name, v in times.items()}


def model_stats(url: str) -> dict:
    """Triton's own statistics: per model, executions, inferences, and ms per stage."""
    import tritonclient.grpc as grpcclient

    stats = grpcclient.InferenceServerClient(url).get_inference_statistics(as_json=True)
    out = {}
    for m in stats.get("model_stats", []):
        s = m["inference_stats"]
        count = int(s["success"].get("count", 0)) or 1
        out[m["name"]] = {
            "inferences": int(m.get("inference_count", 0)), "executions": int(m.get("execution_count", 0)),
            **{f"{k}_ms": int(s[k].get("ns", 0)) / count / 1e6 for k in ("queue", "compute_input", "compute_infer",
                                                                          "compute_output")},
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=100, help="per side, for (c) and (e)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    c = args.concurrency

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        det = build_detector("yolo-n", 3, args.imgsz, seed=0)
        onnx = tmp / "d.onnx"
        export_onnx(det, onnx)
        generate(onnx, "embedded", tmp / "on", RepositoryOptions(max_batch_size=c))
        generate(onnx, "embedded", tmp / "off", RepositoryOptions(max_batch_size=c, dynamic_batching=False))
        images = [p.read_bytes() for p in write_samples(tmp / "img", 8)]
        import cv2

        _, png = cv2.imencode(".png", sample_image(7, 1080, 1920)[:, :, ::-1])
        big = [png.tobytes()]
        servers = {k: TritonServer(tmp / k, free_port(), free_port(), free_port()) for k in ("on", "off")}
        for s in servers.values():
            s.start().wait_ready()
        try:
            thr = {"served_on": [], "served_off": [], "in_process": []}
            for r in range(args.rounds):
                print(f"round {r + 1}/{args.rounds}: throughput at concurrency {c}", flush=True)
                thr["served_on"].append(served_throughput(servers["on"].endpoints.grpc, images, c, args.seconds))
                thr["in_process"].append(in_process_throughput(onnx, images, c, args.seconds, args.imgsz))
                thr["served_off"].append(served_throughput(servers["off"].endpoints.grpc, images, c, args.seconds))
            stats = model_stats(servers["on"].endpoints.grpc)
            grpc_url, http_url = servers["on"].endpoints.grpc, servers["on"].endpoints.http
            print("SDK overhead and 1080p transports (interleaved)", flush=True)
            with DetectionClient(grpc_url, model=MODEL) as sdk:
                overhead = interleaved_latency({"raw tritonclient": raw_tritonclient(grpc_url), "SDK": sdk.detect},
                                               images, args.requests)
            with DetectionClient(grpc_url, model=MODEL) as g, \
                    DetectionClient(http_url, protocol="http", model=MODEL) as h, \
                    DetectionClient(grpc_url, model=MODEL, transport="shm") as s:
                transports = interleaved_latency({"gRPC": g.detect, "HTTP": h.detect, "system shm": s.detect},
                                                 big, max(20, args.requests // 3))
        finally:
            for s in servers.values():
                s.stop()

    med = {k: statistics.median(v) for k, v in thr.items()}
    result = {
        "imgsz": args.imgsz, "concurrency": c, "throughput_img_s": med, "throughput_rounds": thr,
        "a_served_over_in_process": med["served_on"] / med["in_process"],
        "b_dynamic_batching_on_over_off": med["served_on"] / med["served_off"],
        "c_sdk_overhead": overhead["SDK"]["p50_ms"] / overhead["raw tritonclient"]["p50_ms"] - 1,
        "c_latency": overhead, "e_png_1080p_bytes": len(big[0]), "e_latency": transports,
        "triton_stats_dynamic_batching_on": stats,
    }
    print(f"\nyolo-n {args.imgsz}px, embedded target, concurrency {c}, median of {args.rounds} alternating rounds")
    for k, v in med.items():
        print(f"  {k:<12} {v:7.1f} img/s   rounds: {', '.join(f'{x:.1f}' for x in thr[k])}")
    print(f"(a) served / in-process throughput      {result['a_served_over_in_process']:.2f}   (target >= 0.8)")
    print(f"(b) dynamic batching on / off           {result['b_dynamic_batching_on_over_off']:.2f}x  (target >= 2)")
    print(f"(c) SDK overhead over raw tritonclient  {result['c_sdk_overhead'] * 100:+.1f}% p50 "
          f"({overhead['SDK']['p50_ms']:.2f} vs {overhead['raw tritonclient']['p50_ms']:.2f} ms)  (target <= 5%)")
    print(f"(e) 1080p PNG ({len(big[0]) / 1e6:.1f} MB), batch 1, p50 / p99 ms:")
    for k, v in transports.items():
        print(f"      {k:<11} {v['p50_ms']:7.1f} / {v['p99_ms']:7.1f}")
    print("Triton statistics with dynamic batching (per model: inferences/executions, ms per inference):")
    for name, s in stats.items():
        print(f"  {name:<22} {s['inferences']:6d}/{s['executions']:<6d} queue {s['queue_ms']:6.2f}  "
              f"infer {s['compute_infer_ms']:6.2f}  in {s['compute_input_ms']:5.2f}  out {s['compute_output_ms']:5.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
