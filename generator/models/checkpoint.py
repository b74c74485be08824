"""Checkpoints that embed what is needed to rebuild the model: family, class names,
image size. Loaded with ``torch.load(weights_only=True)``: never arbitrary pickle."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from generator._lazy import require
from generator.errors import UsageError
from generator.models.registry import get_family

FORMAT = "tritonforge-checkpoint"
VERSION = 1


@dataclass
class Detector:
    """A model together with the facts that travel with it."""

    model: Any  # torch.nn.Module
    family: str
    names: List[str]
    imgsz: int
    options: Dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.names)


def default_names(num_classes: int) -> List[str]:
    return [f"class{i}" for i in range(num_classes)]


def build_detector(family: str, num_classes: int, imgsz: int, names: Optional[List[str]] = None,
                   seed: int = 0) -> Detector:
    """A randomly initialised (seeded) detector of a registered family."""
    torch = require("torch", "to build a detector")
    if num_classes < 1:
        raise UsageError(f"--num-classes must be >= 1, got {num_classes}")
    names = list(names) if names else default_names(num_classes)
    if len(names) != num_classes:
        raise UsageError(f"{len(names)} class names given for {num_classes} classes")
    torch.manual_seed(seed)
    model = get_family(family).build(num_classes=num_classes)
    return Detector(model=model, family=family, names=names, imgsz=imgsz)


def save_checkpoint(det: Detector, path: Path, extra: Optional[Dict[str, Any]] = None) -> None:
    """Write a checkpoint atomically (temporary file, then rename)."""
    torch = require("torch", "to save a checkpoint")
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "family": det.family,
        "names": list(det.names),
        "imgsz": int(det.imgsz),
        "options": dict(det.options),
        "state_dict": det.model.state_dict(),
        "extra": dict(extra or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> Detector:
    """Rebuild a detector from a checkpoint, with errors that name the file."""
    torch = require("torch", "to load a checkpoint")
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise UsageError(f"{path}: not a readable tritonforge checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UsageError(f"{path}: not a tritonforge checkpoint (missing format tag {FORMAT!r})")
    names = payload["names"]
    det = build_detector(payload["family"], len(names), payload["imgsz"], names)
    layout = payload.get("options", {}).get("pruned")
    try:
        if layout:  # structurally pruned: give the family's layers the stored shapes first
            from generator.compress.prune_layout import apply_layout

            apply_layout(det.model, layout)
        det.model.load_state_dict(payload["state_dict"])
    except (RuntimeError, UsageError) as exc:
        raise UsageError(f"{path}: weights do not fit family {payload['family']!r}: {exc}") from exc
    det.options = dict(payload.get("options", {}))
    return det


def resolve_model(spec: str, num_classes: int, imgsz: Optional[int]) -> Detector:
    """``spec`` is a checkpoint path or a family name (random weights)."""
    if spec.endswith((".pt", ".pth")) or Path(spec).is_file():
        det = load_checkpoint(Path(spec))
        if imgsz and imgsz != det.imgsz:
            det.imgsz = imgsz
        return det
    return build_detector(spec, num_classes, imgsz or 640)
