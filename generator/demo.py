"""``tritonforge demo``: the whole serving path on the CPU, end to end.

detector (yolo-n) -> ONNX -> embedded repository -> bundled Triton -> SDK requests
over gRPC and HTTP -> detections and a latency summary. The models issue replaces the
randomly initialised detector with one trained on synthetic data.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

from generator.errors import UsageError

DEMO_CLASSES = ["circle", "rectangle", "triangle"]


def _check_out(out: Path) -> bool:
    """A non-empty ``out`` is replaced only if tritonforge generated it."""
    if out.is_dir() and any(out.iterdir()):
        if not (out / "tritonforge.json").is_file():
            raise UsageError(f"{out} is not empty and is not a tritonforge repository; choose another --out")
        return True
    return False


def latency_summary(latencies_ms: List[float]) -> Dict[str, float]:
    ordered = sorted(latencies_ms)
    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]
    return {"requests": len(ordered), "mean_ms": statistics.fmean(ordered), "p50_ms": pct(50), "p90_ms": pct(90),
            "p99_ms": pct(99)}


def run_demo(out: Path, imgsz: int = 320, num_requests: int = 40, keep_server: bool = False,
             echo: Callable[[str], None] = print) -> Dict[str, Dict[str, float]]:
    from tqdm import tqdm

    from client import DetectionClient
    from generator.export.onnx_export import export_onnx
    from generator.models.checkpoint import build_detector
    from generator.repository.generate import generate
    from generator.repository.targets import GenerateOptions
    from generator.samples import write_samples
    from generator.serve.server import TritonServer, free_port

    out = Path(out)
    force = _check_out(out)
    with tempfile.TemporaryDirectory(prefix="tritonforge-demo-") as work:
        work = Path(work)
        echo("[1/5] building yolo-n (random weights: training arrives with the models issue)")
        det = build_detector("yolo-n", len(DEMO_CLASSES), imgsz, DEMO_CLASSES, seed=0)
        report = export_onnx(det, work / "detector.onnx")
        echo(f"[2/5] {report.summary()}")
        repo = generate(work / "detector.onnx", "embedded", out, GenerateOptions(), force=force)
        echo(f"[3/5] wrote the embedded repository {repo.path}: {', '.join(repo.models)}")
        samples = write_samples(work / "samples", 8)
        server = TritonServer(repo.path, free_port(), free_port(), free_port())
        t0 = time.perf_counter()
        server.start().wait_ready()
        echo(f"[4/5] Triton ready in {time.perf_counter() - t0:.1f} s: HTTP {server.endpoints.http}, "
             f"gRPC {server.endpoints.grpc}")
        try:
            summaries = {}
            for protocol, url in (("grpc", server.endpoints.grpc), ("http", server.endpoints.http)):
                with DetectionClient(url, protocol=protocol, model=repo.ensemble) as c:
                    results = c.detect_batch(samples)
                    if protocol == "grpc":
                        for path, dets in zip(samples, results):
                            best = ", ".join(f"{d.class_name} {d.score:.2f}" for d in dets[:3]) or "-"
                            echo(f"      {path.name}: {len(dets)} detections ({best})")
                    latencies = []
                    for i in tqdm(range(num_requests), desc=f"[5/5] {protocol} batch-1 requests", leave=False):
                        start = time.perf_counter()
                        c.detect(samples[i % len(samples)])
                        latencies.append((time.perf_counter() - start) * 1000)
                    summaries[protocol] = latency_summary(latencies)
            echo("[5/5] end-to-end latency per image (batch 1, decode + letterbox + model + NMS):")
            echo(f"      {'protocol':<8} {'mean ms':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
            for protocol, s in summaries.items():
                echo(f"      {protocol:<8} {s['mean_ms']:8.1f} {s['p50_ms']:8.1f} {s['p90_ms']:8.1f} {s['p99_ms']:8.1f}")
            if keep_server:
                echo("server left running; Ctrl-C stops it")
                while server.process.poll() is None:
                    time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    return summaries
