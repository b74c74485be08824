"""Reader for Ultralytics-style YOLO datasets (data YAML + images/ + labels/ folders).

Conventions followed (and where they differ, why):

* ``path`` in the YAML is the dataset root; relative roots are relative to the YAML's
  folder (Ultralytics resolves them against its datasets dir, which makes a YAML
  depend on global settings; ours stays self-contained). No ``path`` = the YAML's folder.
* ``train``/``val``/``test`` are folders (searched recursively), ``.txt`` lists of image
  paths (relative lines are relative to the list's folder), or a list of those.
* The label of ``.../images/.../x.jpg`` is ``.../labels/.../x.txt`` (the last
  ``/images/`` replaced, Ultralytics' rule). A missing label file = no objects.
* Label lines are exactly ``class cx cy w h`` (normalized). Segment polygons are
  refused rather than silently converted.
* Text files (labels, ``.txt`` lists) are UTF-8 with or without a byte-order mark, and
  exact duplicate label lines count once, as in Ultralytics.

Checked against Ultralytics 8.4 (``tests/interop``); deliberate differences: ``path``
and bare relative ``.txt`` lines resolve against the YAML's / list's folder (Ultralytics:
the working directory, then its datasets folder; ``./`` lines agree); a box whose corners
leave the image by more than ``COORD_TOLERANCE`` is refused (Ultralytics bounds only the
``cx cy w h`` values, to 1.01, and clips); polygon labels are refused (Ultralytics takes
their bounding box).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import List, Tuple

import numpy as np

from generator._lazy import require
from generator.data.folder import image_files
from generator.data.imagesize import image_size
from generator.data.records import DetectionData, Sample
from generator.errors import UsageError

# normalized coordinates may overshoot 0..1 by this much (float rounding in converters)
COORD_TOLERANCE = 1e-3
YAML_NAMES = ("data.yaml", "data.yml")


def load_yolo(data: Path, split: str) -> DetectionData:
    """Read split ``split`` of the dataset described by a data YAML (or a folder holding one)."""
    yaml_path = find_data_yaml(Path(data))
    cfg = read_yaml(yaml_path)
    names = parse_names(cfg, yaml_path)
    root = dataset_root(cfg, yaml_path)
    images = split_images(cfg, split, root, yaml_path)
    samples = [load_sample(img, root, len(names)) for img in images]
    return DetectionData(names, samples, f"yolo:{yaml_path}:{split}")


def find_data_yaml(data: Path) -> Path:
    """``data`` itself, or ``data/data.yaml`` when it is a folder."""
    if data.is_dir():
        for name in YAML_NAMES:
            if (data / name).is_file():
                return (data / name).absolute()
        raise UsageError(f"{data}: folder has no data.yaml")
    if not data.is_file():
        raise UsageError(f"data YAML not found: {data}")
    return data.absolute()


def read_yaml(path: Path) -> dict:
    """Parse the data YAML; errors name the file and line."""
    yaml = require("yaml", "to read YOLO data YAML files")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read data YAML: {exc}") from exc
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise UsageError(f"{where}: malformed YAML: {getattr(exc, 'problem', None) or exc}") from exc
    if not isinstance(cfg, dict):
        raise UsageError(f"{path}: expected a mapping with train/val/names keys, got {type(cfg).__name__}")
    return cfg


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _names_from_mapping(names: dict, path: Path) -> List[str]:
    """``{0: a, 1: b}`` -> ``[a, b]``; the ids must be exactly 0..n-1."""
    try:
        ids = sorted(int(k) for k in names)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{path}: names keys must be class ids 0..n-1, got {list(names)}") from exc
    if ids != list(range(len(names))):
        raise UsageError(f"{path}: names ids must be 0..{len(names) - 1} without gaps, got {ids}")
    by_id = {int(k): str(v) for k, v in names.items()}
    return [by_id[i] for i in ids]


def parse_names(cfg: dict, path: Path) -> List[str]:
    """Class names from ``names`` (list or id mapping), checked against ``nc``."""
    names, nc = cfg.get("names"), cfg.get("nc")
    if nc is not None and (not _is_int(nc) or nc < 1):
        raise UsageError(f"{path}: nc must be a positive integer, got {nc!r}")
    if names is None:
        if nc is None:
            raise UsageError(f"{path}: needs 'names' (a list or a {{id: name}} mapping)")
        return [f"class{i}" for i in range(nc)]
    if isinstance(names, dict):
        result = _names_from_mapping(names, path)
    elif isinstance(names, list):
        result = [str(n) for n in names]
    else:
        raise UsageError(f"{path}: names must be a list or a {{id: name}} mapping, got {type(names).__name__}")
    if not result:
        raise UsageError(f"{path}: names is empty")
    if nc is not None and nc != len(result):
        raise UsageError(f"{path}: nc is {nc} but names has {len(result)} entries")
    return result


def dataset_root(cfg: dict, path: Path) -> Path:
    """The folder split entries are relative to."""
    value = cfg.get("path")
    root = path.parent if value in (None, "") else Path(str(value))
    if not root.is_absolute():
        root = path.parent / root
    if not root.is_dir():
        raise UsageError(f"{path}: path {value!r} is not a folder (resolved to {root})")
    return root


def split_images(cfg: dict, split: str, root: Path, path: Path) -> List[Path]:
    """Image paths of one split, in a stable order."""
    entry = cfg.get(split)
    if entry in (None, ""):
        raise UsageError(f"{path}: no '{split}' entry (expected a folder or a .txt list of images)")
    images: List[Path] = []
    for item in entry if isinstance(entry, list) else [entry]:
        target = Path(str(item))
        target = target if target.is_absolute() else root / target
        if target.is_dir():
            found = image_files(target)
            if not found:
                raise UsageError(f"{path}: {split}: no images found under {target}")
        elif target.is_file() and target.suffix == ".txt":
            found = _read_image_list(target)
        else:
            raise UsageError(f"{path}: {split}: {item} does not exist (looked for {target})")
        images.extend(found)
    if not images:
        raise UsageError(f"{path}: {split}: no images found under {root}")
    return images


def _read_image_list(txt: Path) -> List[Path]:
    """A ``.txt`` split: one image path per line, relative lines relative to the list's folder."""
    try:
        lines = txt.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{txt}: cannot read image list: {exc}") from exc
    images = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        p = Path(line.strip())
        p = p if p.is_absolute() else txt.parent / p
        if not p.is_file():
            raise UsageError(f"{txt}:{lineno}: image not found: {line.strip()}")
        images.append(p)
    if not images:
        raise UsageError(f"{txt}: no images found under the list (file is empty)")
    return images


