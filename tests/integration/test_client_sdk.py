"""The production SDK against the real bundled Triton server: the async client, shared
memory, version pinning, timeouts and retries, streams, COCO/draw on real detections,
TLS (gRPC natively, HTTPS through a TLS-terminating proxy) with headers, and a stream
that survives a server restart."""

import asyncio
import json
import shutil
import ssl
import subprocess
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest
import tritonclient.http as httpclient

from client import (
    AsyncDetectionClient, DetectionClient, InferenceError, ModelNotFoundError, PermissionDeniedError,
    RequestTimeoutError, ServerUnavailableError, TLSError, draw, to_coco,
)
from client.draw import PALETTE
from generator.runtime import imaging
from generator.samples import write_samples
from generator.serve.server import TritonServer, free_port

from .conftest import MAX_BATCH

MODEL = "shapes_ensemble"


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return write_samples(tmp_path_factory.mktemp("sdk_samples"), 12)


@pytest.fixture(scope="module")
def reference(server, samples):
    """Detections of every sample by the plain sync gRPC client."""
    with DetectionClient(server.endpoints.grpc, model=MODEL) as c:
        return c.detect_batch(samples)


def summary(per_image):
    return [[(d.class_id, round(d.score, 4), round(d.x1, 2), round(d.y2, 2)) for d in dets] for dets in per_image]


def url_of(server, protocol):
    return server.endpoints.grpc if protocol == "grpc" else server.endpoints.http


def run(coro):
    return asyncio.run(coro)


# -- async client -------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_async_client_equals_the_sync_client(server, samples, reference, protocol):
    async def main():
        async with AsyncDetectionClient(url_of(server, protocol), protocol=protocol, model=MODEL) as c:
            await c.wait_until_ready(timeout=10)
            return await c.is_ready(), await c.info(), await c.detect_batch(samples), await c.detect(samples[3])

    ready, info, batch, single = run(main())
    assert ready is True
    assert (info.max_batch_size, info.class_names, info.input_size) == (MAX_BATCH, ("circle", "rectangle", "triangle"),
                                                                        (128, 128))
    assert info.versions == ("1",) and info.max_detections == 50 and info.platform == "ensemble"
    assert len(batch) == len(samples) == 12  # more than the max batch: split into 8 + 4
    assert summary(batch) == summary(reference) and summary([single]) == summary(reference[3:4])


# -- shared memory ------------------------------------------------------------------
def registered_regions(server):
    status = httpclient.InferenceServerClient(server.endpoints.http).get_system_shared_memory_status()
    return {region["name"] for region in status}


def ours(c):
    return set(c._core.shm.region_names)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_system_shared_memory_sync(server, samples, reference, protocol):
    with DetectionClient(url_of(server, protocol), protocol=protocol, model=MODEL, transport="shm") as c:
        results = c.detect_batch(samples)
        streamed = [r.detections for r in c.stream(samples, in_flight=3)]
        names = ours(c)
        assert len(names) >= 2 and names <= registered_regions(server)
    assert summary(results) == summary(reference) and summary(streamed) == summary(reference)
    assert not names & registered_regions(server), "close() unregisters every region"
    import tritonclient.utils.shared_memory as shm

    assert not [k for k in shm.mapped_shared_memory_regions() if k.strip("/") in names], "and unlinks them"


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_system_shared_memory_async(server, samples, reference, protocol):
    async def main():
        async with AsyncDetectionClient(url_of(server, protocol), protocol=protocol, model=MODEL,
                                        shared_memory=True) as c:
            results = await c.detect_batch(samples)
            streamed = [r.detections async for r in c.stream(samples, in_flight=4)]
            names = ours(c)
            assert names <= registered_regions(server)
        return results, streamed, names

    results, streamed, names = run(main())
    assert summary(results) == summary(reference) and summary(streamed) == summary(reference)
    assert names and not names & registered_regions(server)


