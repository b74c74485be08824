"""What each exporter stores in an ONNX file's ``metadata_props``, read into one shape.

A registry of readers, tried in order; the first that recognises the metadata reads
it. Each says which exporter wrote the file (``source``), and where it stores them:
class names, the input size it was exported at, the output layout its head produces,
whether its scores are probabilities, and the input pixel format.

- ``tritonforge``: ``tritonforge.names`` (JSON list), ``tritonforge.imgsz``,
  ``tritonforge.family``, optionally ``tritonforge.layout``.
- ``ultralytics`` (``author`` "Ultralytics"): ``names`` (``{0: 'person', ...}``),
  ``imgsz`` (``[640, 640]``, height then width), ``task``, ``head``, ``end2end``,
  ``args`` (the export arguments, with ``nms``), ``batch``, ``stride``.
- ``yolov5`` (``names`` and ``stride`` only): an objectness head.
- ``names``: any other file with a ``names`` entry (dict or list literal, or JSON).
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from generator.errors import UsageError
from generator.export.input_format import InputFormat

META_NAMES = "tritonforge.names"
META_IMGSZ = "tritonforge.imgsz"
META_FAMILY = "tritonforge.family"
META_LAYOUT = "tritonforge.layout"

Metadata = Dict[str, str]


@dataclass(frozen=True)
class ExporterMeta:
    """What an exporter's metadata says; None where it says nothing."""

    source: str = ""  # "tritonforge", "ultralytics", "yolov5", "names" or "" (no metadata we know)
    names: Optional[Tuple[str, ...]] = None
    imgsz: Optional[Tuple[int, int]] = None  # (height, width)
    layout: Optional[str] = None  # the layout the exporter's head produces, when it says
    layout_required: bool = False  # the metadata is certain: a layout that does not fit is an error
    scores: Optional[str] = None  # "probs" | "logits"
    input_format: Optional[InputFormat] = None
    family: str = ""
    detail: str = ""  # how error messages name what the metadata said, e.g. "head RTDETRDecoder"


Reader = Callable[[Metadata, str], Optional[ExporterMeta]]
_READERS: List[Tuple[str, Reader]] = []


def register_reader(name: str, reader: Reader) -> Reader:
    """Add a metadata reader (tried after the ones already registered); duplicates refused."""
    if any(n == name for n, _ in _READERS):
        raise ValueError(f"metadata reader {name!r} is already registered")
    _READERS.append((name, reader))
    return reader


def read_exporter_meta(meta: Metadata, where: str) -> ExporterMeta:
    """The first registered reader's answer for ``meta``; ``where`` (the file) names errors."""
    for _, reader in _READERS:
        found = reader(meta, where)
        if found is not None:
            return found
    return ExporterMeta()


