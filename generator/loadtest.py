"""``tritonforge bench --url``: latency and throughput of a served ensemble per concurrency.

Each concurrency level runs ``C`` threads for ``duration`` seconds; every thread owns a
:class:`client.DetectionClient` and keeps one request in flight, cycling through the
images. Latency is end to end as the SDK sees it (encode, send, ensemble, parse).
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from generator.errors import ServerError, UsageError

COLUMNS = ("concurrency", "requests", "errors", "throughput_img_s", "p50_ms", "p90_ms", "p99_ms", "mean_ms")


def latency_summary(latencies_ms: Sequence[float]) -> Dict[str, float]:
    """requests, mean and nearest-rank p50/p90/p99 of latencies in milliseconds."""
    ordered = sorted(latencies_ms)
    if not ordered:
        return {"requests": 0, "mean_ms": None, "p50_ms": None, "p90_ms": None, "p99_ms": None}

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]

    return {"requests": len(ordered), "mean_ms": statistics.fmean(ordered), "p50_ms": pct(50), "p90_ms": pct(90),
            "p99_ms": pct(99)}


def parse_levels(spec: str) -> List[int]:
    """``"1,2,4,8,16"`` -> ``[1, 2, 4, 8, 16]``; each level >= 1."""
    try:
        levels = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--concurrency: expected comma-separated integers, got {spec!r}") from None
    if not levels or any(c < 1 for c in levels):
        raise UsageError(f"--concurrency: levels must be integers >= 1, got {spec!r}")
    return levels


def load_images(folder: Optional[Path]) -> List[bytes]:
    """Encoded images from ``folder``, or the built-in sample images (JPEG and PNG, 300-1280 px)."""
    if folder is not None:
        from generator.data.folder import image_files

        files = image_files(Path(folder)) if Path(folder).is_dir() else []
        if not files:
            raise UsageError(f"--images: no images found in {folder}")
        return [p.read_bytes() for p in files]
    from generator.samples import write_samples

    with tempfile.TemporaryDirectory(prefix="tritonforge-bench-") as tmp:
        return [p.read_bytes() for p in write_samples(Path(tmp), 8)]


def _client(url: str, protocol: str, model: str, transport: str, timeout: float):
    from client import DetectionClient

    return DetectionClient(url, protocol=protocol, model=model, timeout=timeout, transport=transport, retries=0)


def check_endpoint(url: str, protocol: str, model: str, transport: str, image: bytes, timeout: float = 30.0) -> dict:
    """One request before measuring: a clear error when the server or model is not there."""
    from client import DetectionClientError

    try:
        with _client(url, protocol, model, transport, timeout) as c:
            info = c.info()
            c.detect(image)
    except DetectionClientError as exc:
        raise ServerError(f"{url} ({protocol}): {exc}") from exc
    return {"model": info.name, "max_batch_size": info.max_batch_size, "classes": len(info.class_names)}


def run_level(url: str, protocol: str, model: str, images: Sequence[bytes], concurrency: int, duration: float,
              transport: str = "network", timeout: float = 60.0, tick: Optional[Callable[[float], None]] = None) -> dict:
    """One concurrency level: ``concurrency`` threads, each one request in flight, for ``duration`` s."""
    latencies: List[List[float]] = [[] for _ in range(concurrency)]
    errors: List[List[str]] = [[] for _ in range(concurrency)]
    ready = threading.Barrier(concurrency + 1, timeout=120)  # every worker connected and warmed up
    go = threading.Event()
    stop_at = [0.0]

    def worker(k: int) -> None:
        with _client(url, protocol, model, transport, timeout) as c:
            try:
                c.detect(images[k % len(images)])  # warm-up: connection, model info, shm regions
            except Exception as exc:  # noqa: BLE001 - reported, not raised in a thread
                errors[k].append(f"warm-up: {exc}")
            ready.wait()
            go.wait()  # stop_at is set before go
            i = k
            while time.monotonic() < stop_at[0]:
                start = time.perf_counter()
                try:
                    c.detect(images[i % len(images)])
                    latencies[k].append((time.perf_counter() - start) * 1000)
                except Exception as exc:  # noqa: BLE001
                    errors[k].append(str(exc))
                i += concurrency

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    ready.wait()
    start = time.monotonic()
    stop_at[0] = start + duration
    go.set()
    while any(t.is_alive() for t in threads):
        time.sleep(0.25)
        if tick is not None:
            tick(min(time.monotonic() - start, duration))
    elapsed = time.monotonic() - start
    all_lat = [x for per in latencies for x in per]
    all_err = [e for per in errors for e in per]
    row = {"concurrency": concurrency, **latency_summary(all_lat), "errors": len(all_err),
           "throughput_img_s": len(all_lat) / elapsed if elapsed > 0 else 0.0}
    if all_err:
        row["first_error"] = all_err[0]
    return row


def run_load(url: str, protocol: Optional[str] = None, model: str = "detector_ensemble", levels: Sequence[int] = (1, 2, 4, 8, 16),
             duration: float = 10.0, images: Optional[Sequence[bytes]] = None, transport: str = "network",
             progress: bool = True, echo: Callable[[str], None] = print) -> dict:
    """Every level in turn; returns ``{"endpoint": ..., "levels": [rows]}``. ``protocol`` None: the
    URL's scheme says (``http://``, ``grpc://``), else gRPC, as the SDK decides it."""
    from client.options import default_protocol

    protocol = default_protocol(url, protocol)
    if duration <= 0:
        raise UsageError(f"--duration must be > 0 seconds, got {duration}")
    images = list(images) if images is not None else load_images(None)
    endpoint = check_endpoint(url, protocol, model, transport, images[0])
    endpoint.update(url=url, protocol=protocol, transport=transport, images=len(images), duration_s=duration)
    from tqdm import tqdm

    rows = []
    with tqdm(total=duration * len(levels), unit="s", disable=not progress, desc="bench",
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s") as bar:
        for i, c in enumerate(levels):
            bar.set_postfix_str(f"concurrency {c}")

            def tick(done: float, base: float = i * duration) -> None:
                bar.n = base + done
                bar.refresh()

            rows.append(run_level(url, protocol, model, images, c, duration, transport, tick=tick))
    failed = [r for r in rows if r["errors"]]
    for r in failed:
        echo(f"concurrency {r['concurrency']}: {r['errors']} errors, first: {r['first_error']}")
    return {"endpoint": endpoint, "levels": rows}


def format_load_table(rows: Sequence[dict]) -> str:
    header = ["concurrency", "requests", "errors", "img/s", "p50 ms", "p90 ms", "p99 ms", "mean ms"]

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    body = [[str(r["concurrency"]), str(r["requests"]), str(r["errors"]), num(r["throughput_img_s"], ".1f"),
             num(r["p50_ms"], ".1f"), num(r["p90_ms"], ".1f"), num(r["p99_ms"], ".1f"), num(r["mean_ms"], ".1f")]
            for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in [header, *body])


def write_load_report(result: dict, out_dir: Path) -> List[Path]:
    """``load.json`` and ``load.png`` (throughput and p50/p99 latency against concurrency)."""
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "load.json").write_text(json.dumps(result, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["levels"]
    c = [r["concurrency"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(c, [r["throughput_img_s"] for r in rows], "o-")
    left.set(xlabel="concurrency", ylabel="images / s", title="throughput", xscale="log", xticks=c, xticklabels=c)
    for key in ("p50_ms", "p90_ms", "p99_ms"):
        right.plot(c, [r[key] for r in rows], "o-", label=key.split("_")[0])
    right.set(xlabel="concurrency", ylabel="ms", title="latency", xscale="log", xticks=c, xticklabels=c)
    right.legend()
    e = result["endpoint"]
    fig.suptitle(f"{e['model']} at {e['url']} ({e['protocol']}, {e['transport']})")
    fig.tight_layout()
    fig.savefig(out_dir / "load.png", dpi=110)
    plt.close(fig)
    return [out_dir / "load.json", out_dir / "load.png"]
