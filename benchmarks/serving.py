"""End-to-end serving on the embedded target, measured side by side in one run.

- latency per image at batch 1 over gRPC and over HTTP (same server, interleaved);
- throughput at concurrency C with dynamic batching on vs off (two servers on the same
  ONNX, measured in alternating rounds so machine noise hits both alike).

    python benchmarks/serving.py [--imgsz 320] [--concurrency 8] [--seconds 6] [--rounds 3] [--json out.json]

Prints a table and the ratios; absolute numbers drift between runs on a shared machine,
ratios measured together are what to compare.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from client import DetectionClient  # noqa: E402
from generator.demo import latency_summary  # noqa: E402
from generator.export.onnx_export import export_onnx  # noqa: E402
from generator.models.checkpoint import build_detector  # noqa: E402
from generator.repository.generate import generate  # noqa: E402
from generator.repository.targets import GenerateOptions  # noqa: E402
from generator.samples import write_samples  # noqa: E402
from generator.serve.server import TritonServer, free_port  # noqa: E402


def throughput(url: str, images, concurrency: int, seconds: float) -> float:
    """Images per second with ``concurrency`` threads, each keeping one request in flight."""
    stop = time.monotonic() + seconds
    counts = [0] * concurrency

    def worker(k: int) -> None:
        with DetectionClient(url, model="detector_ensemble") as c:
            c.info()
            i = k
            while time.monotonic() < stop:
                c.detect(images[i % len(images)])
                counts[k] += 1
                i += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        det = build_detector("yolo-n", 3, args.imgsz, seed=0)
        export_onnx(det, tmp / "d.onnx")
        generate(tmp / "d.onnx", "embedded", tmp / "on", GenerateOptions())
        generate(tmp / "d.onnx", "embedded", tmp / "off", GenerateOptions(dynamic_batching=False))
        images = [p.read_bytes() for p in write_samples(tmp / "img", 8)]
        servers = {k: TritonServer(tmp / k, free_port(), free_port(), free_port()) for k in ("on", "off")}
        for s in servers.values():
            s.start().wait_ready()
        try:
            lat = {"grpc": [], "http": []}
            clients = {"grpc": DetectionClient(servers["on"].endpoints.grpc),
                       "http": DetectionClient(servers["on"].endpoints.http, protocol="http")}
            for c in clients.values():
                c.detect(images[0])  # warm-up
            for i in range(args.requests):
                for proto, c in clients.items():  # interleaved: both protocols see the same noise
                    t0 = time.perf_counter()
                    c.detect(images[i % len(images)])
                    lat[proto].append((time.perf_counter() - t0) * 1000)
            thr = {"on": [], "off": []}
            for _ in range(args.rounds):
                for k in ("on", "off"):
                    thr[k].append(throughput(servers[k].endpoints.grpc, images, args.concurrency, args.seconds))
        finally:
            for s in servers.values():
                s.stop()

    summary = {p: latency_summary(v) for p, v in lat.items()}
    result = {
        "imgsz": args.imgsz, "concurrency": args.concurrency,
        "latency_batch1": summary,
        "throughput_img_s": {k: statistics.median(v) for k, v in thr.items()},
        "throughput_rounds": thr,
    }
    result["ratio_http_over_grpc_p50"] = summary["http"]["p50_ms"] / summary["grpc"]["p50_ms"]
    result["ratio_dynamic_batching_on_over_off"] = result["throughput_img_s"]["on"] / result["throughput_img_s"]["off"]
    print(f"yolo-n {args.imgsz}px, embedded target, {args.requests} requests per protocol")
    print(f"{'batch-1 latency':<18} {'mean ms':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for p, s in summary.items():
        print(f"{p:<18} {s['mean_ms']:8.1f} {s['p50_ms']:8.1f} {s['p90_ms']:8.1f} {s['p99_ms']:8.1f}")
    print(f"throughput at concurrency {args.concurrency} (gRPC, median of {args.rounds} rounds):")
    for k, v in result["throughput_img_s"].items():
        print(f"  dynamic batching {k:<3}  {v:7.1f} img/s   rounds: {', '.join(f'{x:.1f}' for x in thr[k])}")
    print(f"ratio dynamic batching on/off: {result['ratio_dynamic_batching_on_over_off']:.2f}x; "
          f"HTTP/gRPC p50 latency: {result['ratio_http_over_grpc_p50']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
