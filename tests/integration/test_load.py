"""Load on the real bundled server: 5,000 requests at concurrency 32 over gRPC and over
HTTP, no errors and no wrong answers, the server's resident memory (tritonserver plus
its Python stub processes) bounded. p99 latency is printed, not asserted."""

import concurrent.futures as cf
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import image_bytes as ib

from .procs import stub_processes, tree_rss
from .reference import ENSEMBLE, offline

REQUESTS = 5000
CONCURRENCY = 32
WARMUP = 200
# tritonserver + 4 stubs (2 preprocess, detector with ONNX Runtime, postprocess) measured ~0.35 GiB
RSS_BOUND = 1024 * 2**20  # resident memory of the whole tree at any time under load
RSS_GROWTH_BOUND = 128 * 2**20  # over the level after warm-up (measured +30 MiB): no per-request leak
IMAGES = [ib.jpeg(24, 32, seed=s) for s in range(3)] + [ib.png(ib.noise(20, 20, seed=7))]
MODULES = {"grpc": grpcclient, "http": httpclient}


class RssSampler(threading.Thread):
    def __init__(self, pid, every=0.2):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak, self.samples = pid, every, 0, 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self.samples += 1
            self.done.wait(self.every)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.join()


def _run(url, protocol, count, expected):
    """``count`` one-image requests from CONCURRENCY threads; (latencies s, errors, wrong answers, seconds).
    ``expected``: per image, the number of detections and their boxes."""
    module = MODULES[protocol]
    local = threading.local()

    def one(i):
        if not hasattr(local, "client"):
            local.client = module.InferenceServerClient(url, **({"connection_timeout": 120, "network_timeout": 120}
                                                                  if protocol == "http" else {}))
        k = i % len(IMAGES)
        tensor = module.InferInput("IMAGE", [1, 1], "BYTES")
        data = np.array([[IMAGES[k]]], dtype=object)
        tensor.set_data_from_numpy(data, **({"binary_data": True} if protocol == "http" else {}))
        t = time.perf_counter()
        try:
            res = local.client.infer(ENSEMBLE, [tensor])
        except Exception as exc:  # counted, and the first few shown
            return time.perf_counter() - t, f"{type(exc).__name__}: {exc}", False
        elapsed = time.perf_counter() - t
        num, boxes = expected[k]
        right = res.as_numpy("num_detections")[0, 0] == num and np.allclose(res.as_numpy("boxes")[0, :num], boxes,
                                                                            atol=2e-3)
        return elapsed, None, right

    start = time.perf_counter()
    with cf.ThreadPoolExecutor(CONCURRENCY) as pool:
        results = list(pool.map(one, range(count)))
    seconds = time.perf_counter() - start
    errors = [e for _, e, _ in results if e]
    wrong = sum(1 for _, e, right in results if not e and not right)
    return np.array([r[0] for r in results]), errors, wrong, seconds


@pytest.fixture(scope="module")
def warm(server, tiny_yolo_onnx):
    """(expected answers, server RSS after a warm-up)."""
    num, boxes, _, _ = offline(tiny_yolo_onnx, IMAGES)
    expected = [(int(num[i]), boxes[i, :num[i]]) for i in range(len(IMAGES))]
    assert len(stub_processes(server.process.pid)) == 4  # the tree measured below is the whole server
    _, errors, wrong, _ = _run(server.endpoints.grpc, "grpc", WARMUP, expected)
    assert not errors and not wrong
    return expected, tree_rss(server.process.pid)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_5000_requests_at_concurrency_32(server, warm, protocol):
    expected, warm_rss = warm
    url = server.endpoints.grpc if protocol == "grpc" else server.endpoints.http
    with RssSampler(server.process.pid) as rss:
        latencies, errors, wrong, seconds = _run(url, protocol, REQUESTS, expected)
    after = tree_rss(server.process.pid)
    p50, p99 = np.percentile(latencies, [50, 99]) * 1e3
    print(f"\n{protocol}: {REQUESTS} requests at concurrency {CONCURRENCY} in {seconds:.1f} s "
          f"({REQUESTS / seconds:.0f}/s), p50 {p50:.1f} ms, p99 {p99:.1f} ms; server RSS after warm-up "
          f"{warm_rss / 2**20:.0f} MiB, peak {rss.peak / 2**20:.0f} MiB ({rss.samples} samples), after {after / 2**20:.0f} MiB "
          f"(bounds {RSS_BOUND / 2**20:.0f} MiB, +{RSS_GROWTH_BOUND / 2**20:.0f} MiB)")
    assert errors == [], f"{len(errors)} errors, first: {errors[:3]}"
    assert wrong == 0, f"{wrong} answers differ from offline ONNX Runtime"
    assert rss.samples >= 2 and 0 < rss.peak <= RSS_BOUND
    assert rss.peak - warm_rss <= RSS_GROWTH_BOUND, "server memory grew under load"
    assert server.process.poll() is None
