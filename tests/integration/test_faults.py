"""Faults while serving, on the real bundled server: ``tritonforge serve`` binds to
localhost, notices a crashed Python stub or a model that failed to load or went unready,
names the model, stops Triton and exits non-zero."""

import os
import shutil
import signal
import socket
import sys
import threading
import time

import pytest
import tritonclient.http as httpclient

from generator.errors import ServerError
from generator.serve.run import serve_forever
from generator.serve.server import TritonServer, free_port

from .procs import (
    LOOPBACK, find_tritonserver, listening, non_loopback_address, start_serve, stub_processes, wait_serve_ready,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


@pytest.fixture(scope="module")
def serving(served_repo):
    """``tritonforge serve`` with default options, as a user starts it; stopped at the end."""
    proc, ports = start_serve(served_repo)
    try:
        wait_serve_ready(proc)
        yield proc, ports, find_tritonserver(proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)


def test_serve_listens_on_loopback_only_by_default(serving):
    proc, ports, tritonserver = serving
    sockets = listening(tritonserver)
    assert {port for _, port in sockets} == set(ports), sockets  # HTTP, gRPC, metrics, and nothing else
    assert all(host in LOOPBACK for host, _ in sockets), f"listening beyond loopback: {sockets}"
    other = non_loopback_address()
    if other:  # this machine's own LAN address does not reach the server
        for port in ports:
            with socket.socket() as s:
                s.settimeout(2)
                assert s.connect_ex((other, port)) != 0, f"port {port} answers on {other}"
    assert httpclient.InferenceServerClient(f"127.0.0.1:{ports[0]}").is_server_ready()


def test_socket_reader_sees_wildcard_binds():
    """The check above can fail: a socket bound to all addresses is reported as such."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        assert ("0.0.0.0", s.getsockname()[1]) in listening(os.getpid())


def test_serve_exits_naming_the_model_whose_stub_crashed(serving):
    proc, _, tritonserver = serving
    stubs = stub_processes(tritonserver)
    assert sorted(stubs.values()) == ["shapes", "shapes_postprocess", "shapes_preprocess", "shapes_preprocess"]
    victim = next(pid for pid, model in stubs.items() if model == "shapes_postprocess")
    start = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    out, _ = proc.communicate(timeout=90)
    took = time.monotonic() - start
    assert proc.returncode == 4, out
    assert (f"error: model 'shapes_postprocess': its Python backend stub process (pid {victim}) died; "
            "Triton would fail every request to it; stopping Triton") in out, out
    print(f"\nstub killed -> serve exited 4 in {took:.1f} s")
    # Triton and its other stubs are gone too: nothing left serving half a pipeline
    assert not _pid_alive(tritonserver) and not any(_pid_alive(pid) for pid in stubs)


def test_serve_names_a_detector_that_failed_to_load(served_repo, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(served_repo, broken)
    (broken / "shapes" / "1" / "model.onnx").write_bytes(os.urandom(4096))
    proc, _ = start_serve(broken)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 4, out
    assert f"Triton server on {broken} exited with code 1; model 'shapes' failed to load:" in out, out


def test_serve_notices_a_model_that_is_no_longer_ready(served_repo):
    """Readiness polling, with the real loop of ``tritonforge serve``: the ensemble (no
    stub process to watch) unloaded through Triton's repository API (explicit model
    control) ends the serve loop."""
    server = TritonServer(served_repo, free_port(), free_port(), free_port(),
                          extra_args=["--model-control-mode=explicit", "--load-model=*"])
    said = []

    def unload_when_ready(line):
        said.append(line)
        if "Ctrl-C stops it" in line:
            client = httpclient.InferenceServerClient(server.endpoints.http)
            threading.Thread(target=client.unload_model, args=("shapes_ensemble",), daemon=True).start()

    start = time.monotonic()
    with pytest.raises(ServerError) as info:
        serve_forever(server, 120, unload_when_ready, poll=0.2)
    assert str(info.value) == ("model 'shapes_ensemble' (HTTP 400) is no longer ready (GET /v2/models/<name>/ready); "
                               f"stopping Triton on {served_repo}")
    assert server.process.poll() is not None  # stopped
    assert any("Triton is ready" in line for line in said)
    assert time.monotonic() - start < 120


def test_killed_serve_takes_triton_with_it(served_repo):
    """``tritonforge serve`` killed with SIGKILL (no handler runs): Triton still goes, ports freed."""
    proc, ports = start_serve(served_repo)
    try:
        wait_serve_ready(proc)
        tritonserver = find_tritonserver(proc.pid)
        assert _pid_alive(tritonserver)
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 60
        while _pid_alive(tritonserver) and time.monotonic() < deadline:
            time.sleep(0.2)
        orphan = _pid_alive(tritonserver)
        if orphan:
            os.kill(tritonserver, signal.SIGKILL)  # don't leave it behind for the next tests
        assert not orphan, "tritonserver outlived the killed tritonforge serve"
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", ports[1])) != 0, "the gRPC port still answers"
    finally:
        if proc.poll() is None:
            proc.kill()
