"""Locate the tritonserver shipped in the nvidia-pytriton wheel and make it runnable:
the Python backend folder needs the stub built for the running interpreter beside
``libtriton_python.so``, and the wheel's own shared libraries on the library path."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from generator._lazy import require
from generator.errors import MissingDependencyError, ServerError

BUNDLED_BACKENDS = frozenset({"python"})


@dataclass(frozen=True)
class ServerInstall:
    """A tritonserver binary, its backend folder and the environment it needs."""

    binary: Path
    backend_dir: Optional[Path]
    env: Dict[str, str]
    backends: Optional[frozenset]  # None: unknown (a server we did not prepare)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tritonforge"


def bundled_server() -> ServerInstall:
    """The nvidia-pytriton server, with a backend folder prepared once in the cache."""
    pytriton = require("pytriton", "for the bundled Triton server")
    root = Path(pytriton.__file__).parent / "tritonserver"
    binary = root / "bin" / "tritonserver"
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = root / "python_backend_stubs" / py / "triton_python_backend_stub"
    if not binary.is_file():
        raise MissingDependencyError(f"nvidia-pytriton has no tritonserver binary at {binary}")
    if not stub.is_file():
        raise MissingDependencyError(f"nvidia-pytriton has no Python backend stub for Python {py} ({stub})")
    libs = Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"
    version = getattr(pytriton, "__version__", "unknown")
    backend_dir = _prepare_backends(root / "backends", stub, cache_root() / f"pytriton-{version}-py{py}")
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(libs), env.get("LD_LIBRARY_PATH", "")) if p)
    # the stub finds its Python (and so numpy, OpenCV, ONNX Runtime) through PATH
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    return ServerInstall(binary, backend_dir, env, BUNDLED_BACKENDS)


def _prepare_backends(src: Path, stub: Path, dest_root: Path) -> Path:
    backends = dest_root / "backends"
    if (backends / "python" / "triton_python_backend_stub").is_file():
        return backends
    dest_root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".backends-", dir=dest_root.parent))
    try:
        shutil.copytree(src, tmp / "backends", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(stub, tmp / "backends" / "python" / "triton_python_backend_stub")
        dest_root.mkdir(exist_ok=True)
        try:
            os.rename(tmp / "backends", backends)
        except OSError:
            if not (backends / "python" / "triton_python_backend_stub").is_file():
                raise ServerError(f"cannot prepare the Python backend folder in {backends}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return backends


def external_server(binary: str, backend_dir: Optional[str]) -> ServerInstall:
    """A tritonserver given by path (or name on PATH), e.g. from the official container."""
    found = shutil.which(binary) if os.sep not in binary else binary
    if not found or not Path(found).is_file():
        raise ServerError(f"tritonserver not found: {binary}")
    bdir = Path(backend_dir) if backend_dir else Path("/opt/tritonserver/backends")
    backends = frozenset(p.name for p in bdir.iterdir() if p.is_dir()) if bdir.is_dir() else None
    return ServerInstall(Path(found), bdir if bdir.is_dir() else None, dict(os.environ), backends)
