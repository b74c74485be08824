"""GPU preprocess (CUDA letterbox kernel) vs the CPU preprocess, measured side by side in one run.

The device check for the ``gpu``/``jetson`` targets' preprocess stage:

1. correctness: the kernel (pycuda) against its host reference (the same ``letterbox.cu``
   built for the CPU) and against the CPU preprocess (OpenCV), 1080x1920 -> 640x640,
   FP32 and FP16: max abs diff and how many values differ;
2. timing at batch 1 and 8, methods interleaved round by round (so machine noise hits
   all alike), 1080p JPEGs -> 640x640 FP32:
   - ``cpu``         : imaging.letterbox on decoded images (decode excluded);
   - ``cpu+decode``  : imaging.preprocess_bytes (what preprocess.py does);
   - ``gpu``         : letterbox_batch on decoded images + wait (pinned staging, upload, kernels);
   - ``gpu+decode``  : decode_bgr + the above (what preprocess_gpu.py does, output left on the GPU);
   - ``gpu kernel``  : the launches alone, timed with CUDA events;
   - ``gpu upload``  : the host-to-device copy alone, CUDA events.

    python benchmarks/gpu_preprocess.py [--rounds 5] [--reps 20] [--size 640] [--json out.json]

Needs pycuda and a GPU (exits 2 with the reason otherwise); building pycuda is not its job.
Ratios measured together are what to compare; absolute numbers drift.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from generator.export import cuda_tools  # noqa: E402
from generator.runtime import cuda_letterbox as cl  # noqa: E402
from generator.runtime import imaging  # noqa: E402


def scene(h: int, w: int, seed: int) -> np.ndarray:
    """A photo-like BGR image: gradients, a few shapes, mild noise (JPEG-friendly)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (h + w) * 255], axis=2)
    for _ in range(12):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        cv2.circle(img, (x, y), int(rng.integers(20, h // 4)), c, -1)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def diff(a: np.ndarray, b: np.ndarray):
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return float(d.max()), int((d > 0).sum())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=20, help="calls per method per round")
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--device", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    try:
        engine = cl.CudaLetterbox(args.device)
    except cl.GpuUnavailable as exc:
        print(f"gpu_preprocess: cannot run the GPU benchmark: {exc}", file=sys.stderr)
        return 2
    size = args.size
    report = {"device": engine.device_name, "kernel": engine.loaded_from, "size": size,
              "cv2_threads": cv2.getNumThreads(), "cpu_count": os.cpu_count()}
    print(f"device: {engine.device_name}   kernel: {engine.loaded_from}   cv2 threads: {cv2.getNumThreads()}")

    # -- 1. correctness ------------------------------------------------------------------------
    bgr = scene(1080, 1920, 0)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    cpu32, cpu_t = imaging.letterbox(rgb, size, size)
    checks = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            host = cuda_tools.HostReference(cuda_tools.compile_host_reference(Path(tmp) / "letterbox_host.so"))
        except Exception as exc:  # no compiler on the device: compare with OpenCV only
            host = None
            print(f"host reference unavailable ({exc}); comparing with the CPU preprocess only")
        for name, dtype in (("fp32", np.float32), ("fp16", np.float16)):
            batch = engine.letterbox_batch([bgr], size, size, dtype)
            gpu = batch.to_host()[0]
            row = {"vs_cpu_preprocess": diff(gpu, cpu32.astype(dtype))}
            if host is not None:
                row["vs_host_reference"] = diff(gpu, host.letterbox(bgr, size, size, dtype)[0])
            row["transform_equal"] = bool(np.array_equal(batch.transforms[0], cpu_t))
            checks[name] = row
    report["checks"] = checks
    ok = True
    for name, row in checks.items():
        parts = [f"{k}: max abs diff {v[0]:.3g} ({v[1]} values differ)" for k, v in row.items() if k.startswith("vs_")]
        print(f"1080x1920 -> {size}x{size} {name}: " + "; ".join(parts)
              + f"; transform equal: {row['transform_equal']}")
        ok &= row["vs_cpu_preprocess"][0] <= 1 / 255 + 1e-6 and row["transform_equal"]
        if "vs_host_reference" in row:
            ok &= row["vs_host_reference"][1] == 0
    print("correctness:", "OK" if ok else "MISMATCH")

    # -- 2. timing -----------------------------------------------------------------------------
    batches = [int(b) for b in args.batches.split(",")]
    pool = [scene(1080, 1920, s) for s in range(max(batches))]
    jpegs = [cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for img in pool]
    rgbs = [np.ascontiguousarray(img[:, :, ::-1]) for img in pool]

    def cpu(n):
        return np.stack([imaging.letterbox(rgbs[i], size, size)[0] for i in range(n)])

    def cpu_decode(n):
        return np.stack([imaging.preprocess_bytes(jpegs[i], size, size)[0] for i in range(n)])

    def gpu(n):
        engine.letterbox_batch(pool[:n], size, size).synchronize()

    def gpu_decode(n):
        engine.letterbox_batch([imaging.decode_bgr(jpegs[i]) for i in range(n)], size, size).synchronize()

    methods = {"cpu": cpu, "cpu+decode": cpu_decode, "gpu": gpu, "gpu+decode": gpu_decode}
    results = {}
    for n in batches:
        for fn in methods.values():  # warm-up (kernel load, pinned buffers, caches)
            fn(n)
        per_round = {name: [] for name in list(methods) + ["gpu kernel", "gpu upload"]}
        for _ in range(args.rounds):
            for name, fn in methods.items():
                start = time.perf_counter()
                for _ in range(args.reps):
                    fn(n)
                per_round[name].append((time.perf_counter() - start) / args.reps * 1e3)
            kernel, upload = [], []
            for _ in range(args.reps):
                t = engine.letterbox_batch(pool[:n], size, size, timing=True).timings_ms()
                kernel.append(t["kernel"])
                upload.append(t["upload"])
            per_round["gpu kernel"].append(statistics.median(kernel))
            per_round["gpu upload"].append(statistics.median(upload))
        results[n] = {name: statistics.median(v) for name, v in per_round.items()}

    print(f"\nms per batch (median of {args.rounds} rounds x {args.reps} calls), 1080p -> {size}x{size} FP32")
    names = list(next(iter(results.values())))
    print(f"{'batch':>5} " + " ".join(f"{n:>12}" for n in names))
    for n, row in results.items():
        print(f"{n:>5} " + " ".join(f"{row[k]:>12.3f}" for k in names))
    print("\nratios (CPU time / GPU time, same run)")
    print(f"{'batch':>5} {'cpu/gpu':>10} {'cpu/kernel':>11} {'cpu+dec/gpu+dec':>16} {'per image gpu ms':>17}")
    ratios = {}
    for n, row in results.items():
        r = {"cpu/gpu": row["cpu"] / row["gpu"], "cpu/gpu_kernel": row["cpu"] / row["gpu kernel"],
             "cpu+decode/gpu+decode": row["cpu+decode"] / row["gpu+decode"]}
        ratios[n] = r
        print(f"{n:>5} {r['cpu/gpu']:>10.1f} {r['cpu/gpu_kernel']:>11.1f} {r['cpu+decode/gpu+decode']:>16.2f} "
              f"{row['gpu'] / n:>17.3f}")
    report["ms"] = {str(k): v for k, v in results.items()}
    report["ratios"] = {str(k): v for k, v in ratios.items()}
    report["correct"] = ok
    engine.close()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
