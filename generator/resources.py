"""Where the templates and the in-server runtime code are, in a checkout or installed."""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def templates_dir() -> Path:
    """The ``templates/`` folder (installed as the package data ``generator.templates``)."""
    source = Path(__file__).resolve().parents[1] / "templates"
    if (source / "config").is_dir():
        return source
    return Path(str(importlib.resources.files("generator.templates")))


def runtime_file(name: str) -> Path:
    """A module of ``generator/runtime`` that is copied verbatim into repositories."""
    path = Path(__file__).resolve().parent / "runtime" / name
    if not path.is_file():
        raise FileNotFoundError(f"runtime module missing from the installation: {path}")
    return path
