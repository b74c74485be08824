"""Exceptions raised by the client SDK, and the one place that maps tritonclient,
gRPC, HTTP and socket exceptions onto them (shared by the sync and async clients).

Only :class:`ServerUnavailableError` and its subclasses are *retryable*: the request
did not reach a working server (connection refused or reset, gRPC ``UNAVAILABLE``,
HTTP 503, the model unloading during a shutdown), so sending it again is safe. Bad
input, timeouts, refused credentials and certificate failures are not.
"""

from __future__ import annotations

import socket
import ssl
from typing import Tuple


class DetectionClientError(Exception):
    """Base class of every SDK error."""

    retryable = False


class ClientConfigError(DetectionClientError, ValueError):
    """A client setting that cannot work (named in the message, with what is allowed)."""


class ServerUnavailableError(DetectionClientError):
    """The server cannot be reached (wrong address, not started, restarting, network down)."""

    retryable = True


class RegistrationLostError(ServerUnavailableError):
    """The server no longer knows a shared-memory region of this client (it restarted)."""


class ModelNotFoundError(DetectionClientError):
    """The server answers but does not serve the requested model (or it is not ready)."""


class ModelUnavailableError(ServerUnavailableError, ModelNotFoundError):
    """The server knows the model but has no version loaded right now (it is loading or
    unloading, e.g. while the server shuts down): retryable."""


class InferenceError(DetectionClientError):
    """The server refused or failed a request; the message is the server's."""


class InvalidImageError(DetectionClientError, ValueError):
    """An input the client cannot send as an image (unknown type, missing file, bad array)."""


class RequestTimeoutError(DetectionClientError, TimeoutError):
    """A call took longer than its timeout (the server may still be working on it)."""


class PermissionDeniedError(DetectionClientError):
    """The server (or a proxy) refused the credentials: missing or wrong headers, 401/403."""


class TLSError(DetectionClientError):
    """The TLS handshake failed, typically because the server certificate is not trusted."""


# exception class names (anywhere in the MRO) that mean "the connection broke"
_CONNECTION_CLASSES = frozenset({"ClientConnectionError", "ServerDisconnectedError", "HTTPConnectionClosed"})
_TLS_CLASSES = frozenset({"ClientConnectorCertificateError", "SSLCertVerificationError"})
_TLS_MARKERS = ("CERTIFICATE_VERIFY_FAILED", "Tls handshake failed", "WRONG_VERSION_NUMBER")
_DENIED = frozenset({"StatusCode.UNAUTHENTICATED", "StatusCode.PERMISSION_DENIED", "401", "403"})
_TLS_HINT = ("pass root_certificates= with the CA that signed the server certificate, "
             "or insecure=True to skip verification (testing only)")


def _denied_hint(lowered: str) -> str:
    """How to pass the key a protected tritonforge server asks for (its header is named in the message)."""
    from client.admin import ADMIN_HEADER  # here: client.admin imports this module

    if ADMIN_HEADER not in lowered:
        return ""
    return ("; this is an admin API of a protected server: pass its admin key as admin_key= "
            "(`tritonforge serve` prints the key when it generates one)")


def _mro_names(exc: BaseException) -> set:
    return {cls.__name__ for cls in type(exc).__mro__}


def _status_message(exc: BaseException) -> Tuple[str, str]:
    status = getattr(exc, "status", None)
    message = getattr(exc, "message", None)
    status_text = str(status() if callable(status) else status or "")
    return status_text, str((message() if callable(message) else message) or exc)


def translate(exc: BaseException, where: str, what: str, model: str) -> DetectionClientError:
    """The SDK error for an exception raised by tritonclient (any protocol, sync or async).

    ``where`` names the server (``"grpc server at host:port"``), ``what`` the call.
    """
    if isinstance(exc, DetectionClientError):
        return exc
    names = _mro_names(exc)
    status, message = _status_message(exc)
    if isinstance(exc, ssl.SSLCertVerificationError) or names & _TLS_CLASSES or any(m in message for m in _TLS_MARKERS):
        return TLSError(f"TLS handshake with {where} failed: {message}; {_TLS_HINT}")
    if isinstance(exc, (TimeoutError, socket.timeout)) or "TimeoutError" in names or "DEADLINE_EXCEEDED" in status:
        return RequestTimeoutError(f"{what} on {where} timed out: {message or type(exc).__name__}")
    if "InferenceServerException" in names:
        return _server_error(status, message, where, what, model)
    if isinstance(exc, OSError) or names & _CONNECTION_CLASSES:
        return ServerUnavailableError(f"{where} is unreachable: {message or type(exc).__name__}")
    return InferenceError(f"{what} failed on {where}: {type(exc).__name__}: {message}")


def _server_error(status: str, message: str, where: str, what: str, model: str) -> DetectionClientError:
    lowered = message.lower()
    # Triton answers a restricted protocol without its header with UNAVAILABLE: not worth retrying
    if "is restricted, expecting header" in lowered or status in _DENIED:
        return PermissionDeniedError(f"{what} refused by {where}: {message}{_denied_hint(lowered)}")
    if "UNAVAILABLE" in status or status == "503" or "failed to connect" in lowered:
        return ServerUnavailableError(f"{where} is unavailable: {message}")
    if "shared memory region" in lowered and "unable to open" in lowered:
        return InferenceError(f"{what} failed on {where}: {message}; system shared memory needs the client on the "
                              "server's host (containers: share /dev/shm and the IPC namespace)")
    if "shared memory region" in lowered and "unable to find" in lowered:
        return RegistrationLostError(f"{where} lost a shared-memory registration: {message}")
    if "has no available versions" in lowered:
        return ModelUnavailableError(f"{where}: model {model!r} has no version loaded (loading or unloading): "
                                     f"{message}")
    if "unknown model" in lowered or "NOT_FOUND" in status or status == "404":
        return ModelNotFoundError(f"{where}: model {model!r} not found: {message}")
    return InferenceError(f"{what} failed on {where}: {message}")
