"""Triton's admin APIs behind a key: the restricted-protocol options of its HTTP and gRPC
endpoints. Inference, health, metadata and model-config stay open; the model repository,
shared-memory, statistics, trace and logging APIs need the key in a header.

Measured on the bundled tritonserver 2.51: the option format is ``<apis>:<header>=<key>``
(its ``--help`` shows a comma instead of the colon, which it does not parse); HTTP
compares the header name case-insensitively and answers 403 without it; gRPC looks for
the metadata key ``triton-grpc-protocol-<header>`` (Triton adds the prefix) and answers
UNAVAILABLE "This protocol is restricted" without it. So the header differs by protocol:
``ADMIN_HEADER`` over HTTP, ``GRPC_ADMIN_HEADER`` over gRPC (the client SDK sends the right
one from ``admin_key=``).
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import List, Optional, Tuple

from generator.errors import UsageError

ADMIN_HEADER = "tritonforge-admin-key"  # lower case: gRPC metadata keys must be
GRPC_ADMIN_HEADER = "triton-grpc-protocol-" + ADMIN_HEADER  # the name Triton's gRPC endpoint checks
RESTRICTED = ("model-repository", "shared-memory", "statistics", "trace", "logging")
ENV_KEY = "TRITONFORGE_ADMIN_KEY"
MIN_KEY_LENGTH = 16


def restricted_args(key: str) -> List[str]:
    """tritonserver options that refuse the ``RESTRICTED`` APIs without the key in its header."""
    apis = ",".join(RESTRICTED)
    return [f"--http-restricted-api={apis}:{ADMIN_HEADER}={key}",
            f"--grpc-restricted-protocol={apis}:{ADMIN_HEADER}={key}"]


def header_for(protocol: str) -> str:
    """The header (gRPC: metadata key) that carries the key over ``protocol``."""
    return GRPC_ADMIN_HEADER if protocol == "grpc" else ADMIN_HEADER


def check_key(key: str, option: str = "--admin-key") -> str:
    """``key`` if it can travel in an HTTP header and gRPC metadata and is long enough."""
    if len(key) < MIN_KEY_LENGTH:
        raise UsageError(f"{option} must be at least {MIN_KEY_LENGTH} characters, got {len(key)}; "
                         f"leave it out to have a strong one generated")
    if not all("!" <= ch <= "~" for ch in key):
        raise UsageError(f"{option} may hold only printable ASCII characters without spaces "
                         "(it travels in an HTTP header and in gRPC metadata)")
    return key


def generate_key() -> str:
    """A strong random key (256 bits, URL-safe characters)."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; any other name or address (``0.0.0.0``
    and ``::`` included) may be reachable from other machines."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def admin_key_for(host: str, given: Optional[str],
                  option: str = f"--admin-key (or {ENV_KEY})") -> Tuple[Optional[str], bool]:
    """(key, generated): ``given`` (checked) if any; a new key when ``host`` is not loopback;
    else (None, False): a loopback server without a key keeps its admin APIs open."""
    if given is not None:
        return check_key(given, option), False
    if is_loopback(host):
        return None, False
    return generate_key(), True


def admin_notes(key: Optional[str], generated: bool, http: str) -> List[str]:
    """What ``serve`` prints once the server is ready: how clients pass the key, and the key
    itself only when it was generated (printed this once, nowhere else)."""
    if key is None:
        return []
    shown = key if generated else "<key>"
    lines = [f"Admin APIs ({', '.join(RESTRICTED)}) need the admin key; inference, health, metadata and "
             "model config do not."]
    if generated:
        lines.append(f"  generated admin key (shown once; choose your own with --admin-key or {ENV_KEY}): {key}")
    return lines + [f"  HTTP header    {ADMIN_HEADER}: {shown}",
                    f"  gRPC metadata  {GRPC_ADMIN_HEADER}: {shown}",
                    f"  client SDK     DetectionClient(url, admin_key=\"{shown}\")",
                    f"  curl           curl -X POST -H '{ADMIN_HEADER}: {shown}' http://{http}/v2/repository/index"]
