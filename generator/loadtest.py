"""``tritonforge bench --url``: latency and throughput of a served ensemble per concurrency.

Each concurrency level runs ``C`` threads for ``duration`` seconds; every thread owns a
:class:`client.DetectionClient` and keeps one request in flight, cycling through the
images. Latency is end to end as the SDK sees it (encode, send, ensemble, parse).

With Triton's metrics endpoint (``metrics_url``), each level is bracketed by two scrapes
(after the warm-up, and after the last request), and its row says where the time went per
stage (``generator.metrics.stage_breakdown``): ``queue_us_per_request`` and ``stages``.
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


def within(row: dict, p99_ms: float) -> bool:
    """Whether a level's p99 is within ``p99_ms`` and it had no errors."""
    return row["p99_ms"] is not None and row["p99_ms"] <= p99_ms and not row.get("errors")


def best_within(rows: Sequence[dict], p99_ms: float) -> Optional[dict]:
    """The level with the best throughput among those :func:`within` ``p99_ms`` (None: no such
    level): a replica's capacity under a latency bound, for the capacity model (``deploy
    --rate``) and ``tune``'s score alike."""
    levels = [r for r in rows if within(r, p99_ms)]
    return max(levels, key=lambda r: r["throughput_img_s"]) if levels else None


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


def _client(url: str, protocol: str, model: str, transport: str, timeout: float, admin_key: Optional[str] = None):
    from client import DetectionClient

    return DetectionClient(url, protocol=protocol, model=model, timeout=timeout, transport=transport, retries=0,
                           admin_key=admin_key)


def check_endpoint(url: str, protocol: str, model: str, transport: str, image: bytes, timeout: float = 30.0,
                   admin_key: Optional[str] = None) -> dict:
    """One request before measuring: a clear error when the server or model is not there."""
    from client import DetectionClientError

    try:
        with _client(url, protocol, model, transport, timeout, admin_key) as c:
            info = c.info()
            c.detect(image)
    except DetectionClientError as exc:
        raise ServerError(f"{url} ({protocol}): {exc}") from exc
    return {"model": info.name, "max_batch_size": info.max_batch_size, "classes": len(info.class_names)}


def run_level(url: str, protocol: str, model: str, images: Sequence[bytes], concurrency: int, duration: float,
              transport: str = "network", timeout: float = 60.0, tick: Optional[Callable[[float], None]] = None,
              on_start: Optional[Callable[[], None]] = None, admin_key: Optional[str] = None) -> dict:
    """One concurrency level: ``concurrency`` threads, each one request in flight, for ``duration`` s.
    ``on_start`` is called once every thread has warmed up, just before the clock starts.
    ``admin_key``: a protected server's key (the shared-memory transport registers regions)."""
    latencies: List[List[float]] = [[] for _ in range(concurrency)]
    errors: List[List[str]] = [[] for _ in range(concurrency)]
    ready = threading.Barrier(concurrency + 1, timeout=120)  # every worker connected and warmed up
    go = threading.Event()
    stop_at = [0.0]

    def worker(k: int) -> None:
        with _client(url, protocol, model, transport, timeout, admin_key) as c:
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
    if on_start is not None:
        on_start()
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
             progress: bool = True, echo: Callable[[str], None] = print, metrics_url: Optional[str] = "",
             admin_key: Optional[str] = None) -> dict:
    """Every level in turn; returns ``{"endpoint": ..., "levels": [rows]}``. ``protocol`` None: the
    URL's scheme says (``http://``, ``grpc://``), else gRPC, as the SDK decides it. ``metrics_url``:
    Triton's metrics endpoint ("": the URL's host, port 8002; None: no stage metrics)."""
    from client.options import default_protocol
    from generator.metrics import Probe, resolve_metrics_url

    protocol = default_protocol(url, protocol)
    if duration <= 0:
        raise UsageError(f"--duration must be > 0 seconds, got {duration}")
    images = list(images) if images is not None else load_images(None)
    endpoint = check_endpoint(url, protocol, model, transport, images[0], admin_key=admin_key)
    endpoint.update(url=url, protocol=protocol, transport=transport, images=len(images), duration_s=duration)
    probe = Probe(None if metrics_url is None else resolve_metrics_url(metrics_url, url), echo)
    rows = _run_levels(probe, progress, levels, duration, url, protocol, model, images, transport, admin_key)
    failed = [r for r in rows if r["errors"]]
    for r in failed:
        echo(f"concurrency {r['concurrency']}: {r['errors']} errors, first: {r['first_error']}")
    endpoint["metrics_url"] = probe.url if probe.active else None
    if probe.error:
        endpoint["metrics_error"] = probe.error
    return {"endpoint": endpoint, "levels": rows}


