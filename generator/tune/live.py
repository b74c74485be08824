"""The server ``tune`` measures on, and how a candidate reaches it: a restart per candidate.

Reloading models in place (explicit model control, ``load_model(name, config=json)``) is
cheaper (about 1.7 s per Python stage against about 2.5 s to start and 4 s to stop a
server, measured on this host) but not reliable on Triton 2.51, the release nvidia-pytriton
bundles: once the ensemble has served requests, unloading it (which reloading any of its
models does, by dependency) aborts the server with heap corruption
(``tcache_thread_shutdown(): unaligned tcache chunk detected``) within two or three
candidates. So each candidate's configs are written into a private copy of the repository
and a fresh server is started on it; the previous one stops in the background meanwhile
(its shutdown is mostly Triton waiting out its exit timeout). What runs is checked by
reading the served configs back. The user's repository is never touched here.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, Optional

from generator.errors import ServerError, UsageError
from generator.tune.knobs import read_knobs
from generator.tune.repository import TuneRepository

READ_TIMEOUT_S = 60.0


class ApplyError(ServerError):
    """A candidate's configs did not load (the candidate is recorded as failed)."""


def served_config(client, model: str):
    """The config Triton runs for ``model``, as a ModelConfig."""
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2

    return json_format.ParseDict(client.get_model_config(model), model_config_pb2.ModelConfig(),
                                 ignore_unknown_fields=True)


def shadow_copy(repo: TuneRepository) -> Path:
    """A private copy of the repository's model folders (the ones the ensemble uses)."""
    root = Path(tempfile.mkdtemp(prefix="tritonforge-tune-"))
    for model in repo.configs:
        shutil.copytree(repo.path / model, root / model, ignore=shutil.ignore_patterns("__pycache__"))
    return root


class LiveServer:
    """A Triton server on a private copy of ``repo``, restarted per candidate. Context manager."""

    def __init__(self, repo: TuneRepository, tritonserver: Optional[str] = None, backend_dir: Optional[str] = None):
        self.repo, self._spec = repo, (tritonserver, backend_dir)
        self.server = None
        self.root: Optional[Path] = None
        self.loaded: Dict[str, object] = {}
        self.start_s = 0.0
        self._stopping: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return self.server.endpoints.grpc

    def _make(self, root: Path):
        from generator.serve.server import TritonServer, free_port

        return TritonServer(root, free_port(), free_port(), free_port(), tritonserver=self._spec[0],
                            backend_dir=self._spec[1])

    def check(self) -> "LiveServer":
        """Refuse a repository this server cannot run (before any time is spent)."""
        server = self._make(self.repo.path)
        try:
            server.check_repository(server.install())
        except UsageError as exc:
            raise UsageError(f"{exc}\ntune starts the server itself: give --tritonserver (and "
                             "--backend-directory) for a Triton that has these backends, as for `serve`") from None
        return self

    def start(self) -> "LiveServer":
        """Copy the repository and serve it as it is (the default candidate)."""
        begin = time.monotonic()
        self.root = shadow_copy(self.repo)
        self.loaded = dict(self.repo.configs)
        self._serve()
        self.start_s = time.monotonic() - begin
        return self

    def _serve(self) -> None:
        self.server = self._make(self.root)
        try:
            self.server.start().wait_ready()
        finally:
            self._join_stopping()

    def apply(self, configs: Dict[str, object]) -> float:
        """Serve ``configs`` (a restart unless they already run); seconds it took."""
        if all(configs[m] == self.loaded.get(m) for m in configs):
            return 0.0
        begin = time.monotonic()
        self._stop_in_background()
        for model, config in configs.items():
            if config != self.loaded.get(model):
                self._write(model, config)
        try:
            self._serve()
            self._verify(configs)
        except ServerError as exc:
            self._stop_in_background()
            raise ApplyError(str(exc).splitlines()[0][:2000]) from None
        return time.monotonic() - begin

    def _write(self, model: str, config) -> None:
        from generator.tune.write import config_text

        self.loaded.pop(model, None)  # unknown until a server has run it
        (self.root / model / "config.pbtxt").write_text(config_text(config))

    def _verify(self, configs: Dict[str, object]) -> None:
        """The knobs Triton runs are the candidate's."""
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(self.server.endpoints.http, network_timeout=READ_TIMEOUT_S)
        try:
            served = {m: served_config(client, m) for m in configs}
        finally:
            client.close()
        want, got = read_knobs(self.repo, configs), read_knobs(self.repo, served)
        if want != got:
            raise ApplyError(f"the server runs {got} after starting on {want}")
        self.loaded = dict(configs)

    def recover(self) -> None:
        """Serve the repository's own configs again (after a candidate that failed)."""
        self.apply(dict(self.repo.configs))

    def _stop_in_background(self) -> None:
        self._join_stopping()
        server, self.server = self.server, None
        if server is not None:
            self._stopping = threading.Thread(target=server.stop, daemon=True)
            self._stopping.start()

    def _join_stopping(self) -> None:
        if self._stopping is not None:
            self._stopping.join()
            self._stopping = None

    def stop(self) -> None:
        self._stop_in_background()
        self._join_stopping()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