def test_shared_memory_is_cleaned_when_a_request_fails_and_when_the_block_raises(server, samples, reference):
    with pytest.raises(RuntimeError, match="user code failed"):
        with DetectionClient(server.endpoints.grpc, model=MODEL, shared_memory=True) as c:
            with pytest.raises(InferenceError, match="cannot decode"):
                c.detect(b"this is not an image")
            assert len(c.detect(samples[0])) > 0, "the regions still work after a failed request"
            with pytest.raises(RequestTimeoutError):
                c.detect(samples[1], timeout=0.0001)  # its slot is retired, not reused
            assert summary([c.detect(samples[1])]) == summary(reference[1:2])
            names = ours(c)
            raise RuntimeError("user code failed")
    assert names and not names & registered_regions(server)


def test_shared_memory_lost_by_the_server_is_registered_again(server, samples, reference):
    plain = httpclient.InferenceServerClient(server.endpoints.http)
    with DetectionClient(server.endpoints.http, protocol="http", model=MODEL, shared_memory=True) as c:
        c.detect(samples[0])
        for name in ours(c):  # what a restart does to the server's registrations
            plain.unregister_system_shared_memory(name)
        assert not ours(c) & registered_regions(server)
        again = c.detect(samples[1])
        assert ours(c) <= registered_regions(server)
    assert summary([again]) == summary(reference[1:2])


@pytest.mark.gpu
def test_cuda_shared_memory(server, samples, reference):
    pytest.importorskip("cuda.bindings.runtime", reason="CUDA shared memory needs cuda-python")
    with DetectionClient(server.endpoints.grpc, model=MODEL, transport="cuda_shm") as c:
        results = c.detect_batch(samples)
        cuda = httpclient.InferenceServerClient(server.endpoints.http).get_cuda_shared_memory_status()
        assert ours(c) <= {region["name"] for region in cuda}
    assert summary(results) == summary(reference)


# -- versions, timeouts, retries ------------------------------------------------------
def test_model_version_pinning(server, samples, reference):
    with DetectionClient(server.endpoints.grpc, model=MODEL, model_version="1") as c:
        assert c.info().version == "1" and summary([c.detect(samples[2])]) == summary(reference[2:3])
    for protocol in ("grpc", "http"):
        with pytest.raises(ModelNotFoundError, match="version '7' is not served or not ready"):
            DetectionClient(url_of(server, protocol), protocol=protocol, model=MODEL, model_version="7").info()
        assert DetectionClient(url_of(server, protocol), protocol=protocol, model=MODEL,
                               model_version="7").is_ready() is False


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_timeouts_raise_without_retrying(server, samples, protocol):
    url = url_of(server, protocol)
    with DetectionClient(url, protocol=protocol, model=MODEL, retries=3, backoff=1.0) as c:
        c.info()
        start = time.monotonic()
        with pytest.raises(RequestTimeoutError, match="timed out"):
            c.detect(samples[0], timeout=0.0001)
        assert time.monotonic() - start < 0.5, "a timeout is not retried (backoff would add >= 0.5 s)"
        assert len(c.detect(samples[0])) > 0, "the default timeout still applies to other calls"

    async def main():
        async with AsyncDetectionClient(url, protocol=protocol, model=MODEL, retries=3, backoff=1.0) as a:
            await a.info()
            with pytest.raises(RequestTimeoutError):
                await a.detect(samples[0], timeout=0.0001)
            return await a.detect(samples[0])

    assert len(run(main())) > 0


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_unreachable_server_is_retried_with_backoff_then_reported(protocol):
    url = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(ServerUnavailableError, match="gave up after 3 attempts"):
        DetectionClient(url, protocol=protocol, retries=2, backoff=0.2, timeout=5).detect(b"x")
    assert time.monotonic() - start >= 0.3  # jittered waits: >= 0.1 + 0.2

    async def main():
        async with AsyncDetectionClient(url, protocol=protocol, retries=1, backoff=0.01, timeout=5) as c:
            assert await c.is_ready() is False
            with pytest.raises(ServerUnavailableError, match="not ready after 0.3 s"):
                await c.wait_until_ready(timeout=0.3)
            with pytest.raises(ServerUnavailableError, match="gave up after 2 attempts"):
                await c.info()

    run(main())


