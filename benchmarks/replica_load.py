"""One replica under faults: ``--requests`` single-image requests at ``--concurrency`` to a served
detection ensemble, ``--bad-fraction`` of them bad images at evenly spaced positions (truncated
JPEG and PNG, bytes that are not an image, PNG and JPEG headers claiming 60000x60000 pixels:
``tests/image_bytes.py``, the same mix as ``tests/integration/test_load.py``).

Every outcome is counted: a good image answered as it was answered alone before the load (same
number of detections, boxes within 0.01 px), a bad one refused as an invalid argument
(gRPC INVALID_ARGUMENT, HTTP 400) whose message names the problem, anything else an "other
error". img/s counts good images answered per second; p50/p99 are those of the good requests.
With ``--repository`` the bundled server is started on it, and the resident memory of
tritonserver plus its Python stubs is sampled (after a warm-up of the same mix, peak, at the
middle of the run and after it: growth over the second half is what a per-request leak would
show) and its stub processes compared before and after (none may be restarted).

    python benchmarks/replica_load.py --url localhost:8001 --protocol grpc --model detector_ensemble
    python benchmarks/replica_load.py --repository model_repository --out benchmarks/results/replica_load.json

Exit status 1 when any request had another outcome than those two (or a stub restarted).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import os
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import image_bytes as ib  # noqa: E402  (the bad images of the tests)
from generator.errors import ServerError, UsageError  # noqa: E402
from generator.loadtest import latency_summary, load_images  # noqa: E402
from integration.procs import RssSampler, stub_processes, tree_rss  # noqa: E402

INVALID = {"grpc": "StatusCode.INVALID_ARGUMENT", "http": "400"}
COLUMNS = ("protocol", "requests", "good ok", "bad refused", "other errors", "img/s", "p50 ms", "p99 ms",
           "peak RSS MiB")
MiB = 2**20


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="host:port of a served endpoint (gRPC or HTTP, see --protocol)")
    where.add_argument("--repository", type=Path, help="a generated repository to serve with the bundled server")
    ap.add_argument("--protocol", choices=("grpc", "http", "both"), default=None,
                    help="default: grpc with --url, both with --repository")
    ap.add_argument("--model", default=None, help="ensemble name (default: the repository's, else detector_ensemble)")
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--bad-fraction", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=2000,
                    help="requests of the same mix before measuring (the server's memory pools fill up first)")
    ap.add_argument("--images", type=Path, default=None, help="folder of good images (default: the sample images)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = ap.parse_args(argv)
    _check(args)
    return args


def _check(args: argparse.Namespace) -> None:
    if args.requests < 1 or args.concurrency < 1 or args.warmup < 0:
        raise UsageError("--requests and --concurrency must be >= 1, --warmup >= 0")
    if not 0 <= args.bad_fraction < 1:
        raise UsageError(f"--bad-fraction must be in [0, 1), got {args.bad_fraction}")
    if args.url and args.protocol == "both":
        raise UsageError("--protocol both needs --repository (one --url speaks one protocol)")
    if args.repository is not None and not args.repository.is_dir():
        raise UsageError(f"--repository: no such folder: {args.repository}")


def ensemble_of(repository: Path) -> str:
    """The name of the one model of ``repository`` whose config.pbtxt says ``platform: "ensemble"``."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    names = []
    for config in sorted(repository.glob("*/config.pbtxt")):
        parsed = text_format.Parse(config.read_text(), model_config_pb2.ModelConfig(), allow_unknown_field=True)
        if parsed.platform == "ensemble":
            names.append(parsed.name or config.parent.name)
    if len(names) != 1:
        raise UsageError(f"--repository {repository}: expected one ensemble, found {names or 'none'}; give --model")
    return names[0]


def _module(protocol: str):
    import importlib

    return importlib.import_module(f"tritonclient.{protocol}")


def _client(protocol: str, url: str, timeout: float):
    """One client, one connection (HTTP: one per thread; generous timeouts for queues 64 deep)."""
    if protocol == "http":
        return _module("http").InferenceServerClient(url, connection_timeout=timeout, network_timeout=timeout)
    return _module("grpc").InferenceServerClient(url)


