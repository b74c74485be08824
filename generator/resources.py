"""Where the templates and the in-server runtime code are, in a checkout or installed."""

from __future__ import annotations

from pathlib import Path


def templates_dir() -> Path:
    """The ``templates/`` folder (installed as the package data ``generator.templates``)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):  # installed, then checkout
        if (candidate / "config").is_dir():
            return candidate
    raise FileNotFoundError(f"tritonforge templates are missing from the installation near {here}")


def runtime_file(name: str) -> Path:
    """A module of ``generator/runtime`` that is copied verbatim into repositories."""
    path = Path(__file__).resolve().parent / "runtime" / name
    if not path.is_file():
        raise FileNotFoundError(f"runtime module missing from the installation: {path}")
    return path