def _run_levels(probe, progress: bool, levels: Sequence[int], duration: float, *level_args) -> List[dict]:
    """Each level with its scrapes, under one progress bar; ``level_args``: url, protocol, model, images, transport, admin key."""
    from tqdm import tqdm

    url, protocol, model, images, transport, admin_key = level_args
    rows = []
    with tqdm(total=duration * len(levels), unit="s", disable=not progress, desc="bench",
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s") as bar:
        for i, c in enumerate(levels):
            bar.set_postfix_str(f"concurrency {c}")

            def tick(done: float, base: float = i * duration) -> None:
                bar.n = base + done
                bar.refresh()

            rows.append(_measured_level(probe, model, lambda on_start: run_level(
                url, protocol, model, images, c, duration, transport, tick=tick, on_start=on_start, admin_key=admin_key)))
    return rows


def _measured_level(probe, ensemble: str, run: Callable[[Callable[[], None]], dict]) -> dict:
    """``run(on_start)`` bracketed by two scrapes of ``probe``: the row with its stage breakdown
    (``queue_us_per_request`` None and no ``stages`` when the metrics endpoint does not answer)."""
    from generator.metrics import stage_breakdown

    before: list = []
    row = run(lambda: before.append(probe.scrape()))
    after = probe.scrape()
    if before and before[0] is not None and after is not None:
        row.update(stage_breakdown(before[0], after, ensemble))
    else:
        row.update(queue_us_per_request=None, stages=[], custom_metrics=None)
    return row


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in [header, *body])


def format_load_table(rows: Sequence[dict]) -> str:
    """One line per level; with stage metrics, the queue time per request (ms) as a last column."""
    header = ["concurrency", "requests", "errors", "img/s", "p50 ms", "p90 ms", "p99 ms", "mean ms"]
    body = [[str(r["concurrency"]), str(r["requests"]), str(r["errors"]), _num(r["throughput_img_s"], ".1f"),
             _num(r["p50_ms"], ".1f"), _num(r["p90_ms"], ".1f"), _num(r["p99_ms"], ".1f"), _num(r["mean_ms"], ".1f")]
            for r in rows]
    if any(r.get("queue_us_per_request") is not None for r in rows):
        header.append("queue ms/req")
        for line, r in zip(body, rows):
            q = r.get("queue_us_per_request")
            line.append(_num(None if q is None else q / 1000, ".2f"))
    return _table(header, body)


def format_stage_table(rows: Sequence[dict]) -> Optional[str]:
    """Per level and stage (Triton's metrics): requests, average batch, queue and compute ms per
    request; None when no level has stage metrics."""
    header = ["concurrency", "stage", "requests", "batch", "queue ms", "compute ms", "queue %"]
    body = [[str(r["concurrency"]), s["model"], str(s["requests"]), f"{s['batch']:.2f}", f"{s['queue_us'] / 1000:.2f}",
             f"{s['compute_us'] / 1000:.2f}", _num(_share(s["queue_us"], s["compute_us"]), ".0f")]
            for r in rows for s in r.get("stages") or []]
    return _table(header, body) if body else None


def _share(part: float, other: float) -> Optional[float]:
    return 100 * part / (part + other) if part + other > 0 else None


