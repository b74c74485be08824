"""Output layouts: how a detector's raw outputs decode into candidate boxes.

A registry of layout classes keyed by name; ``get_layout(name, **options)`` makes a new
configured instance (options: ``height``, ``width``, ``scores``; see ``base.Layout``). One
layout serves the in-server postprocess (``boxes.postprocess``), offline evaluation and the
checks made when a detector is read or exported, so served and offline results agree.
Built-ins are registered here; a new layout is one module beside ``anchor_free.py`` plus
one line below.
"""

from __future__ import annotations

from typing import Dict, List, Type

from .anchor_free import AnchorFree
from .base import Candidates, Layout, LayoutMismatch, OutputShape
from .detr import Detr
from .efficient_nms import EfficientNMS
from .end_to_end import EndToEnd
from .objectness import Objectness

__all__ = ["Candidates", "DEFAULT_LAYOUT", "Layout", "LayoutMismatch", "OutputShape",
           "get_layout", "layout_names", "register_layout"]

DEFAULT_LAYOUT = "anchor-free"
OPTIONS = ("height", "width", "scores")  # what every layout accepts (and may ignore)

_LAYOUTS: Dict[str, Type[Layout]] = {}


def register_layout(cls: Type[Layout]) -> Type[Layout]:
    """Add the layout class ``cls`` under ``cls.name``; a second one with the same name is refused.
    Returns ``cls`` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Layout)):
        raise TypeError(f"register_layout takes a Layout subclass, not {cls!r}")
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _LAYOUTS:
        raise ValueError(f"output layout {cls.name!r} is already registered ({_LAYOUTS[cls.name].__name__})")
    _LAYOUTS[cls.name] = cls
    return cls


def get_layout(name: str, **options) -> Layout:
    """A new instance of the layout registered as ``name``, configured with ``options``
    (``height``, ``width``, ``scores``); ValueError naming the known layouts otherwise."""
    try:
        cls = _LAYOUTS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown output layout {name!r}; known layouts: {', '.join(layout_names())}") from None
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"layout {name}: unknown option(s) {', '.join(unknown)}; options are {', '.join(OPTIONS)}")
    return cls(**options)


def layout_names() -> List[str]:
    """The registered layout names, sorted."""
    return sorted(_LAYOUTS)


for _cls in (AnchorFree, Objectness, EndToEnd, EfficientNMS, Detr):
    register_layout(_cls)
