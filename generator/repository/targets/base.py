"""What a target is: how the detector stage runs, with which options.

A :class:`Target` is a stateless entry of the registry. ``prepare`` reads what one
generation needs (a plan, the ONNX's quantization) once and returns a
:class:`Generation`, which produces the model folders, the root files, the manifest
and the serve steps from it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Type

from generator.export.signature import DetectorSignature
from generator.repository.options import RepositoryOptions
from generator.repository.pipeline import (
    FileSource, ModelDir, ensemble_model, postprocess_model, preprocess_model,
)


@dataclass
class Generation:
    """One generation: the target, its inputs and the options every file is made from."""

    target: "Target"
    onnx: Path
    sig: DetectorSignature
    opts: RepositoryOptions

    def models(self) -> List[ModelDir]:
        """All model folders: preprocess, detector, postprocess, ensemble."""
        return self.target.models(self)

    def root_files(self) -> Dict[str, FileSource]:
        """Extra files at the repository root (scripts, requirements)."""
        return self.target.root_files(self)

    def serve_steps(self) -> List[str]:
        """Shell commands, run in the repository folder, that serve it."""
        return self.target.serve_steps(self)

    def manifest(self, sha256: str) -> str:
        """``tritonforge.json`` at the repository root: what was generated, from what."""
        from generator import __version__

        info = {
            "tritonforge": __version__, "target": self.target.name, "ensemble": f"{self.opts.name}_ensemble",
            "backends": sorted(self.target.backends), "source_onnx": {"file": self.onnx.name, "sha256": sha256},
            "signature": {**asdict(self.sig), "names": list(self.sig.names)}, "options": self.opts.describe(),
            **self.target.manifest_extra(self),
        }
        return json.dumps(info, indent=2, sort_keys=True) + "\n"


class Target:
    """Base class: a subclass says how the detector stage runs (``detector``)."""

    name = ""
    description = ""
    backends: frozenset = frozenset({"python"})  # Triton backends the repository needs
    options_class: Type[RepositoryOptions] = RepositoryOptions  # the options this target understands
    defaults: Dict[str, object] = {}  # option defaults of this target over the options class's own
    refused: Dict[str, str] = {}  # option field -> why this target refuses it (more helpful than "unknown")

    def check_options(self, opts: RepositoryOptions) -> None:
        """Refuse combinations of options this target cannot honour (after ``opts.validate``)."""

    def prepare(self, onnx: Path, sig: DetectorSignature, opts: RepositoryOptions) -> Generation:
        """Read what this generation needs, once; a subclass may return a richer Generation."""
        return Generation(self, Path(onnx), sig, opts)

    def detector(self, gen: Generation) -> ModelDir:
        """The detector's model folder."""
        raise NotImplementedError(f"target {self.name!r} does not define its detector stage")

    def models(self, gen: Generation) -> List[ModelDir]:
        return [preprocess_model(gen.sig, gen.opts), self.detector(gen),
                postprocess_model(gen.sig, gen.opts), ensemble_model(gen.sig, gen.opts)]

    def root_files(self, gen: Generation) -> Dict[str, FileSource]:
        return {}

    def serve_steps(self, gen: Generation) -> List[str]:
        return ["tritonforge serve ."]

    def manifest_extra(self, gen: Generation) -> dict:
        """Target-specific entries of ``tritonforge.json``."""
        return {}
