"""Load with faults on the real bundled server: 10,000 requests at concurrency 64 over gRPC
and over HTTP, one in ten a bad image (truncated JPEG or PNG, bytes that are not an image,
PNG and JPEG headers claiming 60000x60000 pixels) at evenly spaced positions. Every good
request answered as the offline reference answers it, every bad one refused alone as an
invalid argument naming the problem, nothing else; the server's resident memory
(tritonserver plus its Python stub processes) bounded and not growing with requests; the
same stub processes before and after (none restarted). Throughput and p50/p99 latency are
printed, not asserted."""

import collections
import concurrent.futures as cf
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import image_bytes as ib

from .procs import RssSampler, stub_processes, tree_rss
from .reference import ENSEMBLE, offline

REQUESTS = 10_000
CONCURRENCY = 64
BAD_FRACTION = 0.1
WARMUP = 1000  # per protocol, the same mix, before the memory baseline is taken
# tritonserver + 4 stubs (2 preprocess, detector with ONNX Runtime, postprocess) measured ~0.32 GiB under this load
RSS_BOUND = 1024 * 2**20  # resident memory of the whole tree at any time under load
RSS_GROWTH_BOUND = 128 * 2**20  # peak over the level after warm-up: queues of 64 requests, no per-request leak
RSS_LEAK_BOUND = 64 * 2**20  # after a run over after warm-up: < 7 KB per request of the 10,000
INVALID = {"grpc": "StatusCode.INVALID_ARGUMENT", "http": "400"}
GOOD = [ib.jpeg(24, 32, seed=s) for s in range(3)] + [ib.png(ib.noise(20, 20, seed=7))]
MODULES = {"grpc": grpcclient, "http": httpclient}


def _client(protocol, url):
    if protocol == "http":  # one connection per thread; generous timeouts for queues 64 deep
        return httpclient.InferenceServerClient(url, connection_timeout=300, network_timeout=300)
    return grpcclient.InferenceServerClient(url)


def _tensor(protocol, data):
    tensor = MODULES[protocol].InferInput("IMAGE", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[data]], dtype=object), **({"binary_data": True} if protocol == "http" else {}))
    return tensor


def _outcome(protocol, key, phrase, result, expected):
    """What one request came to: ``ok`` and ``refused`` are the only right ones."""
    if isinstance(result, InferenceServerException):
        if phrase is None:
            return "good request failed", f"{key}: {result.status()} {result.message()}"
        if str(result.status()) == INVALID[protocol] and phrase in result.message():
            return "refused", None
        return "bad request failed otherwise", f"{key}: {result.status()} {result.message()}"
    if isinstance(result, Exception):
        return "client error", f"{key}: {type(result).__name__}: {result}"
    if phrase is not None:
        return "bad request answered", key
    num, boxes = expected[key]
    right = result.as_numpy("num_detections")[0, 0] == num and np.allclose(result.as_numpy("boxes")[0, :num], boxes,
                                                                           atol=2e-3)
    return ("ok", None) if right else ("wrong answer", key)


def _run(url, protocol, plan, expected):
    """Every request of ``plan`` from CONCURRENCY threads, one client each:
    (outcome per request, latency s per request, first problems, seconds)."""
    local, clients = threading.local(), []

    def one(request):
        key, data, phrase = request
        if not hasattr(local, "client"):
            local.client = _client(protocol, url)
            clients.append(local.client)
        t = time.perf_counter()
        try:
            result = local.client.infer(ENSEMBLE, [_tensor(protocol, data)], **(
                {"client_timeout": 300} if protocol == "grpc" else {}))
        except Exception as exc:  # noqa: BLE001 - classified below
            result = exc
        return _outcome(protocol, key, phrase, result, expected), time.perf_counter() - t

    start = time.perf_counter()
    with cf.ThreadPoolExecutor(CONCURRENCY) as pool:
        results = list(pool.map(one, plan))
    seconds = time.perf_counter() - start
    for client in clients:  # an HTTP connection left open holds up the server's shutdown for 30 s
        client.close()
    problems = [detail for (_, detail), _ in results if detail][:5]
    return [kind for (kind, _), _ in results], np.array([t for _, t in results]), problems, seconds


def _preprocess_counts(url):
    stats = grpcclient.InferenceServerClient(url).get_inference_statistics("shapes_preprocess").model_stats[0]
    return stats.inference_count, stats.execution_count


@pytest.fixture(scope="module")
def warm(server, tiny_yolo_onnx):
    """(expected answers, server RSS after a warm-up of the same mix over both protocols)."""
    num, boxes, _, _ = offline(tiny_yolo_onnx, GOOD)
    expected = [(int(num[i]), boxes[i, :num[i]]) for i in range(len(GOOD))]
    assert len(stub_processes(server.process.pid)) == 4  # the tree measured below is the whole server
    plan = ib.fault_plan(WARMUP, BAD_FRACTION, GOOD)
    for protocol, url in (("grpc", server.endpoints.grpc), ("http", server.endpoints.http)):
        kinds, _, problems, _ = _run(url, protocol, plan, expected)
        assert set(kinds) == {"ok", "refused"}, problems
    return expected, tree_rss(server.process.pid)


def _report(protocol, kinds, latencies, seconds, plan):
    good = np.array([phrase is None for _, _, phrase in plan])
    p50, p99 = np.percentile(latencies[good], [50, 99]) * 1e3
    r50, r99 = np.percentile(latencies[~good], [50, 99]) * 1e3
    print(f"\n{protocol}: {len(plan)} requests ({good.sum()} good, {(~good).sum()} bad) at concurrency "
          f"{CONCURRENCY} in {seconds:.1f} s ({len(plan) / seconds:.0f} req/s); good p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms; refusals p50 {r50:.1f} ms, p99 {r99:.1f} ms; outcomes {dict(collections.Counter(kinds))}")


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_10000_requests_with_10pc_bad_images_at_concurrency_64(server, warm, protocol):
    expected, warm_rss = warm
    pid, url = server.process.pid, getattr(server.endpoints, protocol)
    stubs = stub_processes(pid)
    plan = ib.fault_plan(REQUESTS, BAD_FRACTION, GOOD)
    before = _preprocess_counts(server.endpoints.grpc)
    with RssSampler(pid) as rss:
        kinds, latencies, problems, seconds = _run(url, protocol, plan, expected)
    after = tree_rss(pid)
    inferences, executions = (a - b for a, b in zip(_preprocess_counts(server.endpoints.grpc), before))
    _report(protocol, kinds, latencies, seconds, plan)
    print(f"server RSS after warm-up {warm_rss / 2**20:.0f} MiB, peak {rss.peak / 2**20:.0f} MiB ({rss.samples} "
          f"samples), after {after / 2**20:.0f} MiB; preprocess: {inferences} images in {executions} executions")

    n_bad = sum(1 for _, _, phrase in plan if phrase is not None)
    assert n_bad == REQUESTS // 10
    assert collections.Counter(kinds) == {"ok": REQUESTS - n_bad, "refused": n_bad}, problems
    assert executions < REQUESTS - n_bad, "the preprocess did not batch: bad and good never shared a batch"
    assert rss.samples >= 2 and 0 < rss.peak <= RSS_BOUND
    assert rss.peak - warm_rss <= RSS_GROWTH_BOUND, "server memory grew under load"
    assert after - warm_rss <= RSS_LEAK_BOUND, "server memory kept growing: a per-request leak"
    assert stub_processes(pid) == stubs, "a Python stub was restarted"
    assert server.process.poll() is None
    assert grpcclient.InferenceServerClient(server.endpoints.grpc).is_server_ready()
