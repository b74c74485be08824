"""What the CPU targets (``embedded``, ``cpu``) share: ``--runtime`` (ONNX Runtime, OpenVINO,
OpenVINO bf16, TorchScript, or ``auto``, measured here) and ``--torchscript``.

The TensorRT targets do not know these options, so ``options_for`` refuses them there,
naming the targets that do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

from generator.errors import UsageError
from generator.export.signature import DetectorSignature
from generator.repository.options import RuntimeOptions
from generator.repository.targets.base import Generation, Target

DEFAULT_RUNTIME = "onnxruntime"
# what each runtime is called in stage comments and the README
RUNTIME_TITLES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO", "openvino-bf16": "OpenVINO (bfloat16)",
                  "torchscript": "TorchScript (libtorch)"}


@dataclass
class RuntimeGeneration(Generation):
    """A generation with its detector runtime settled (``auto`` measured once, in ``prepare``)."""

    runtime: str = DEFAULT_RUNTIME
    choice: Optional[dict] = None  # auto's figures

    @property
    def torchscript(self) -> Optional[Path]:
        return self.opts.torchscript

    @property
    def title(self) -> str:
        return RUNTIME_TITLES[self.runtime]


def torchscript_for(onnx: Path, opts: RuntimeOptions) -> Optional[Path]:
    """The TorchScript file of this generation: ``--torchscript``, else the ONNX's sibling
    ``<stem>.torchscript`` (for ``auto`` only if it exists). A missing file that
    ``--runtime torchscript`` (or a given ``--torchscript``) needs is a UsageError."""
    from generator.export.torchscript import EXPORT_COMMAND, torchscript_path

    if opts.runtime not in ("torchscript", "auto"):
        return None
    path = Path(opts.torchscript) if opts.torchscript is not None else torchscript_path(onnx)
    if path.is_file():
        return path
    if opts.runtime == "auto" and opts.torchscript is None:
        return None
    raise UsageError(f"--torchscript {path}: file not found; --runtime {opts.runtime} needs the detector traced "
                     f"to TorchScript: {EXPORT_COMMAND.replace('MODEL.onnx', str(onnx))}")


class RuntimeTarget(Target):
    """A CPU target whose detector runs on the runtime ``--runtime`` names."""

    options_class = RuntimeOptions
    uint8_handoff = True  # unless --handoff float

    def check_signature(self, onnx: Path, sig: DetectorSignature, opts: RuntimeOptions) -> None:
        """Also settle the TorchScript file from the user's ONNX path (before any work)."""
        super().check_signature(onnx, sig, opts)
        if opts.runtime in ("torchscript", "auto"):
            opts.torchscript = torchscript_for(onnx, opts)  # idempotent: called again after prepare

    def prepare(self, onnx: Path, sig: DetectorSignature, opts: RuntimeOptions) -> RuntimeGeneration:
        runtime, choice = opts.runtime or DEFAULT_RUNTIME, None
        if runtime == "auto":
            from generator.repository.runtime_choice import choose_runtime

            choice = choose_runtime(onnx, sig, opts.max_batch_size, torchscript=opts.torchscript)
            runtime = choice["chosen"]
        return RuntimeGeneration(self, Path(onnx), sig, opts, runtime=runtime, choice=choice)

    def manifest_extra(self, gen: RuntimeGeneration) -> dict:
        """``runtime``: what runs the detector (only when ``--runtime`` was given, so default
        repositories stay as they were), with auto's figures."""
        if gen.opts.runtime is None:
            return {}
        entry: Dict[str, object] = {"chosen": gen.runtime, "requested": gen.opts.runtime}
        if gen.runtime == "torchscript":
            entry["torchscript"] = Path(gen.torchscript).name
        if gen.choice is not None:
            entry.update(candidates=gen.choice["candidates"], how=gen.choice["how"])
        return {"runtime": entry}

    def torchscript_source(self, gen: RuntimeGeneration) -> Union[Path, bytes]:
        """The TorchScript file to ship; for the uint8 hand-off (``Generation.handoff``), wrapped so
        it does the input format itself, as the folded ONNX does."""
        if gen.handoff != "UINT8":
            return Path(gen.torchscript)
        from generator.export.torchscript import fold_input_format

        return fold_input_format(Path(gen.torchscript), gen.sig.input_format)
