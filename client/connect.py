"""Constructor arguments of the four tritonclient clients (gRPC / HTTP, sync / asyncio)
for one :class:`ClientOptions`: TLS credentials, timeouts, and gRPC channel settings
that let a client find a restarted server quickly."""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
from typing import Any, Callable, Dict, Optional, Tuple

from client.options import ClientOptions, TLSOptions

_MAX_MESSAGE = 2 ** 31 - 1  # what tritonclient sets by default


def _read(path: Optional[str]) -> Optional[bytes]:
    if not path:
        return None
    with open(path, "rb") as fh:
        return fh.read()


def system_ca_file() -> Optional[str]:
    """The system CA bundle (OpenSSL's default file), when there is one."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


def fetch_server_certificate(host: str, port: int, timeout: float, tls: Optional[TLSOptions] = None) -> bytes:
    """The PEM certificate a TLS server presents, fetched *without* verifying it (with
    the client certificate, if any: a mutual-TLS server may refuse the handshake otherwise)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if tls is not None and tls.certificate_chain:
        context.load_cert_chain(tls.certificate_chain, tls.private_key)
    context.set_alpn_protocols(["h2"])  # gRPC servers insist on HTTP/2
    with socket.create_connection((host, port), timeout=timeout) as sock:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    return ssl.DER_cert_to_PEM_cert(der).encode()


def certificate_name(pem: bytes) -> Optional[str]:
    """A DNS name (or the common name) the certificate is issued to, to check it against."""
    with tempfile.NamedTemporaryFile(suffix=".pem") as fh:
        fh.write(pem)
        fh.flush()
        try:  # CPython's decoder; no public API reads a certificate without a third-party package
            decoded = ssl._ssl._test_decode_cert(fh.name)  # type: ignore[attr-defined]
        except (AttributeError, ssl.SSLError, ValueError):
            return None
    for kind, value in decoded.get("subjectAltName", ()):
        if kind == "DNS":
            return value
    for rdn in decoded.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


def _grpc_channel_args(options: ClientOptions, name_override: Optional[str]) -> list:
    from tritonclient.grpc import KeepAliveOptions

    keepalive = KeepAliveOptions()
    args = [("grpc.max_send_message_length", _MAX_MESSAGE), ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
            ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
            # reconnect soon after a server restart instead of gRPC's default (up to 120 s)
            ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", max(100, int(options.backoff_max * 1000)))]
    if name_override:
        args.append(("grpc.ssl_target_name_override", name_override))
    return args


def _grpc_root_and_name(options: ClientOptions, tls: TLSOptions) -> Tuple[Optional[bytes], Optional[str]]:
    if tls.insecure:
        # gRPC cannot switch verification off: trust whatever certificate the server presents
        pem = fetch_server_certificate(*options.host_port, timeout=options.timeout, tls=tls)
        return pem, certificate_name(pem)
    return _read(tls.root_certificates or system_ca_file()), None


def grpc_kwargs(options: ClientOptions) -> Dict[str, Any]:
    """Keyword arguments of ``tritonclient.grpc[.aio].InferenceServerClient``."""
    kwargs: Dict[str, Any] = {"url": options.url}
    name = None
    if options.tls is not None:
        import grpc

        root, name = _grpc_root_and_name(options, options.tls)
        kwargs["creds"] = grpc.ssl_channel_credentials(
            root_certificates=root, private_key=_read(options.tls.private_key),
            certificate_chain=_read(options.tls.certificate_chain))
    kwargs["channel_args"] = _grpc_channel_args(options, name)
    return kwargs


def ssl_context(tls: TLSOptions, factory: Callable[..., ssl.SSLContext] = ssl.create_default_context) -> ssl.SSLContext:
    """An SSL context for HTTPS: the given CA (else the system CAs), client certificate, verification."""
    context = factory(cafile=tls.root_certificates) if tls.root_certificates else factory()
    if tls.certificate_chain:
        context.load_cert_chain(tls.certificate_chain, tls.private_key)
    if tls.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def http_kwargs(options: ClientOptions, timeout: float) -> Dict[str, Any]:
    """Keyword arguments of ``tritonclient.http.InferenceServerClient`` (timeouts fixed per client)."""
    kwargs: Dict[str, Any] = {"url": options.url, "connection_timeout": timeout, "network_timeout": timeout}
    if options.tls is not None:
        import gevent.ssl

        tls = options.tls
        context = ssl_context(tls, gevent.ssl.create_default_context)
        # geventhttpclient's own ``insecure`` only turns off the host name check: hand it a context
        kwargs.update(ssl=True, insecure=tls.insecure, ssl_context_factory=lambda **_: context)
    return kwargs


def http_aio_kwargs(options: ClientOptions) -> Dict[str, Any]:
    """Keyword arguments of ``tritonclient.http.aio.InferenceServerClient``."""
    # no session-wide limit: the async client bounds each call with its own timeout
    kwargs: Dict[str, Any] = {"url": options.url, "conn_timeout": None}
    if options.tls is not None:
        kwargs.update(ssl=True, ssl_context=ssl_context(options.tls))
    return kwargs
