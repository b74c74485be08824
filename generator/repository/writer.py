"""Write a repository atomically: everything goes into a temporary sibling folder,
which replaces the destination (``generator.atomic.atomic_dir``) only once it is complete."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Dict, List

from generator.atomic import atomic_dir
from generator.errors import UsageError
from generator.repository.pipeline import FileSource, ModelDir
from generator.repository.render import render_config


def check_destination(out: Path, force: bool) -> None:
    """Refuse a non-empty destination unless ``force``; refuse files and missing parents."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(f"--out {out} exists and is not empty; pass --force to replace it")
    if not out.parent.is_dir():
        raise UsageError(f"parent folder of --out does not exist: {out.parent}")


def _put(dest: Path, source: FileSource) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, bytes):
        dest.write_bytes(source)
    else:
        shutil.copyfile(source, dest)


def write_repository(out: Path, models: List[ModelDir], root_files: Dict[str, FileSource], force: bool) -> Path:
    """Render every config (validated by Triton's schema) first, then assemble and swap in."""
    out = Path(out).absolute()
    check_destination(out, force)
    rendered = {m.stage.name: render_config(m.stage) for m in models}  # fails before anything is written
    if len(rendered) != len(models):
        raise UsageError("two models of the repository have the same name")
    with atomic_dir(out) as tmp:
        for model in models:
            folder = tmp / model.stage.name
            _put(folder / "config.pbtxt", rendered[model.stage.name].encode())
            for rel, source in sorted(model.files.items()):
                _put(folder / rel, source)
        for rel, source in sorted(root_files.items()):
            _put(tmp / rel, source)
            if rel.endswith(".sh"):
                os.chmod(tmp / rel, 0o755)
    return out