def _infer(client, protocol: str, model: str, data: bytes, timeout: float):
    """The result, or the exception the client raised."""
    tensor = _module(protocol).InferInput("IMAGE", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[data]], dtype=object), **({"binary_data": True} if protocol == "http" else {}))
    try:
        return client.infer(model, [tensor], **({"client_timeout": timeout} if protocol == "grpc" else {}))
    except Exception as exc:  # noqa: BLE001 - classified by the caller
        return exc


def _answer(result) -> tuple:
    num = int(result.as_numpy("num_detections")[0, 0])
    return num, result.as_numpy("boxes")[0, :num]


def reference_answers(url: str, protocol: str, model: str, good: Sequence[bytes], timeout: float) -> List[tuple]:
    """Each good image answered alone, before the load: what it must be answered under load."""
    client = _client(protocol, url, timeout)
    try:
        results = [_infer(client, protocol, model, data, timeout) for data in good]
    finally:
        client.close()
    for k, result in enumerate(results):
        if isinstance(result, Exception):
            raise ServerError(f"{url} ({protocol}), model {model!r}: good image {k} failed alone: {result}")
    return [_answer(r) for r in results]


def classify(protocol: str, key, phrase: Optional[str], result, reference: Sequence[tuple]) -> str:
    """``ok`` (good, answered as alone), ``refused`` (bad, invalid argument naming it) or what else happened."""
    from tritonclient.utils import InferenceServerException

    if isinstance(result, InferenceServerException):
        if phrase is None:
            return f"good failed: {result.status()}"
        right = str(result.status()) == INVALID[protocol] and phrase in (result.message() or "")
        return "refused" if right else f"bad failed otherwise: {result.status()}"
    if isinstance(result, Exception):
        return f"client error: {type(result).__name__}"
    if phrase is not None:
        return "bad answered"
    num, boxes = reference[key]
    got_num, got_boxes = _answer(result)
    return "ok" if got_num == num and np.allclose(got_boxes, boxes, atol=1e-2) else "good answered differently"


def run_fault_load(url: str, protocol: str, model: str, plan: list, concurrency: int, reference, timeout: float,
                   desc: str = "") -> dict:
    """Every request of ``plan`` (``image_bytes.fault_plan``) from ``concurrency`` threads, one client each."""
    from tqdm import tqdm

    local, clients = threading.local(), []

    def one(request):
        key, data, phrase = request
        if not hasattr(local, "client"):
            local.client = _client(protocol, url, timeout)
            clients.append(local.client)
        t = time.perf_counter()
        result = _infer(local.client, protocol, model, data, timeout)
        return classify(protocol, key, phrase, result, reference), time.perf_counter() - t, result

    start = time.perf_counter()
    with cf.ThreadPoolExecutor(concurrency) as pool:
        done = list(tqdm(pool.map(one, plan), total=len(plan), desc=desc, unit="req", disable=not desc))
    seconds = time.perf_counter() - start
    for client in clients:  # an open HTTP connection holds up the server's shutdown
        client.close()
    return _tally(plan, done, seconds)


