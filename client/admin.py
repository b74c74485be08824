"""The admin key of a protected server (``tritonforge serve --admin-key``): Triton then
refuses its model-repository, shared-memory, statistics, trace and logging APIs without
the key in a header, whose name depends on the protocol (Triton's gRPC endpoint adds the
prefix ``triton-grpc-protocol-`` to the name it was given). Inference, health, metadata
and model config need no key; the shared-memory transports register regions, so they do.

The names repeat ``generator.serve.admin`` (the SDK never imports ``generator``); a test
holds them equal.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional

from client.errors import ClientConfigError

ADMIN_HEADER = "tritonforge-admin-key"
GRPC_ADMIN_HEADER = "triton-grpc-protocol-" + ADMIN_HEADER
_NAMES = (ADMIN_HEADER, GRPC_ADMIN_HEADER)


def header_for(protocol: str) -> str:
    """The header (gRPC: metadata key) that carries the admin key over ``protocol``."""
    return GRPC_ADMIN_HEADER if protocol == "grpc" else ADMIN_HEADER


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise ClientConfigError(f"admin_key must be a non-empty string, got {key!r}")
    if not all("!" <= ch <= "~" for ch in key):
        raise ClientConfigError("admin_key may hold only printable ASCII characters without spaces")
    return key


def with_admin_key(headers: Mapping[str, str], protocol: str, key: Optional[str]) -> Dict[str, str]:
    """``headers`` plus the admin key under the protocol's header name; refuses ``headers``
    that already carry an admin key with another value."""
    if key is None:
        return dict(headers)
    key = _check_key(key)
    merged: Dict[str, str] = {}
    for name, value in headers.items():
        if name.lower() not in _NAMES:
            merged[name] = value
        elif value != key:
            raise ClientConfigError(f"headers[{name!r}] and admin_key give different admin keys: give it once, "
                                    "as admin_key=")
    merged[header_for(protocol)] = key
    return merged