def format_custom_table(rows: Sequence[dict]) -> Optional[str]:
    """Per level, the Python stages' own counters (``tritonforge_*``); None when the server has none."""
    header = ["concurrency", "img/request", "det/image", "pre ms/img", "post ms/img", "refused (by reason)"]
    body = []
    for r in rows:
        c = r.get("custom_metrics")
        if c:
            refused = ", ".join(f"{k} {v}" for k, v in c["decode_failures"].items() if v) or "0"
            body.append([str(r["concurrency"]), _num(c["images_per_request"], ".2f"),
                         _num(c["detections_per_image"], ".2f"), _ms(c["preprocess_us_per_image"]),
                         _ms(c["postprocess_us_per_image"]), refused])
    return _table(header, body) if body else None


def _ms(us: Optional[float]) -> str:
    return _num(None if us is None else us / 1000, ".2f")


def format_report(result: dict) -> str:
    """The load table, then (when the metrics endpoint answered) the stage and custom-metric tables."""
    parts = [format_load_table(result["levels"])]
    stages, custom = format_stage_table(result["levels"]), format_custom_table(result["levels"])
    if stages:
        parts.append("where the time goes per stage (Triton's metrics; ms per request):\n" + stages)
    if custom:
        parts.append("stage metrics (tritonforge_*):\n" + custom)
    return "\n\n".join(parts)


def write_load_report(result: dict, out_dir: Path) -> List[Path]:
    """``load.json`` and ``load.png`` (throughput, p50/p90/p99 latency, and with stage metrics
    the queue and compute time per request of each stage), written together atomically."""
    import json

    from generator.atomic import atomic_paths

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "load.json", out_dir / "load.png"]
    with atomic_paths(*paths) as (json_tmp, png_tmp):
        json_tmp.write_text(json.dumps(result, indent=2) + "\n")
        _plot_load(result, png_tmp)
    return paths


def _plot_load(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["levels"]
    c = [r["concurrency"] for r in rows]
    staged = any(r.get("stages") for r in rows)
    fig, axes = plt.subplots(1, 3 if staged else 2, figsize=(15 if staged else 10, 4))
    axes[0].plot(c, [r["throughput_img_s"] for r in rows], "o-")
    axes[0].set(xlabel="concurrency", ylabel="images / s", title="throughput", xscale="log", xticks=c, xticklabels=c)
    for key in ("p50_ms", "p90_ms", "p99_ms"):
        axes[1].plot(c, [r[key] for r in rows], "o-", label=key.split("_")[0])
    axes[1].set(xlabel="concurrency", ylabel="ms", title="latency", xscale="log", xticks=c, xticklabels=c)
    axes[1].legend()
    if staged:
        _plot_stages(axes[2], rows)
    e = result["endpoint"]
    fig.suptitle(f"{e['model']} at {e['url']} ({e['protocol']}, {e['transport']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def _plot_stages(ax, rows: Sequence[dict]) -> None:
    """One stacked bar per level: each stage's compute (solid) and queue (hatched) ms per request."""
    models = list(dict.fromkeys(s["model"] for r in rows for s in r.get("stages") or []))
    colors = {m: f"C{i}" for i, m in enumerate(models)}
    x = list(range(len(rows)))
    bottom = [0.0] * len(rows)
    for model in models:
        for part, hatch, label in (("compute_us", None, f"{model} compute"), ("queue_us", "//", f"{model} queue")):
            heights = [next((s[part] / 1000 for s in r.get("stages") or [] if s["model"] == model), 0.0) for r in rows]
            ax.bar(x, heights, bottom=bottom, color=colors[model], alpha=0.45 if hatch else 0.9, hatch=hatch,
                   edgecolor="black", linewidth=0.4, label=label)
            bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set(xlabel="concurrency", ylabel="ms per request", title="queue vs compute per stage", xticks=x,
           xticklabels=[str(r["concurrency"]) for r in rows])
    ax.legend(fontsize=7)