def _tally(plan: list, done: list, seconds: float) -> dict:
    good = [phrase is None for _, _, phrase in plan]
    outcomes = collections.Counter(kind for kind, _, _ in done)
    problems = [f"{key}: {kind}: {result}" for (key, _, _), (kind, _, result) in zip(plan, done)
                if kind not in ("ok", "refused")]
    lat = latency_summary([t * 1e3 for (_, t, _), g in zip(done, good) if g])
    refusals = latency_summary([t * 1e3 for (_, t, _), g in zip(done, good) if not g])
    return {"requests": len(plan), "good": sum(good), "bad": len(plan) - sum(good), "good_ok": outcomes["ok"],
            "bad_refused": outcomes["refused"], "other_errors": len(plan) - outcomes["ok"] - outcomes["refused"],
            "outcomes": dict(outcomes), "first_problems": problems[:5], "seconds": seconds,
            "throughput_img_s": outcomes["ok"] / seconds, "throughput_req_s": len(plan) / seconds,
            **{k: lat[k] for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")},
            "refusal_p50_ms": refusals["p50_ms"], "refusal_p99_ms": refusals["p99_ms"]}


def measure(url: str, protocol: str, model: str, good: List[bytes], args, server_pid: Optional[int]) -> dict:
    """Warm-up, then the measured load; memory and stub processes when the server is ours."""
    reference = reference_answers(url, protocol, model, good, args.timeout)
    if args.warmup:
        run_fault_load(url, protocol, model, ib.fault_plan(args.warmup, args.bad_fraction, good), args.concurrency,
                       reference, args.timeout, desc=f"{protocol} warm-up")
    plan = ib.fault_plan(args.requests, args.bad_fraction, good)
    if server_pid is None:
        return {"protocol": protocol, **run_fault_load(url, protocol, model, plan, args.concurrency, reference,
                                                       args.timeout, desc=protocol)}
    stubs, warm = stub_processes(server_pid), tree_rss(server_pid)
    with RssSampler(server_pid) as rss:
        row = run_fault_load(url, protocol, model, plan, args.concurrency, reference, args.timeout, desc=protocol)
    after = tree_rss(server_pid)
    return {"protocol": protocol, **row, "rss_after_warmup_mib": warm / MiB, "rss_peak_mib": rss.peak / MiB,
            "rss_middle_mib": rss.at_middle() / MiB, "rss_after_mib": after / MiB, "rss_samples": rss.samples,
            "rss_growth_second_half_mib": (after - rss.at_middle()) / MiB,
            "stubs": len(stubs), "stubs_restarted": len(set(stubs) - set(stub_processes(server_pid)))}


def format_table(rows: Sequence[dict]) -> str:
    def cells(r: dict) -> List[str]:
        rss = f"{r['rss_peak_mib']:.0f}" if "rss_peak_mib" in r else "-"
        return [r["protocol"], str(r["requests"]), str(r["good_ok"]), str(r["bad_refused"]), str(r["other_errors"]),
                f"{r['throughput_img_s']:.1f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", rss]

    body = [cells(r) for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(COLUMNS)]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in [COLUMNS, *body])


def _served(args, good: List[bytes]) -> Dict:
    """Start the bundled server on ``--repository``, run every protocol asked, stop it."""
    from generator.serve.server import TritonServer, free_port

    model = args.model or ensemble_of(args.repository)
    server = TritonServer(args.repository, free_port(), free_port(), free_port())
    server.start().wait_ready(timeout=300)
    try:
        protocols = ["grpc", "http"] if args.protocol in (None, "both") else [args.protocol]
        rows = [measure(getattr(server.endpoints, p), p, model, good, args, server.process.pid) for p in protocols]
        alive = server.process.poll() is None
    finally:
        code = server.stop()
    return {"model": model, "repository": str(args.repository), "rows": rows, "server_alive_after": alive,
            "server_exit_code": code}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    good = load_images(args.images)
    if args.repository is not None:
        result = _served(args, good)
    else:
        model, protocol = args.model or "detector_ensemble", args.protocol or "grpc"
        result = {"model": model, "url": args.url,
                  "rows": [measure(args.url, protocol, model, good, args, None)]}
    result.update(good_images=len(good), bad_images=list(ib.faulty_images()), requests=args.requests,
                  concurrency=args.concurrency, bad_fraction=args.bad_fraction, warmup=args.warmup,
                  cpus=os.cpu_count())
    print(f"\n{result['model']}: {args.requests} requests at concurrency {args.concurrency}, "
          f"{args.bad_fraction:.0%} bad images; img/s = good images answered per second, p50/p99 of good requests")
    print(format_table(result["rows"]))
    for row in result["rows"]:
        if "rss_peak_mib" in row:
            print(f"  {row['protocol']}: server RSS after warm-up {row['rss_after_warmup_mib']:.0f} MiB, middle "
                  f"{row['rss_middle_mib']:.0f}, peak {row['rss_peak_mib']:.0f}, after {row['rss_after_mib']:.0f}; "
                  f"{row['stubs_restarted']} of {row['stubs']} stubs restarted")
        for problem in row["first_problems"]:
            print(f"  {row['protocol']}: {problem}")
    if args.out:
        from generator.atomic import write_json

        write_json(args.out, result)
    failed = any(r["other_errors"] or r.get("stubs_restarted") for r in result["rows"])
    return 1 if failed or result.get("server_alive_after") is False else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (UsageError, ServerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