# -- streams and results ------------------------------------------------------------
def test_sync_and_async_streams_against_the_server(server, samples, reference):
    frames = list(samples) + [b"not an image"] + list(samples[:3])
    expected = summary(reference) + [None] + summary(reference[:3])

    def check(results):
        assert [r.index for r in results] == list(range(len(frames)))
        assert [r.index for r in results if not r.ok] == [12]
        assert "cannot decode" in str(results[12].error)
        assert [summary([r.detections])[0] if r.ok else None for r in results] == expected

    with DetectionClient(server.endpoints.http, protocol="http", model=MODEL) as c:
        check(list(c.stream(iter(frames), in_flight=4)))

    async def main():
        async with AsyncDetectionClient(server.endpoints.grpc, model=MODEL) as c:
            return [r async for r in c.stream(frames, in_flight=6)]

    check(run(main()))


def test_coco_results_and_drawing_of_real_detections(server, samples, reference):
    coco = to_coco(reference)
    assert len(coco) == sum(len(d) for d in reference) > 0
    assert {c["image_id"] for c in coco} <= set(range(1, 13)) and {c["category_id"] for c in coco} <= {1, 2, 3}
    first = next(c for c in coco if c["image_id"] == 1)
    d = reference[0][0]
    assert first["bbox"] == pytest.approx([d.x1, d.y1, d.x2 - d.x1, d.y2 - d.y1]) and first["score"] == d.score
    json.dumps(coco)

    rgb = imaging.decode_image(samples[0].read_bytes())
    png = draw(rgb, reference[0][:1], labels=False)
    drawn = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert drawn.shape == rgb.shape
    y = (int(round(d.y1)) + int(round(d.y2))) // 2
    assert tuple(drawn[y, int(round(d.x1))]) == PALETTE[d.class_id % len(PALETTE)]


