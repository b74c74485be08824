"""Checkpoints that embed what is needed to rebuild the model: family, class names,
image size. Loaded with ``torch.load(weights_only=True)``: never arbitrary pickle."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from generator._lazy import require
from generator.atomic import atomic_path
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
    """Write a checkpoint atomically (``generator.atomic``: a hidden temporary, then rename)."""
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
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path) -> Detector:
    """Rebuild a detector from a checkpoint, with errors that name the file."""
    torch = require("torch", "to load a checkpoint")
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise _load_error(path, exc) from exc
    _check_payload(payload, path)
    names = payload["names"]
    det = build_detector(payload["family"], len(names), payload["imgsz"], names)
    layout = payload.get("options", {}).get("pruned")
    try:
        if layout:  # structurally pruned: give the family's layers the stored shapes first
            from generator.compress.prune_layout import apply_layout

            apply_layout(det.model, layout)
        det.model.load_state_dict(payload["state_dict"])
    except (RuntimeError, UsageError) as exc:
        raise UsageError(f"{path}: weights do not fit family {payload['family']!r}: {_first_lines(str(exc))}") from exc
    det.options = dict(payload.get("options", {}))
    return det


def _first_lines(text: str, lines: int = 3, width: int = 240) -> str:
    """Torch's messages can list hundreds of keys: the start of each of the first lines."""
    kept = [line if len(line) <= width else line[:width] + " ..." for line in text.strip().splitlines()[:lines]]
    return " / ".join(line.strip() for line in kept)


def _load_error(path: Path, exc: Exception) -> UsageError:
    """A short message for a file ``torch.load(weights_only=True)`` refused. Never suggests
    ``weights_only=False`` (torch's own message does): that would run the file's code."""
    text = str(exc)
    code = re.search(r"GLOBAL\s+([\w.]+)", text)
    if code:
        return UsageError(f"{path}: not a readable tritonforge checkpoint: refused, loading it would import "
                          f"{code.group(1).rstrip('.')}, which no checkpoint needs (it could run code); "
                          "tritonforge loads weights only")
    if "zip archive" in text or "central directory" in text or isinstance(exc, EOFError) or "Ran out of input" in text:
        return UsageError(f"{path}: not a readable tritonforge checkpoint: truncated or corrupt "
                          f"({_first_lines(text, 1, 120)})")
    detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    why = detail.group(1).strip() if detail else _first_lines(text, 1, 160)
    return UsageError(f"{path}: not a readable tritonforge checkpoint (not weights-only torch data: {why})")


def _check_payload(payload: Any, path: Path) -> None:
    """The fields :func:`save_checkpoint` writes, with the types it writes."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UsageError(f"{path}: not a tritonforge checkpoint (missing format tag {FORMAT!r})")
    if not isinstance(payload.get("version"), int) or payload["version"] > VERSION:
        raise UsageError(f"{path}: checkpoint format version {payload.get('version')!r}; this tritonforge reads "
                         f"up to {VERSION}")
    names = payload.get("names")
    checks = [
        (isinstance(names, list) and names and all(isinstance(n, str) for n in names),
         "'names' must be a non-empty list of strings"),
        (isinstance(payload.get("family"), str), "'family' must be a string"),
        (isinstance(payload.get("imgsz"), int) and payload["imgsz"] > 0, "'imgsz' must be a positive integer"),
        (isinstance(payload.get("state_dict"), dict), "'state_dict' must be a dictionary of tensors"),
        (isinstance(payload.get("options", {}), dict), "'options' must be a dictionary"),
    ]
    problems = [message for ok, message in checks if not ok]
    if problems:
        raise UsageError(f"{path}: damaged tritonforge checkpoint: {'; '.join(problems)}")


def resolve_model(spec: str, num_classes: int, imgsz: Optional[int]) -> Detector:
    """``spec`` is a checkpoint path or a family name (random weights)."""
    if spec.endswith((".pt", ".pth")) or Path(spec).is_file():
        det = load_checkpoint(Path(spec))
        if imgsz and imgsz != det.imgsz:
            det.imgsz = imgsz
        return det
    return build_detector(spec, num_classes, imgsz or 640)
