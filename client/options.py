"""Validated client settings shared by the sync and async clients: address, model,
timeouts, retry policy, TLS, headers and transport."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

from client.admin import with_admin_key
from client.errors import ClientConfigError

_DEFAULT_PORT = {"grpc": 8001, "http": 8000}
_SCHEMES = {"http://": ("http", False), "https://": ("http", True), "grpc://": ("grpc", False),
            "grpcs://": ("grpc", True)}
TRANSPORTS = ("network", "shm", "cuda_shm")


def _scheme(url: str) -> Tuple[str, Optional[str], bool]:
    """``url`` without its scheme, the protocol the scheme names (or None) and whether it asks for TLS."""
    for prefix, (protocol, tls) in _SCHEMES.items():
        if url.startswith(prefix):
            return url[len(prefix):], protocol, tls
    return url, None, False


def default_protocol(url: str, protocol: Optional[str] = None) -> str:
    """``protocol`` if given, else the one the URL's scheme names, else gRPC."""
    return protocol or _scheme(url)[1] or "grpc"


def _split_url(url: str, protocol: str) -> Tuple[str, bool]:
    """``host:port`` (default port of ``protocol`` added) and whether the scheme asks for TLS."""
    rest, _, tls = _scheme(url)
    rest = rest.rstrip("/")
    if ":" not in rest.rsplit("]", 1)[-1]:
        rest = f"{rest}:{_DEFAULT_PORT[protocol]}"
    return rest, tls


@dataclass(frozen=True)
class TLSOptions:
    """Certificate files (PEM) for a TLS connection; ``insecure`` skips server verification."""

    root_certificates: Optional[str] = None
    private_key: Optional[str] = None
    certificate_chain: Optional[str] = None
    insecure: bool = False


@dataclass(frozen=True)
class ClientOptions:
    """Everything a client needs to know; built and checked by :func:`make_options`."""

    url: str  # host:port
    protocol: str
    model: str
    model_version: str = ""
    timeout: float = 60.0
    retries: int = 3
    backoff: float = 0.1
    backoff_max: float = 5.0
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # may hold credentials
    transport: str = "network"
    cuda_device: int = 0
    tls: Optional[TLSOptions] = None

    @property
    def where(self) -> str:
        """How errors name the server: ``"grpc server at host:8001"``."""
        return f"{self.protocol}{'s' if self.tls and self.protocol == 'grpc' else ''} server at {self.url}"

    @property
    def host_port(self) -> Tuple[str, int]:
        host, port = self.url.rsplit(":", 1)
        return host.strip("[]"), int(port)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (0-based): exponential backoff, capped, with jitter."""
        return min(self.backoff_max, self.backoff * (2 ** attempt)) * (0.5 + 0.5 * random.random())

    def wire_headers(self) -> Dict[str, str]:
        """Headers as sent: gRPC metadata keys must be lower case."""
        if self.protocol == "grpc":
            return {k.lower(): v for k, v in self.headers.items()}
        return dict(self.headers)


def _positive(name: str, value: float, minimum: float = 0, strict: bool = False) -> None:
    if value < minimum or (strict and value == minimum):
        raise ClientConfigError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value}")


def _tls_options(ssl: bool, root_certificates: Optional[str], private_key: Optional[str],
                 certificate_chain: Optional[str], insecure: bool) -> Optional[TLSOptions]:
    files = {"root_certificates": root_certificates, "private_key": private_key,
             "certificate_chain": certificate_chain}
    given = [name for name, value in files.items() if value] + (["insecure"] if insecure else [])
    if not ssl:
        if given:
            raise ClientConfigError(f"{', '.join(given)} given but TLS is off: use an https:// or grpcs:// URL or ssl=True")
        return None
    if bool(private_key) != bool(certificate_chain):
        raise ClientConfigError("mutual TLS needs both private_key and certificate_chain")
    for name, path in files.items():
        if path and not os.path.isfile(path):
            raise ClientConfigError(f"{name} file not found: {path}")
    return TLSOptions(*(os.fspath(p) if p else None for p in files.values()), insecure=insecure)


def _transport(transport: str, shared_memory: bool) -> str:
    if transport not in TRANSPORTS:
        raise ClientConfigError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    return "shm" if shared_memory and transport == "network" else transport


def make_options(url: str, protocol: Optional[str], model: str, model_version: str = "", timeout: float = 60.0,
                 retries: int = 3, backoff: float = 0.1, backoff_max: float = 5.0, ssl: Optional[bool] = None,
                 root_certificates: Optional[str] = None, private_key: Optional[str] = None,
                 certificate_chain: Optional[str] = None, insecure: bool = False,
                 headers: Optional[Mapping[str, str]] = None, transport: str = "network",
                 shared_memory: bool = False, cuda_device: int = 0, admin_key: Optional[str] = None) -> ClientOptions:
    """Check every setting, naming the one at fault; the protocol defaults to the URL's scheme, else gRPC.
    ``admin_key`` joins ``headers`` under the protocol's admin header (:mod:`client.admin`)."""
    _, scheme_protocol, scheme_tls = _scheme(url)
    protocol = default_protocol(url, protocol)
    if protocol not in _DEFAULT_PORT:
        raise ClientConfigError(f"protocol must be 'grpc' or 'http', got {protocol!r}")
    if scheme_protocol and scheme_protocol != protocol:
        raise ClientConfigError(f"url {url!r} names the {scheme_protocol} protocol but protocol={protocol!r}")
    if ssl is False and scheme_tls:
        raise ClientConfigError(f"url {url!r} asks for TLS but ssl=False")
    _positive("timeout", timeout, strict=True)
    _positive("retries", retries)
    _positive("backoff", backoff)
    _positive("backoff_max", backoff_max)
    address, _ = _split_url(url, protocol)
    tls = _tls_options(bool(ssl) or scheme_tls, root_certificates, private_key, certificate_chain, insecure)
    return ClientOptions(address, protocol, model, str(model_version), float(timeout), int(retries), float(backoff),
                         float(backoff_max), with_admin_key(headers or {}, protocol, admin_key),
                         _transport(transport, shared_memory),
                         int(cuda_device), tls)