# -- TLS and headers ----------------------------------------------------------------
def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate (openssl CLI)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=tritonforge test CA", cwd=d)
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key", "-out", f"{who}.csr",
                 "-subj", f"/CN={'localhost' if who == 'server' else 'sdk-client'}", cwd=d)
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{who}.crt", "-days", "2", "-extfile", f"{who}.ext", cwd=d)
    return {name: str(d / name) for name in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


TOKEN = "Bearer s3cret"
RESTRICTED = "metadata,model-config,model-repository,shared-memory,inference:authorization=" + TOKEN
GRPC_HEADERS = {"triton-grpc-protocol-authorization": TOKEN}  # Triton prefixes restricted gRPC headers
HTTP_HEADERS = {"Authorization": TOKEN}


@pytest.fixture(scope="module")
def tls_server(served_repo, pki):
    """Triton with mutual-TLS gRPC, and every API the SDK uses but health (which load balancers
    probe, and TritonServer.wait_ready too) restricted to a bearer token."""
    args = ["--grpc-use-ssl-mutual=true", f"--grpc-server-cert={pki['server.crt']}",
            f"--grpc-server-key={pki['server.key']}", f"--grpc-root-cert={pki['ca.crt']}",
            f"--grpc-restricted-protocol={RESTRICTED}", f"--http-restricted-api={RESTRICTED}"]
    srv = TritonServer(served_repo, free_port(), free_port(), free_port(), extra_args=args)
    srv.start().wait_ready(timeout=180)
    yield srv
    srv.stop()


def client_cert(pki):
    return {"certificate_chain": pki["client.crt"], "private_key": pki["client.key"]}


def test_grpc_tls_verified_with_the_ca_and_headers(tls_server, pki, samples, reference):
    url = f"grpcs://localhost:{tls_server.endpoints.grpc_port}"
    with DetectionClient(url, model=MODEL, root_certificates=pki["ca.crt"], headers=GRPC_HEADERS,
                         shared_memory=True, **client_cert(pki)) as c:
        assert summary(c.detect_batch(samples[:3])) == summary(reference[:3])

    async def main():
        async with AsyncDetectionClient(url, model=MODEL, root_certificates=pki["ca.crt"], headers=GRPC_HEADERS,
                                        **client_cert(pki)) as c:
            return await c.detect(samples[4])

    assert summary([run(main())]) == summary(reference[4:5])


def test_grpc_tls_without_the_ca_fails_clearly_and_is_not_retried(tls_server, pki, samples):
    url = f"grpcs://127.0.0.1:{tls_server.endpoints.grpc_port}"
    start = time.monotonic()
    with pytest.raises(TLSError, match="CERTIFICATE_VERIFY_FAILED") as info:
        DetectionClient(url, model=MODEL, headers=GRPC_HEADERS, backoff=1.0, **client_cert(pki)).detect(samples[0])
    assert "root_certificates=" in str(info.value) and time.monotonic() - start < 0.5

    async def main():
        async with AsyncDetectionClient(url, model=MODEL, headers=GRPC_HEADERS, **client_cert(pki)) as c:
            await c.info()

    with pytest.raises(TLSError):
        run(main())


def test_grpc_tls_insecure_skips_verification(tls_server, pki, samples, reference):
    url = f"grpcs://127.0.0.1:{tls_server.endpoints.grpc_port}"
    with DetectionClient(url, model=MODEL, insecure=True, headers=GRPC_HEADERS, **client_cert(pki)) as c:
        assert summary([c.detect(samples[5])]) == summary(reference[5:6])

    async def main():
        async with AsyncDetectionClient(url, model=MODEL, insecure=True, headers=GRPC_HEADERS, **client_cert(pki)) as c:
            return await c.detect(samples[6])

    assert summary([run(main())]) == summary(reference[6:7])


def test_grpc_mutual_tls_and_headers_are_enforced(tls_server, pki, samples):
    url = f"grpcs://localhost:{tls_server.endpoints.grpc_port}"
    with pytest.raises((ServerUnavailableError, TLSError)):  # no client certificate: handshake refused
        DetectionClient(url, model=MODEL, root_certificates=pki["ca.crt"], headers=GRPC_HEADERS, retries=0,
                        timeout=10).info()
    with pytest.raises(PermissionDeniedError, match="expecting header"):
        DetectionClient(url, model=MODEL, root_certificates=pki["ca.crt"], **client_cert(pki)).info()


class TLSProxy:
    """What fronts Triton's plain HTTP in production: a TLS-terminating proxy (here with
    client-certificate checks), forwarding bytes to the HTTP port."""

    def __init__(self, target_port: int, pki: dict):
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(pki["server.crt"], pki["server.key"])
        self.context.load_verify_locations(pki["ca.crt"])
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.target = target_port
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda loop, context: None)  # refused handshakes are expected
        started = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(started,), daemon=True)
        self.thread.start()
        assert started.wait(10)

    def _serve(self, started):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context))
        self.port = self.server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()

    async def _handle(self, reader, writer):
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    def close(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def _pipe(reader, writer):
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


@pytest.fixture(scope="module")
def https_proxy(tls_server, pki):
    proxy = TLSProxy(tls_server.endpoints.http_port, pki)
    yield proxy
    proxy.close()


def test_https_through_a_tls_proxy(https_proxy, pki, samples, reference):
    """Triton's HTTP endpoint has no TLS of its own: the SDK's HTTPS goes through a proxy."""
    url = f"https://localhost:{https_proxy.port}"
    with DetectionClient(url, model=MODEL, root_certificates=pki["ca.crt"], headers=HTTP_HEADERS,
                         **client_cert(pki)) as c:
        assert summary(c.detect_batch(samples[:2])) == summary(reference[:2])
    with DetectionClient(url, model=MODEL, insecure=True, headers=HTTP_HEADERS, **client_cert(pki)) as c:
        assert summary([c.detect(samples[2])]) == summary(reference[2:3])
    with pytest.raises(TLSError, match="root_certificates="):
        DetectionClient(url, model=MODEL, headers=HTTP_HEADERS, **client_cert(pki)).info()
    with pytest.raises(PermissionDeniedError, match="expecting header 'authorization'"):
        DetectionClient(url, model=MODEL, root_certificates=pki["ca.crt"], **client_cert(pki)).info()

    async def main():
        async with AsyncDetectionClient(url, model=MODEL, root_certificates=pki["ca.crt"], headers=HTTP_HEADERS,
                                        **client_cert(pki)) as c:
            verified = await c.detect(samples[3])
        async with AsyncDetectionClient(url, model=MODEL, headers=HTTP_HEADERS, **client_cert(pki)) as c:
            with pytest.raises(TLSError):
                await c.info()
        async with AsyncDetectionClient(url, model=MODEL, insecure=True, headers=HTTP_HEADERS,
                                        **client_cert(pki)) as c:
            return verified, await c.detect(samples[4])

    verified, insecure = run(main())
    assert summary([verified, insecure]) == summary(reference[3:5])


# -- a server restart in the middle of a stream -------------------------------------
def _success_count(server) -> int:
    url = f"http://{server.endpoints.http}/v2/models/{MODEL}/stats"
    with urllib.request.urlopen(url, timeout=10) as r:
        stats = json.load(r)["model_stats"][0]
    return int(stats["inference_stats"]["success"]["count"])


GATE = 20


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["grpc", "http", "grpc-shm", "async-grpc"])
def test_stream_survives_a_server_restart(served_repo, samples, reference, mode):
    """Stop the server after a few frames and start a new one on the same ports: every
    frame is answered exactly once, in order, with the right detections. Frames from
    GATE on are sent once the new server is up, so both servers answer some."""
    ports = (free_port(), free_port(), free_port())
    quick_exit = ["--exit-timeout-secs=5"]  # the default 30 s drain only slows the test down
    servers = [TritonServer(served_repo, *ports, extra_args=quick_exit).start().wait_ready(timeout=180)]
    count = 36
    frames = [samples[i % len(samples)] for i in range(count)]
    restart_done = threading.Event()

    def restart():
        servers[0].stop()
        servers.append(TritonServer(served_repo, *ports, extra_args=quick_exit).start().wait_ready(timeout=180))
        restart_done.set()

    restarter = threading.Thread(target=restart)
    protocol = "http" if mode == "http" else "grpc"
    options = dict(protocol=protocol, model=MODEL, retries=100, backoff=0.05, backoff_max=0.5, timeout=30,
                   shared_memory=mode.endswith("shm"))
    url = url_of(servers[0], protocol)
    results = []

    def on_result(r):
        results.append(r)
        if r.index == 6:
            restarter.start()

    try:
        if mode.startswith("async"):
            async def paced():
                for i, frame in enumerate(frames):
                    while i == GATE and not restart_done.is_set():
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(0.05)
                    yield frame

            async def main():
                async with AsyncDetectionClient(url, **options) as c:
                    async for r in c.stream(paced(), in_flight=4):
                        on_result(r)

            run(main())
        else:
            def paced():
                for i, frame in enumerate(frames):
                    if i == GATE:
                        restart_done.wait(60)
                    time.sleep(0.05)
                    yield frame

            with DetectionClient(url, **options) as c:
                for r in c.stream(paced(), in_flight=4):
                    on_result(r)
        restarter.join(60)
        assert restart_done.is_set() and len(servers) == 2
        assert [r.index for r in results] == list(range(count)), "each frame exactly once, in order"
        assert [r.index for r in results if not r.ok] == [], [str(r.error) for r in results if not r.ok][:3]
        assert summary([r.detections for r in results]) == summary([reference[i % 12] for i in range(count)])
        answered_after = _success_count(servers[1])
        assert 0 < answered_after < count, "frames were answered by both servers"
    finally:
        for srv in servers:
            srv.stop()
