"""``tritonforge generate``: ONNX detector -> Triton model repository for a target."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from generator.errors import UsageError
from generator.export.signature import DetectorSignature, read_signature
from generator.repository.render import render_template
from generator.repository.options import RepositoryOptions
from generator.repository.pipeline import ModelDir
from generator.repository.targets import Generation, Target, get_target
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


def target_options(target: Target, opts: RepositoryOptions) -> RepositoryOptions:
    """``opts`` as the target's options class: plain shared options are taken over (with
    the class's own defaults for the rest); options of another target are refused."""
    if isinstance(opts, target.options_class):
        return opts
    if type(opts) is RepositoryOptions:
        return target.options_class(**opts.values())
    raise UsageError(f"{type(opts).__name__} are not options of the {target.name!r} target "
                     f"(expected {target.options_class.__name__}; see options_for)")


def generate(onnx: Path, target: str, out: Path, opts: RepositoryOptions, force: bool = False) -> GeneratedRepository:
    """Write the repository; the destination is checked before any work starts."""
    chosen = get_target(target)
    opts = target_options(chosen, opts).validate()
    chosen.check_options(opts)
    out = Path(out)
    check_destination(out.absolute(), force)
    gen = chosen.prepare(Path(onnx), read_signature(Path(onnx)), opts)
    models = gen.models()
    root = {"tritonforge.json": gen.manifest(hashlib.sha256(gen.onnx.read_bytes()).hexdigest()).encode(),
            "README.md": readme(gen, models).encode(), **gen.root_files()}
    path = write_repository(out, models, root, force)
    steps = [f"cd {path} && {step}" for step in gen.serve_steps()]
    return GeneratedRepository(path, chosen.name, f"{gen.opts.name}_ensemble", [m.stage.name for m in models],
                               gen.sig, steps)


def readme(gen: Generation, models: List[ModelDir]) -> str:
    """The repository's README.md: what each model does, the request, how to serve it."""
    return render_template("repository_README.md.j2", target=gen.target, sig=gen.sig, opts=gen.opts,
                           models=[m.stage for m in models], serve_steps=gen.serve_steps())
