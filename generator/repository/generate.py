"""``tritonforge generate``: ONNX detector -> Triton model repository for a target."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Mapping, Optional

from generator.errors import UsageError
from generator.export.signature import DetectorSignature, read_signature
from generator.repository.batch import BatchDecision, settle_batch
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
    batch_note: str = ""  # what was done about a fixed batch axis ("" when nothing was)


# the batch note when a plan given to the generator bounds the batch (its build.json)
PLAN_BATCH = "the plan's own optimization profile (--plan)"


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


def generate(onnx: Path, target: str, out: Path, opts: RepositoryOptions, force: bool = False,
             reading: Optional[Mapping[str, object]] = None) -> GeneratedRepository:
    """Write the repository; the destination is checked before any work starts.

    ``reading``: keyword arguments of ``read_signature`` (``layout``, ``imgsz``, ``scores``,
    ``input_format``); ``opts.labels`` is passed on as its ``labels``.
    """
    chosen = get_target(target)
    opts = target_options(chosen, opts).validate()
    chosen.check_options(opts)
    out, onnx = Path(out), Path(onnx)
    check_destination(out.absolute(), force)
    sig = read_signature(onnx, labels=opts.labels, **dict(reading or {}))
    chosen.check_signature(onnx, sig, opts)
    sha256 = hashlib.sha256(onnx.read_bytes()).hexdigest()
    with tempfile.TemporaryDirectory(prefix="tritonforge-generate-") as work:
        decided = settle_batch(onnx, sig, opts, Path(work), pads=chosen.pads_fixed_batch) \
            if chosen.settles_batch(opts) else \
            BatchDecision(onnx, sig, opts, PLAN_BATCH, False)
        gen = chosen.prepare(decided.onnx, decided.sig, decided.opts)
        gen.batch_axis = decided.note
        chosen.check_signature(onnx, gen.sig, gen.opts)  # again: a plan's build.json may have changed them
        models = gen.models()
        root = {"tritonforge.json": gen.manifest(sha256).encode(), "README.md": readme(gen, models).encode(),
                **gen.root_files()}
        path = write_repository(out, models, root, force)
    steps = [f"cd {path} && {step}" for step in gen.serve_steps()]
    return GeneratedRepository(path, chosen.name, f"{gen.opts.name}_ensemble", [m.stage.name for m in models],
                               gen.sig, steps, decided.note if decided.changed else "")


def readme(gen: Generation, models: List[ModelDir]) -> str:
    """The repository's README.md: what each model does, the request, how to serve it."""
    return render_template("repository_README.md.j2", target=gen.target, sig=gen.sig, opts=gen.opts,
                           models=[m.stage for m in models], serve_steps=gen.serve_steps(),
                           outputs=", ".join(tensor_text(o) for o in gen.served.outputs), layout=gen.served.layout,
                           input_format=gen.sig.input_format.describe(), batch_axis=gen.batch_axis)


def tensor_text(spec) -> str:
    """An output as the README shows it, e.g. ``output0 [N, 7, 64] FP32`` in backticks (``?`` where dynamic)."""
    dims = ", ".join("?" if d < 0 else str(d) for d in spec.dims)
    return f"`{spec.name}` `[N, {dims}]` {spec.dtype}"
