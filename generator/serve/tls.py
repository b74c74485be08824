"""gRPC TLS through Triton's own SSL options (``--grpc-use-ssl``, ``--grpc-use-ssl-mutual``,
``--grpc-server-cert``, ``--grpc-server-key``, ``--grpc-root-cert``). The files are checked
before the server starts, so a wrong path fails at once, naming the option and the file.
HTTP stays plain (the bundled server has no HTTPS; put a TLS proxy in front of it)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

from generator.errors import UsageError

PathLike = Union[str, "os.PathLike[str]"]
# what each file must hold: (text found in its PEM armour, what to call it)
_CERT, _KEY = ("-----BEGIN CERTIFICATE-----", "certificate"), ("PRIVATE KEY-----", "private key")
_KINDS = {"--grpc-tls-cert": _CERT, "--grpc-tls-key": _KEY, "--grpc-tls-root": _CERT}


@dataclass(frozen=True)
class GrpcTLS:
    """PEM files of the gRPC endpoint; ``root`` (the CA of client certificates) turns on mutual TLS."""

    cert: Path
    key: Path
    root: Optional[Path] = None

    @property
    def mutual(self) -> bool:
        return self.root is not None

    def args(self) -> List[str]:
        """tritonserver options for this TLS setting."""
        args = [f"--grpc-server-cert={self.cert}", f"--grpc-server-key={self.key}"]
        if self.mutual:
            return ["--grpc-use-ssl-mutual=true", *args, f"--grpc-root-cert={self.root}"]
        return ["--grpc-use-ssl=true", *args]


def _pem_file(path: PathLike, option: str) -> Path:
    """``path`` made absolute, once it is a readable PEM file of the kind ``option`` needs."""
    file = Path(path).absolute()
    if not file.is_file():
        raise UsageError(f"{option}: {'not a file' if file.exists() else 'file not found'}: {file}")
    try:
        text = file.read_text(errors="replace")
    except OSError as exc:
        raise UsageError(f"{option}: cannot read {file}: {exc.strerror}") from exc
    marker, what = _KINDS[option]
    if marker not in text:
        raise UsageError(f"{option}: {file} is not a PEM file holding a {what}")
    return file


def grpc_tls(cert: Optional[PathLike], key: Optional[PathLike], root: Optional[PathLike] = None) -> Optional[GrpcTLS]:
    """The checked TLS setting, or None when no option is given."""
    if cert is None and key is None and root is None:
        return None
    if cert is None or key is None:
        missing = [name for name, value in (("--grpc-tls-cert", cert), ("--grpc-tls-key", key)) if value is None]
        raise UsageError(f"gRPC TLS needs {' and '.join(missing)} too (the server certificate and its private key)")
    return GrpcTLS(_pem_file(cert, "--grpc-tls-cert"), _pem_file(key, "--grpc-tls-key"),
                   _pem_file(root, "--grpc-tls-root") if root is not None else None)
