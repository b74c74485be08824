"""``tritonforge generate``: ONNX detector -> Triton model repository for a target."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from generator.errors import UsageError
from generator.export.signature import DetectorSignature, read_signature
from generator.repository.render import render_template
from generator.repository.targets import GenerateOptions, get_target
from generator.repository.writer import check_destination, write_repository


@dataclass
class GeneratedRepository:
    path: Path
    target: str
    ensemble: str
    models: List[str]
    signature: DetectorSignature
    next_steps: List[str]


def read_labels(path: Optional[Path]) -> Optional[List[str]]:
    """One class name per line; blank lines are not allowed in the middle."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"labels file not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise UsageError(f"{path}:{number}: empty class name")
    return [line.strip() for line in lines]


def generate(onnx: Path, target: str, out: Path, opts: GenerateOptions, force: bool = False) -> GeneratedRepository:
    """Write the repository; the destination is checked before any work starts."""
    opts.validate()
    chosen = get_target(target)
    chosen.check_options(opts)
    out = Path(out)
    check_destination(out.absolute(), force)
    sig = read_signature(Path(onnx))
    opts = chosen.resolve(Path(onnx), opts)
    models = chosen.models(Path(onnx), sig, opts)
    sha = hashlib.sha256(Path(onnx).read_bytes()).hexdigest()
    readme = render_template(
        "repository_README.md.j2", target=chosen, sig=sig, opts=opts, models=[m.stage for m in models],
    )
    root = {"tritonforge.json": chosen.manifest(Path(onnx), sig, opts, sha).encode(), "README.md": readme.encode(),
            **chosen.root_files(Path(onnx), sig, opts)}
    path = write_repository(out, models, root, force)
    steps = [f"cd {path} && {step}" for step in chosen.serve_steps(opts)]
    return GeneratedRepository(path, chosen.name, f"{opts.name}_ensemble", [m.stage.name for m in models], sig, steps)
