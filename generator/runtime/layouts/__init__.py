"""Output layouts: how a detector's raw outputs decode into candidate boxes.

A registry keyed by name. One layout object serves the in-server postprocess
(``boxes.postprocess``), offline evaluation and the checks made when a detector is
read or exported, so served and offline results agree. Built-ins are registered here;
a new layout is one module beside ``anchor_free.py`` plus one line below.
"""

from __future__ import annotations

from typing import Dict, List

from .anchor_free import AnchorFree
from .base import Candidates, Layout, LayoutMismatch, OutputShape

__all__ = ["Candidates", "DEFAULT_LAYOUT", "Layout", "LayoutMismatch", "OutputShape",
           "get_layout", "layout_names", "register_layout"]

DEFAULT_LAYOUT = "anchor-free"

_LAYOUTS: Dict[str, Layout] = {}


def register_layout(layout: Layout) -> Layout:
    """Add ``layout`` under ``layout.name``; a second layout with the same name is refused."""
    if not layout.name:
        raise ValueError(f"{layout!r} has no name")
    if layout.name in _LAYOUTS:
        raise ValueError(f"output layout {layout.name!r} is already registered ({_LAYOUTS[layout.name]!r})")
    _LAYOUTS[layout.name] = layout
    return layout


def get_layout(name: str) -> Layout:
    """The layout registered as ``name``; ValueError naming the known ones otherwise."""
    try:
        return _LAYOUTS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown output layout {name!r}; known layouts: {', '.join(layout_names())}") from None


def layout_names() -> List[str]:
    """The registered layout names, sorted."""
    return sorted(_LAYOUTS)


register_layout(AnchorFree())
