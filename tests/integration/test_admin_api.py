"""The admin key and gRPC TLS against the real bundled Triton server, over gRPC and HTTP:
without the key the model-repository, shared-memory, statistics, trace and logging APIs are
refused, with it they answer; inference, health, metadata and model config need no key and
give the offline reference's detections. ``tritonforge serve`` off loopback generates,
prints and enforces a key, and serves gRPC over TLS from its own options."""

import datetime
import ipaddress
import re
import signal
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from client import AsyncDetectionClient, DetectionClient, ModelNotFoundError, PermissionDeniedError
from client import ServerUnavailableError
from generator.samples import write_samples
from generator.serve.admin import ADMIN_HEADER, GRPC_ADMIN_HEADER
from generator.serve.server import TritonServer, free_port

from .procs import find_tritonserver, listening, non_loopback_address, start_serve, wait_serve_ready
from .reference import offline

MODEL = "shapes_ensemble"
KEY = "integration-test-admin-key-0123456789"
GRPC_KEY = {GRPC_ADMIN_HEADER: KEY}
HTTP_KEY = {ADMIN_HEADER: KEY}


@pytest.fixture(scope="module")
def protected(served_repo):
    """The bundled server on loopback with the admin APIs behind ``KEY``; explicit model control,
    so that the repository API can really load and unload."""
    srv = TritonServer(served_repo, free_port(), free_port(), free_port(), admin_key=KEY,
                       extra_args=["--model-control-mode=explicit", "--load-model=*"])
    srv.start().wait_ready(timeout=180)
    yield srv
    assert srv.stop() == 0
    assert not any(KEY in line for line in srv.log), "the admin key reached the server's log"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return [p.read_bytes() for p in write_samples(tmp_path_factory.mktemp("admin_samples"), 6)]


@pytest.fixture(scope="module")
def expected(tiny_yolo_onnx, images):
    """(count, first box) per image, computed offline: the same preprocess, ONNX Runtime, postprocess."""
    num, boxes, _, _ = offline(tiny_yolo_onnx, images)
    assert num.sum() > 0, "the reference finds nothing: the comparison would be empty"
    return [(int(n), boxes[i, 0] if n else None) for i, n in enumerate(num)]


def assert_detections(per_image, expected):
    for dets, (count, first) in zip(per_image, expected):
        assert len(dets) == count
        if count:
            np.testing.assert_allclose([dets[0].x1, dets[0].y1, dets[0].x2, dets[0].y2], first, atol=2e-3)


# -- the raw APIs, as any client calls them ---------------------------------------------
def http_call(address, method, path, headers=None):
    req = urllib.request.Request(f"http://{address}{path}", method=method, headers=headers or {},
                                 data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=90) as answer:  # a model load takes seconds on a busy CPU
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


HTTP_ADMIN = [("POST", "/v2/repository/index"), ("POST", f"/v2/repository/models/{MODEL}/load"),
              ("POST", f"/v2/repository/models/{MODEL}/unload"), ("GET", "/v2/models/stats"),
              ("GET", "/v2/systemsharedmemory/status"), ("GET", "/v2/cudasharedmemory/status"),
              ("GET", "/v2/trace/setting"), ("GET", "/v2/logging")]
HTTP_OPEN = [("GET", "/v2/health/live"), ("GET", "/v2/health/ready"), ("GET", f"/v2/models/{MODEL}/ready"),
             ("GET", "/v2"), ("GET", f"/v2/models/{MODEL}"), ("GET", f"/v2/models/{MODEL}/config")]


def test_http_admin_apis_need_the_key(protected):
    address = protected.endpoints.http
    for method, path in HTTP_ADMIN:
        status, body = http_call(address, method, path)
        assert status == 403 and f"expecting header '{ADMIN_HEADER}'" in body, (path, status, body)
        assert http_call(address, method, path, {ADMIN_HEADER: KEY + "x"})[0] == 403, path
    assert protected.is_ready(), "a refused unload must not have unloaded the ensemble"
    for method, path in HTTP_ADMIN:
        if path.endswith("/unload"):  # answers, and the load after it brings the ensemble back
            path = "/v2/repository/models/shapes_postprocess/unload"
        status, body = http_call(address, method, path, {ADMIN_HEADER.upper(): KEY})  # header names: any case
        assert status == 200, (path, status, body)
    assert not protected.is_ready()  # the unload took effect: the ensemble misses a stage
    assert http_call(address, "POST", "/v2/repository/models/shapes_postprocess/load", HTTP_KEY)[0] == 200
    assert protected.is_ready()


def test_http_open_apis_need_no_key(protected):
    for method, path in HTTP_OPEN:
        assert http_call(protected.endpoints.http, method, path)[0] == 200, path


