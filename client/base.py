"""Settings common to :class:`DetectionClient` and :class:`AsyncDetectionClient`."""

from __future__ import annotations

import os
from typing import Mapping, Optional, Union

from client.core import Core
from client.detection import FrameResult
from client.errors import ClientConfigError
from client.options import ClientOptions, make_options

PathLike = Union[str, "os.PathLike[str]"]


def _option(name: str, doc: str) -> property:
    return property(lambda self: getattr(self.options, name), doc=doc)


class BaseClient:
    """Connection settings of a tritonforge detection client (sync or async).

    Args:
        url: ``host:port``, optionally with a scheme: ``grpc://``, ``grpcs://`` (TLS),
            ``http://``, ``https://`` (TLS). Default ports: 8001 gRPC, 8000 HTTP.
        protocol: ``"grpc"`` or ``"http"``; default: the URL's scheme, else gRPC.
        model: the ensemble's name. ``model_version``: pin a version (``"1"``); "" = the server's choice.
        timeout: default seconds per call (each attempt); methods take ``timeout=`` too.
        retries: how many times a call is sent again after the server was unreachable or
            unavailable (never after a bad input or a timeout); ``backoff``: first wait in
            seconds, doubled each retry up to ``backoff_max``, with random jitter.
        ssl: use TLS (also implied by ``https://``/``grpcs://``). The server certificate is
            verified against ``root_certificates`` (a PEM file) or the system CAs;
            ``insecure=True`` skips that (testing only). ``private_key`` and
            ``certificate_chain`` (PEM files) present a client certificate (mutual TLS).
        headers: sent with every call (e.g. ``{"Authorization": "Bearer ..."}``; gRPC
            metadata keys are sent in lower case).
        admin_key: the key of a server started with ``tritonforge serve --admin-key`` (or
            off loopback, where serve prints a generated one): sent in the admin header
            (:mod:`client.admin`). Inference needs none; the ``shm``/``cuda_shm`` transports
            register shared memory, an admin API, so they need it on such a server.
        transport: ``"network"`` (default), ``"shm"`` (system shared memory, client and
            server on one host; same as ``shared_memory=True``) or ``"cuda_shm"`` (CUDA
            shared memory on GPU ``cuda_device``; needs a GPU and cuda-python).
    """

    def __init__(self, url: str = "localhost:8001", protocol: Optional[str] = None,
                 model: str = "detector_ensemble", model_version: str = "", timeout: float = 60.0, *,
                 retries: int = 3, backoff: float = 0.1, backoff_max: float = 5.0, ssl: Optional[bool] = None,
                 root_certificates: Optional[PathLike] = None, private_key: Optional[PathLike] = None,
                 certificate_chain: Optional[PathLike] = None, insecure: bool = False,
                 headers: Optional[Mapping[str, str]] = None, transport: str = "network",
                 shared_memory: bool = False, cuda_device: int = 0, admin_key: Optional[str] = None):
        self.options: ClientOptions = make_options(
            url, protocol, model, model_version, timeout, retries, backoff, backoff_max, ssl,
            _path(root_certificates), _path(private_key), _path(certificate_chain), insecure, headers,
            transport, shared_memory, cuda_device, admin_key)
        self._core = Core(self.options)
        self._init_connections()

    def _init_connections(self) -> None:
        """Set up where the tritonclient clients will live (they are made on first use)."""
        raise NotImplementedError

    url = _option("url", "``host:port`` of the server")
    protocol = _option("protocol", "``grpc`` or ``http``")
    model = _option("model", "the ensemble's name")
    model_version = _option("model_version", "the pinned version, or \"\"")
    timeout = _option("timeout", "default seconds per call")
    transport = _option("transport", "``network``, ``shm`` or ``cuda_shm``")

    def __repr__(self) -> str:
        o = self.options
        return (f"{type(self).__name__}({o.where!r}, model={o.model!r}, version={o.model_version!r}, "
                f"transport={o.transport!r})")


def _path(value: Optional[PathLike]) -> Optional[str]:
    return os.fspath(value) if value is not None else None


def check_in_flight(in_flight: int) -> None:
    if in_flight < 1:
        raise ClientConfigError(f"in_flight must be >= 1, got {in_flight}")


def settle(result: FrameResult, raise_errors: bool) -> FrameResult:
    """``result``, or its error raised when the caller asked for ``raise_errors``."""
    if raise_errors and result.error is not None:
        raise result.error
    return result
