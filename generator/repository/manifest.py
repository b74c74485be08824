"""Reading a generated repository's ``tritonforge.json`` (what ``generate`` wrote, from what):
the commands that work on a repository (``deploy``, ``tune``) refuse a folder without it,
naming the file, before doing anything else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from generator.errors import UsageError

MANIFEST = "tritonforge.json"


def read_manifest(path: Path, required: Sequence[str]) -> dict:
    """The manifest of the repository at ``path``, with every entry of ``required``."""
    path = Path(path)
    file = path / MANIFEST
    if not path.is_dir():
        raise UsageError(f"model repository not found: {path}")
    if not file.is_file():
        raise UsageError(f"{file} not found: {path} is not a repository written by `tritonforge generate` "
                         f"(no {MANIFEST})")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{file}: not valid JSON ({exc})") from None
    missing = [k for k in required if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        raise UsageError(f"{file}: missing {', '.join(missing)}; regenerate the repository with "
                         "`tritonforge generate`")
    return manifest