def _grpc_admin_calls(c, headers):
    return {"repository index": lambda: c.get_model_repository_index(headers=headers),
            "load": lambda: c.load_model("shapes_postprocess", headers=headers),
            "statistics": lambda: c.get_inference_statistics(headers=headers),
            "shared-memory status": lambda: c.get_system_shared_memory_status(headers=headers),
            "trace settings": lambda: c.get_trace_settings(headers=headers),
            "log settings": lambda: c.get_log_settings(headers=headers)}


def test_grpc_admin_apis_need_the_key_under_tritons_prefixed_name(protected):
    c = grpcclient.InferenceServerClient(protected.endpoints.grpc)
    # without a key, and with the HTTP header name (Triton's gRPC adds "triton-grpc-protocol-")
    for headers in (None, HTTP_KEY, {GRPC_ADMIN_HEADER: KEY + "x"}):
        for call in [*_grpc_admin_calls(c, headers).values(), lambda: c.unload_model(MODEL, headers=headers)]:
            with pytest.raises(InferenceServerException, match=f"restricted, expecting header '{GRPC_ADMIN_HEADER}'"):
                call()
    assert c.is_model_ready(MODEL), "a refused unload must not have unloaded the ensemble"
    for call in _grpc_admin_calls(c, GRPC_KEY).values():
        call()  # answers: the load reloads the postprocess model
    assert [m["name"] for m in c.get_model_repository_index(headers=GRPC_KEY, as_json=True)["models"]
            if m.get("state") == "READY"] == sorted(["shapes", MODEL, "shapes_postprocess", "shapes_preprocess"])
    assert c.is_server_ready() and c.is_model_ready(MODEL) and c.get_model_metadata(MODEL).name == MODEL
    assert c.get_model_config(MODEL).config.max_batch_size > 0
    c.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_raw_inference_needs_no_key(protected, images, expected, protocol):
    module = grpcclient if protocol == "grpc" else httpclient
    url = protected.endpoints.grpc if protocol == "grpc" else protected.endpoints.http
    c = module.InferenceServerClient(url)
    inp = module.InferInput("IMAGE", [len(images), 1], "BYTES")
    inp.set_data_from_numpy(np.array(images, dtype=np.object_).reshape(-1, 1))
    num = c.infer(MODEL, [inp]).as_numpy("num_detections")[:, 0]
    assert num.tolist() == [count for count, _ in expected]
    c.close()


# -- the SDK ----------------------------------------------------------------------------
def url_of(srv, protocol):
    return srv.endpoints.grpc if protocol == "grpc" else srv.endpoints.http


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sdk_detects_without_a_key(protected, images, expected, protocol):
    with DetectionClient(url_of(protected, protocol), protocol=protocol, model=MODEL) as c:
        assert c.info().max_batch_size > 0  # model config and metadata: open
        assert_detections(c.detect_batch(images), expected)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sdk_shared_memory_needs_the_admin_key(protected, images, expected, protocol):
    url = url_of(protected, protocol)
    with DetectionClient(url, protocol=protocol, model=MODEL, transport="shm", retries=0) as c:
        with pytest.raises(PermissionDeniedError, match="shared-memory registration refused.*pass its admin key "
                                                        "as admin_key="):
            c.detect(images[0])
    with DetectionClient(url, protocol=protocol, model=MODEL, transport="shm", admin_key=KEY) as c:
        assert_detections(c.detect_batch(images), expected)
        regions = c._core.shm.region_names
        assert regions
    # the client unregistered its regions on close: with the key, the server's list no longer has them
    status, body = http_call(protected.endpoints.http, "GET", "/v2/systemsharedmemory/status", HTTP_KEY)
    assert status == 200 and not any(name in body for name in regions)


def test_bench_over_shared_memory_takes_the_admin_key(protected, images):
    from generator.errors import ServerError
    from generator.loadtest import run_load

    url = protected.endpoints.grpc
    with pytest.raises(ServerError, match="pass its admin key"):
        run_load(url, "grpc", MODEL, [1], 1.0, images, "shm", progress=False, metrics_url=None)
    result = run_load(url, "grpc", MODEL, [2], 1.0, images, "shm", progress=False, metrics_url=None, admin_key=KEY)
    (row,) = result["levels"]
    assert row["errors"] == 0 and row["requests"] > 0


def test_async_sdk_passes_the_admin_key(protected, images, expected):
    import asyncio

    async def go():
        async with AsyncDetectionClient(protected.endpoints.http, protocol="http", model=MODEL, transport="shm",
                                        admin_key=KEY) as c:
            return await c.detect_batch(images)

    assert_detections(asyncio.run(go()), expected)