def label_path(image: Path) -> Path:
    """Ultralytics' rule: last ``/images/`` -> ``/labels/``, suffix -> ``.txt``."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(sb.join(str(image).rsplit(sa, 1))).with_suffix(".txt")


def shown_path(path: Path, root: Path) -> str:
    """``path`` relative to the dataset root when it is inside it (short, readable messages)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def load_sample(image: Path, root: Path, nc: int) -> Sample:
    """Image size from its header + validated labels scaled to pixels."""
    width, height = image_size(image, shown_path(image, root))
    label = label_path(image)
    boxes, classes = read_label_file(label, shown_path(label, root), nc)
    boxes *= np.array([width, height, width, height], dtype=np.float32)
    return Sample(image, boxes, classes, width, height)


def read_label_file(label: Path, shown: str, nc: int) -> Tuple[np.ndarray, np.ndarray]:
    """Normalized xyxy boxes (clipped to 0..1) and classes; a missing file is an empty image."""
    if not label.exists():
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)
    try:
        text = label.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{shown}: cannot read label file: {exc}") from exc
    rows = [parse_label_line(line, f"{shown}:{n}", nc) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    rows = list(dict.fromkeys(rows))  # exact duplicates once (Ultralytics' rule), first-seen order kept
    if not rows:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)
    classes = np.array([r[0] for r in rows], dtype=np.int64)
    boxes = np.clip(np.array([r[1:] for r in rows], dtype=np.float32), 0.0, 1.0)
    return boxes, classes


def parse_label_line(line: str, where: str, nc: int) -> Tuple[int, float, float, float, float]:
    """``class cx cy w h`` -> ``(class, x1, y1, x2, y2)`` normalized; UsageError at ``where``."""
    fields = line.split()
    if len(fields) != 5:
        raise UsageError(f"{where}: expected 5 fields 'class cx cy w h', got {len(fields)}")
    try:
        values = [float(v) for v in fields]
    except ValueError:
        bad = next(v for v in fields if not _is_float(v))
        raise UsageError(f"{where}: non-numeric field {bad!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise UsageError(f"{where}: non-finite value in {line.strip()!r}")
    cls, cx, cy, w, h = values
    if cls != int(cls):
        raise UsageError(f"{where}: class id {fields[0]} is not an integer")
    if cls < 0:
        raise UsageError(f"{where}: class id {int(cls)} < 0")
    if cls >= nc:
        raise UsageError(f"{where}: class id {int(cls)} >= nc {nc}")
    if w <= 0 or h <= 0:
        raise UsageError(f"{where}: box has zero or negative size (w={fields[3]}, h={fields[4]})")
    x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    if min(x1, y1) < -COORD_TOLERANCE or max(x2, y2) > 1 + COORD_TOLERANCE:
        raise UsageError(f"{where}: box outside the image (x1={x1:.4f} y1={y1:.4f} x2={x2:.4f} y2={y2:.4f}, "
                         "normalized coordinates must lie in 0..1)")
    return int(cls), x1, y1, x2, y2


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