def literal(value: str):
    """A Python or JSON literal stored as text (Ultralytics writes ``str(value)``); None if unreadable."""
    for parse in (ast.literal_eval, json.loads):
        try:
            return parse(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return None


def parse_names(value: str, key: str, where: str) -> Tuple[str, ...]:
    """``{0: 'a', 1: 'b'}`` or ``['a', 'b']`` -> ('a', 'b'); UsageError naming the key otherwise."""
    parsed = literal(value)
    if isinstance(parsed, dict):
        try:
            keys = sorted(int(k) for k in parsed)
        except (TypeError, ValueError):
            keys = None
        if keys == list(range(len(parsed))):
            return tuple(str(parsed[k] if k in parsed else parsed[str(k)]) for k in keys)
    elif isinstance(parsed, (list, tuple)):
        return tuple(str(n) for n in parsed)
    raise UsageError(f"{where}: metadata {key!r} is not a list of class names or a {{0: name, ...}} "
                     f"dict: {value[:80]!r}")


def parse_imgsz_meta(value: str, key: str, where: str) -> Tuple[int, int]:
    """``[384, 640]``, ``(640, 640)``, ``640`` or ``"384,640"`` -> (height, width)."""
    parsed = literal(value)
    if isinstance(parsed, int):
        parsed = [parsed, parsed]
    if isinstance(parsed, (list, tuple)) and len(parsed) == 1:
        parsed = [parsed[0], parsed[0]]
    if (isinstance(parsed, (list, tuple)) and len(parsed) == 2
            and all(isinstance(v, int) and v > 0 for v in parsed)):
        return int(parsed[0]), int(parsed[1])
    raise UsageError(f"{where}: metadata {key!r} is not an image size (H, W): {value[:80]!r}")


def _tritonforge(meta: Metadata, where: str) -> Optional[ExporterMeta]:
    # only the keys our export writes: a quantized foreign model carries tritonforge.quantization
    # beside its exporter's own metadata, which must still be read
    if not any(k in meta for k in (META_NAMES, META_IMGSZ, META_FAMILY, META_LAYOUT)):
        return None
    names = parse_names(meta[META_NAMES], META_NAMES, where) if META_NAMES in meta else None
    imgsz = parse_imgsz_meta(meta[META_IMGSZ], META_IMGSZ, where) if META_IMGSZ in meta else None
    # our own families always export the anchor-free head
    layout = meta.get(META_LAYOUT) or ("anchor-free" if META_FAMILY in meta else None)
    return ExporterMeta(source="tritonforge", names=names, imgsz=imgsz, layout=layout, input_format=InputFormat(),
                        family=meta.get(META_FAMILY, ""), detail=f"{META_LAYOUT} {layout}" if layout else "")


def _ultralytics_layout(meta: Metadata) -> Tuple[Optional[str], bool, str]:
    """(layout, required, detail) from Ultralytics' ``head``, ``end2end`` and export ``args``."""
    head = meta.get("head", "")
    if head == "RTDETRDecoder":
        return "detr", True, "head RTDETRDecoder"
    args = literal(meta.get("args", "")) or {}
    if meta.get("end2end") == "True":
        return "end-to-end", False, "end2end True"
    if isinstance(args, dict) and args.get("nms") is True:
        return "end-to-end", False, "exported with nms=True"
    if head in ("Detect", "YOLOEDetect", "WorldDetect"):
        return "anchor-free", False, f"head {head}"
    if head == "v10Detect":
        return "end-to-end", False, "head v10Detect"
    return None, False, ""


def _ultralytics(meta: Metadata, where: str) -> Optional[ExporterMeta]:
    if meta.get("author") != "Ultralytics":
        return None
    task = meta.get("task", "detect")
    if task != "detect":
        raise UsageError(f"{where}: an Ultralytics {task!r} model; only 'detect' models are supported")
    layout, required, detail = _ultralytics_layout(meta)
    return ExporterMeta(
        source="ultralytics",
        names=parse_names(meta["names"], "names", where) if "names" in meta else None,
        imgsz=parse_imgsz_meta(meta["imgsz"], "imgsz", where) if "imgsz" in meta else None,
        layout=layout, layout_required=required, detail=f"Ultralytics metadata: {detail}" if detail else "",
        scores="probs", input_format=InputFormat(),  # sigmoid in the graph; RGB 0..1, letterbox 114
    )


def _yolov5(meta: Metadata, where: str) -> Optional[ExporterMeta]:
    if set(meta) != {"names", "stride"}:
        return None
    return ExporterMeta(source="yolov5", names=parse_names(meta["names"], "names", where), layout="objectness",
                        scores="probs", input_format=InputFormat(), detail="YOLOv5 metadata (names, stride)")


def _names_only(meta: Metadata, where: str) -> Optional[ExporterMeta]:
    if "names" not in meta:
        return None
    try:  # an unknown exporter: names in a form we do not read are left out, not an error
        names = parse_names(meta["names"], "names", where)
    except UsageError:
        return None
    return ExporterMeta(source="names", names=names)


register_reader("tritonforge", _tritonforge)
register_reader("ultralytics", _ultralytics)
register_reader("yolov5", _yolov5)
register_reader("names", _names_only)