def test_sdk_names_the_key_when_the_index_is_refused(protected):
    with pytest.raises(ModelNotFoundError, match="repository index is an admin API"):
        DetectionClient(protected.endpoints.grpc, model="no_such_model").info()
    with pytest.raises(ModelNotFoundError, match=r"ready models: \[.*'shapes_ensemble'"):
        DetectionClient(protected.endpoints.grpc, model="no_such_model", admin_key=KEY).info()


# -- tritonforge serve off loopback: generated key, gRPC TLS ----------------------------
def _pki(folder, host):
    """A CA and a server certificate for localhost, 127.0.0.1 and ``host`` (the cryptography package)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject, key, issuer, issuer_key, ca, names=()):
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if names:
            b = b.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), *(x509.IPAddress(ipaddress.ip_address(h)) for h in {"127.0.0.1", host})]
    files = {"ca.crt": cert("tritonforge test CA", ca_key, "tritonforge test CA", ca_key, True),
             "server.crt": cert("localhost", server_key, "tritonforge test CA", ca_key, False, names)}
    for name, c in files.items():
        (folder / name).write_bytes(c.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return {name: str(folder / name) for name in ("ca.crt", "server.crt", "server.key")}


def test_serve_off_loopback_generates_prints_and_enforces_a_key_and_serves_grpc_tls(
        served_repo, tmp_path, monkeypatch, images, expected):
    host = non_loopback_address() or "0.0.0.0"  # 0.0.0.0: not loopback either; clients then use 127.0.0.1
    client_host = host if host != "0.0.0.0" else "127.0.0.1"
    pki = _pki(tmp_path, client_host)
    monkeypatch.delenv("TRITONFORGE_ADMIN_KEY", raising=False)
    proc, (http_port, grpc_port, _) = start_serve(served_repo, "--host", host, "--grpc-tls-cert", pki["server.crt"],
                                                  "--grpc-tls-key", pki["server.key"])
    try:
        text = wait_serve_ready(proc)
        key = re.search(r"generated admin key .*: (\S+)\n", text).group(1)
        assert len(key) >= 40 and f"curl -X POST -H '{ADMIN_HEADER}: {key}'" in text, text
        assert f"grpcs://{client_host}:{grpc_port}  (TLS)" in text, text
        _check_served_key(client_host, http_port, key)
        _check_grpc_tls(client_host, grpc_port, pki["ca.crt"], key, images, expected)
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Triton stopped (exit code 0)" in rest, rest
    assert key not in rest, "the key is printed once, when the server is ready"


def _check_served_key(host, http_port, key):
    address = f"{host}:{http_port}"
    assert http_call(address, "GET", "/v2/models/stats")[0] == 403
    assert http_call(address, "GET", "/v2/models/stats", {ADMIN_HEADER: key})[0] == 200
    assert http_call(address, "GET", "/v2/health/ready")[0] == 200


def _check_grpc_tls(host, grpc_port, ca, key, images, expected):
    url = f"grpcs://{host}:{grpc_port}"
    with DetectionClient(url, model=MODEL, root_certificates=ca) as c:  # inference: no key
        assert_detections(c.detect_batch(images), expected)
    with DetectionClient(url, model=MODEL, root_certificates=ca, transport="shm", admin_key=key) as c:
        assert_detections(c.detect_batch(images), expected)
    with pytest.raises(PermissionDeniedError):
        DetectionClient(url, model=MODEL, root_certificates=ca, transport="shm", retries=0).detect(images[0])
    with pytest.raises(ServerUnavailableError):  # a plaintext client is refused by the TLS endpoint
        DetectionClient(f"grpc://{host}:{grpc_port}", model=MODEL, retries=0, timeout=10).detect(images[0])


def test_serve_listens_where_asked(served_repo, monkeypatch):
    """Loopback by default; ``--admin-key`` there restricts the admin APIs too (no key printed)."""
    monkeypatch.setenv("TRITONFORGE_ADMIN_KEY", KEY)
    proc, (http_port, _, _) = start_serve(served_repo)
    try:
        text = wait_serve_ready(proc)
        assert KEY not in text and "generated" not in text and f"{ADMIN_HEADER}: <key>" in text, text
        triton = find_tritonserver(proc.pid)
        assert {addr for addr, port in listening(triton) if port == http_port} == {"127.0.0.1"}
        assert http_call(f"127.0.0.1:{http_port}", "GET", "/v2/logging")[0] == 403
        assert http_call(f"127.0.0.1:{http_port}", "GET", "/v2/logging", HTTP_KEY)[0] == 200
        # the caveat the help states: the key is on Triton's command line, readable in /proc
        assert KEY in open(f"/proc/{triton}/cmdline").read()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
