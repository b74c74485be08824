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

from generator.errors import UsageError
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
    batch_axis: str = ""  # what the generator did about the batch axis (generator.repository.batch)

    @property
    def handoff(self) -> str:
        """The data type of the image the preprocess hands the detector: ``UINT8`` where the
        target folds the input format into the detector graph (a quarter of the bytes of
        float32), else the detector's own float input type."""
        if self.target.uint8_handoff and getattr(self.opts, "handoff", "uint8") == "uint8":
            return "UINT8"
        return self.sig.input_dtype

    def detector_onnx(self) -> FileSource:
        """The detector's ``model.onnx`` as the repository ships it: with the input format
        folded into the graph for the uint8 hand-off, else the ONNX itself."""
        if self.handoff != "UINT8":
            return self.onnx
        from generator.export.uint8_input import folded_bytes

        return folded_bytes(self.onnx, self.sig.input_format)

    @property
    def served(self) -> DetectorSignature:
        """The signature of what the detector stage answers (a TensorRT plan with NMS inside
        answers EfficientNMS's outputs, not the ONNX's)."""
        return self.sig

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
            "handoff": self.handoff,
            "backends": sorted(self.target.backends), "source_onnx": {"file": self.onnx.name, "sha256": sha256},
            "signature": {**asdict(self.sig), "names": list(self.sig.names)}, "options": self.opts.describe(),
            "batch_axis": self.batch_axis, "postprocess_layout": self.served.layout,
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
    pads_fixed_batch = False  # whether the detector stage pads batches to a graph's fixed batch
    runs_trt_plugins = False  # whether its detector runtime runs TensorRT-only nodes (EfficientNMS_TRT)
    uint8_handoff = False  # whether the detector graph takes uint8 pixels (Generation.detector_onnx)

    def check_options(self, opts: RepositoryOptions) -> None:
        """Refuse combinations of options this target cannot honour (after ``opts.validate``)."""

    def check_signature(self, onnx: Path, sig: DetectorSignature, opts: RepositoryOptions) -> None:
        """Refuse a detector this target cannot serve (before anything is written): a graph with
        TensorRT-only nodes needs a target whose runtime is TensorRT."""
        if sig.has_trt_plugin and not self.runs_trt_plugins:
            from generator.repository.targets.registry import targets

            able = sorted(t.name for t in targets().values() if t.runs_trt_plugins)
            raise UsageError(f"{onnx} contains TensorRT's EfficientNMS_TRT node, which only TensorRT runs: "
                             f"use {' or '.join(f'--target {name}' for name in able)}")

    def settles_batch(self, opts: RepositoryOptions) -> bool:
        """Whether the ONNX's batch axis decides the batch (``generator.repository.batch``);
        False where something else bounds it (a plan built elsewhere)."""
        return True

    def prepare(self, onnx: Path, sig: DetectorSignature, opts: RepositoryOptions) -> Generation:
        """Read what this generation needs, once; a subclass may return a richer Generation."""
        return Generation(self, Path(onnx), sig, opts)

    def detector(self, gen: Generation) -> ModelDir:
        """The detector's model folder."""
        raise NotImplementedError(f"target {self.name!r} does not define its detector stage")

    def models(self, gen: Generation) -> List[ModelDir]:
        return [preprocess_model(gen.sig, gen.opts, dtype=gen.handoff), self.detector(gen),
                postprocess_model(gen.served, gen.opts), ensemble_model(gen.served, gen.opts)]

    def root_files(self, gen: Generation) -> Dict[str, FileSource]:
        return {}

    def serve_steps(self, gen: Generation) -> List[str]:
        return ["tritonforge serve ."]

    def manifest_extra(self, gen: Generation) -> dict:
        """Target-specific entries of ``tritonforge.json``."""
        return {}
