"""Registry of detector families; third parties register through the
``tritonforge.models`` entry-point group or a ``package.module:factory`` path."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable, Dict, Union

from generator.errors import UsageError

# factory(num_classes: int, **options) -> torch.nn.Module following the output contract,
# or "package.module:attr" naming one (resolved on first use, so that listing families
# does not import torch)
Factory = Union[Callable[..., object], str]


@dataclass(frozen=True)
class Family:
    name: str
    factory: Factory
    description: str = ""

    def build(self, num_classes: int, **options):
        """Instantiate the family's model."""
        factory = _resolve(self.factory) if isinstance(self.factory, str) else self.factory
        return factory(num_classes=num_classes, **options)


def _resolve(path: str) -> Callable[..., object]:
    module, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot import model factory {path!r}: {exc}") from exc


_FAMILIES: Dict[str, Family] = {}
_ENTRY_POINTS_LOADED = False


def register_family(name: str, factory: Factory, description: str = "") -> None:
    """Register a detector family; a second registration of the same name is an error."""
    if name in _FAMILIES:
        raise ValueError(f"model family {name!r} is already registered")
    _FAMILIES[name] = Family(name, factory, description)


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in entry_points(group="tritonforge.models"):
        if ep.name not in _FAMILIES:
            register_family(ep.name, ep.load(), f"from {ep.value}")


def families() -> Dict[str, Family]:
    """All registered families, built-in ones first."""
    _load_entry_points()
    return dict(_FAMILIES)


def get_family(name: str) -> Family:
    """Look a family up by name, or import ``package.module:factory``."""
    known = families()
    if name in known:
        return known[name]
    if ":" in name:
        return Family(name, _resolve(name), f"user factory {name}")
    raise UsageError(
        f"unknown model family {name!r}; known: {', '.join(sorted(known))} "
        "(or give package.module:factory)"
    )


# built-in families, as lazy "module:factory" paths so that listing them imports no torch
register_family("yolo-n", "generator.models.yolo:yolo_n", "anchor-free YOLO, C3 blocks, width 0.25 depth 0.33")
register_family("yolo-s", "generator.models.yolo:yolo_s", "anchor-free YOLO, C3 blocks, width 0.50 depth 0.33")
register_family("yolo-m", "generator.models.yolo:yolo_m", "anchor-free YOLO, C3 blocks, width 0.75 depth 0.67")
register_family("yolo-n-c3f", "generator.models.yolo:yolo_n_c3f",
                "yolo-n with fused CSP blocks (C3F, BottleneckCSP layout)")
register_family("mobilenetv3", "generator.models.mobilenetv3:mobilenetv3",
                "MobileNetV3-Small backbone (reduced tail), PAN neck 64/96/128, YOLO head")
register_family("shufflenetv2", "generator.models.shufflenetv2:shufflenetv2",
                "ShuffleNetV2 1.0x backbone, yolo-n's PAN neck and head")
