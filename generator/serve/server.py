"""Start a Triton server on a repository, wait until it is ready, report its own
error lines when it is not, and stop it cleanly."""

from __future__ import annotations

import collections
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Deque, Dict, List, Optional, Sequence

from generator.errors import ServerError, UsageError
from generator.serve.bundled import ServerInstall, bundled_server, external_server

if TYPE_CHECKING:
    from generator.serve.tls import GrpcTLS

# platform -> the backend that runs it
_PLATFORM_BACKEND = {
    "onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt", "pytorch_libtorch": "pytorch",
    "tensorflow_savedmodel": "tensorflow", "tensorflow_graphdef": "tensorflow", "ensemble": None,
}


def required_backends(repository: Path) -> Dict[str, str]:
    """Backend needed by each model of ``repository`` (ensembles need none)."""
    from generator.repository.render import parse_config

    needs: Dict[str, str] = {}
    for config_path in sorted(Path(repository).glob("*/config.pbtxt")):
        config = parse_config(config_path.read_text(), str(config_path))
        backend = config.backend or _PLATFORM_BACKEND.get(config.platform, config.platform)
        if backend:
            needs[config_path.parent.name] = backend
    return needs


@dataclass(frozen=True)
class Endpoints:
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int

    @property
    def client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else ("[::1]" if self.host == "::" else self.host)

    @property
    def http(self) -> str:
        return f"{self.client_host}:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"{self.client_host}:{self.grpc_port}"

    @property
    def metrics(self) -> str:
        return f"http://{self.client_host}:{self.metrics_port}/metrics"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _check_port_free(host: str, port: int, what: str) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ServerError(f"{what} port {port} on {host} is not free ({exc.strerror}); choose another") from exc


def _die_with_parent() -> None:
    """In the child before exec: Linux sends it SIGTERM when the thread that started it ends
    (even by SIGKILL), so a killed ``tritonforge serve`` leaves no server holding the ports."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def error_lines(log: Sequence[str]) -> List[str]:
    """Triton's own error lines: glog ``E...`` lines and UNAVAILABLE rows of the model table."""
    picked = []
    for line in log:
        text = line.rstrip()
        if (text[:1] == "E" and text[1:5].isdigit()) or "UNAVAILABLE" in text or "Traceback" in text \
                or text.startswith(("error:", "Error:")) and "NVML" not in text:
            picked.append(text)
    return picked


class TritonServer:
    """A tritonserver process on a repository. Use as a context manager."""

    def __init__(self, repository: Path, http_port: int = 8000, grpc_port: int = 8001, metrics_port: int = 8002,
                 host: str = "127.0.0.1", tritonserver: Optional[str] = None, backend_dir: Optional[str] = None,
                 echo: bool = False, extra_args: Sequence[str] = (), die_with_parent: bool = False,
                 admin_key: Optional[str] = None, grpc_tls: Optional["GrpcTLS"] = None):
        """``die_with_parent``: the server gets SIGTERM when the thread that starts it ends, even
        by SIGKILL of the process (Linux); for a server started by a long-lived main thread
        (``tritonforge serve``), not by a worker thread that ends before the server should.
        ``admin_key``: the model-repository, shared-memory, statistics, trace and logging APIs
        need it (``generator.serve.admin``); ``grpc_tls``: gRPC over TLS (``generator.serve.tls``)."""
        self.repository = Path(repository).absolute()
        self.admin_key = admin_key
        self.grpc_tls = grpc_tls
        self.die_with_parent = die_with_parent
        self.endpoints = Endpoints(host, http_port, grpc_port, metrics_port)
        self._install_spec = (tritonserver, backend_dir)
        self.echo = echo
        self.extra_args = list(extra_args)
        self.log: Deque[str] = collections.deque(maxlen=5000)
        self.lines_read = 0  # lines ever read (the deque keeps the last 5000)
        self.process: Optional[subprocess.Popen] = None
        self._reader: Optional[threading.Thread] = None

    # -- lifecycle -------------------------------------------------------
    def install(self) -> ServerInstall:
        binary, backend_dir = self._install_spec
        return external_server(binary, backend_dir) if binary else bundled_server()

    def check_repository(self, install: ServerInstall) -> None:
        """Refuse a repository that needs backends this server does not have."""
        if not self.repository.is_dir():
            raise UsageError(f"model repository not found: {self.repository}")
        needs = required_backends(self.repository)
        if not needs:
            raise UsageError(f"{self.repository}: no model folders with a config.pbtxt")
        if install.backends is None:
            return
        missing = {model: b for model, b in needs.items() if b not in install.backends}
        if missing:
            listing = ", ".join(f"{m} needs the {b!r} backend" for m, b in sorted(missing.items()))
            hint = ("the server bundled with nvidia-pytriton only has the Python backend: generate with "
                    "--target embedded, or run the official Triton container (see the README)")
            raise UsageError(f"{self.repository}: {listing}; this server has {sorted(install.backends)}. {hint}")

    def command(self, install: ServerInstall) -> List[str]:
        e = self.endpoints
        cmd = [str(install.binary), f"--model-repository={self.repository}",
               f"--http-address={e.host}", f"--http-port={e.http_port}",
               f"--grpc-address={e.host}", f"--grpc-port={e.grpc_port}",
               f"--metrics-address={e.host}", f"--metrics-port={e.metrics_port}",
               "--exit-on-error=true", "--strict-readiness=true", "--allow-gpu-metrics=false"]
        if install.backend_dir:
            cmd.append(f"--backend-directory={install.backend_dir}")
        return cmd + self._protection_args() + self.extra_args

    def _protection_args(self) -> List[str]:
        from generator.serve.admin import restricted_args

        args = restricted_args(self.admin_key) if self.admin_key is not None else []
        return args + (self.grpc_tls.args() if self.grpc_tls is not None else [])

    def start(self) -> "TritonServer":
        install = self.install()
        self.check_repository(install)
        e = self.endpoints
        for port, what in ((e.http_port, "HTTP"), (e.grpc_port, "gRPC"), (e.metrics_port, "metrics")):
            _check_port_free(e.host, port, what)
        self.process = subprocess.Popen(
            self.command(install), env=install.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, errors="replace", start_new_session=True,
            preexec_fn=_die_with_parent if self.die_with_parent else None,
        )
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        return self

    def _read_log(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line)
            self.lines_read += 1
            if self.echo:
                print(line, end="", flush=True)

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.endpoints.http}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 180.0) -> "TritonServer":
        """Block until every model is loaded; raise ServerError with Triton's errors otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                self._join_reader()
                raise ServerError(self._failure("exited with code "
                                                f"{self.process.returncode if self.process else '?'}"))
            if self.is_ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise ServerError(self._failure(f"was not ready after {timeout:.0f} s"))

    def _failure(self, what: str) -> str:
        from generator.serve.watch import failed_loads

        lines = error_lines(self.log) or [line.rstrip() for line in list(self.log)[-20:]]
        failed = "".join(f"; model '{m}' failed to load: {why}" for m, why in failed_loads(self.log).items())
        return f"Triton server on {self.repository} {what}{failed}:\n  " + "\n  ".join(lines)

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)

    def stop(self, timeout: float = 30.0) -> Optional[int]:
        """SIGTERM (Triton unloads models and exits), then SIGKILL after ``timeout``."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._join_reader()
        return self.process.returncode

    def __enter__(self) -> "TritonServer":
        return self.start().wait_ready()

    def __exit__(self, *exc) -> None:
        self.stop()
