"""One validated config object per Triton stage kind. Errors name the field and what
is allowed; rendering only ever sees validated values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from generator.errors import ConfigError
from generator.repository.names import check_model_name, check_tensor_name

DATA_TYPES = ("TYPE_BOOL", "TYPE_UINT8", "TYPE_INT32", "TYPE_INT64", "TYPE_FP16", "TYPE_FP32", "TYPE_STRING")
INSTANCE_KINDS = ("KIND_CPU", "KIND_GPU", "KIND_MODEL")


@dataclass(frozen=True)
class Tensor:
    name: str
    data_type: str
    dims: Tuple[int, ...]

    def validate(self, where: str) -> None:
        check_tensor_name(self.name)
        if self.data_type not in DATA_TYPES:
            raise ConfigError(f"{where}: data_type must be one of {', '.join(DATA_TYPES)}, got {self.data_type!r}")
        if not self.dims or any(not isinstance(d, int) or (d < 1 and d != -1) for d in self.dims):
            raise ConfigError(f"{where}: dims must be positive integers (or -1), got {list(self.dims)}")


@dataclass(frozen=True)
class DynamicBatching:
    preferred_batch_sizes: Tuple[int, ...]
    max_queue_delay_us: int = 1000

    def validate(self, where: str, max_batch_size: int) -> None:
        for size in self.preferred_batch_sizes:
            if not 1 <= size <= max_batch_size:
                raise ConfigError(
                    f"{where}: preferred_batch_size must be within 1..max_batch_size ({max_batch_size}), got {size}"
                )
        if self.max_queue_delay_us < 0:
            raise ConfigError(f"{where}: max_queue_delay_microseconds must be >= 0, got {self.max_queue_delay_us}")


def default_batching(max_batch_size: int, delay_us: int) -> DynamicBatching:
    """Preferred sizes: the largest power of two <= max batch, and half of it."""
    top = 1 << (max_batch_size.bit_length() - 1)
    sizes = sorted({max(1, top // 2), top})
    return DynamicBatching(tuple(sizes), delay_us)


@dataclass
class Stage:
    """Fields shared by every stage kind."""

    name: str
    max_batch_size: int
    inputs: List[Tensor]
    outputs: List[Tensor]
    parameters: Dict[str, str] = field(default_factory=dict)
    comment: str = ""

    template = ""

    def validate(self) -> "Stage":
        check_model_name(self.name)
        where = f"model {self.name!r}"
        if not isinstance(self.max_batch_size, int) or self.max_batch_size < 1:
            raise ConfigError(f"{where}: max_batch_size must be >= 1, got {self.max_batch_size}")
        if not self.inputs or not self.outputs:
            raise ConfigError(f"{where}: needs at least one input and one output")
        names = [t.name for t in self.inputs + self.outputs]
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}: tensor names must be unique, got {names}")
        for t in self.inputs:
            t.validate(f"{where} input {t.name!r}")
        for t in self.outputs:
            t.validate(f"{where} output {t.name!r}")
        for key, value in self.parameters.items():
            if not isinstance(key, str) or not key.isidentifier() or not isinstance(value, str):
                raise ConfigError(f"{where}: parameters must map identifiers to strings, got {key!r}: {value!r}")
        return self


@dataclass
class BatchedStage(Stage):
    """A model that Triton schedules itself: instances and dynamic batching."""

    instance_count: int = 1
    instance_kind: str = "KIND_CPU"
    dynamic_batching: Optional[DynamicBatching] = field(default_factory=lambda: DynamicBatching((1,)))

    def validate(self) -> "BatchedStage":
        super().validate()
        where = f"model {self.name!r}"
        if not isinstance(self.instance_count, int) or self.instance_count < 1:
            raise ConfigError(f"{where}: instance_group count must be >= 1, got {self.instance_count}")
        if self.instance_kind not in INSTANCE_KINDS:
            raise ConfigError(f"{where}: instance_group kind must be one of {INSTANCE_KINDS}, got {self.instance_kind!r}")
        if self.dynamic_batching is not None:  # None: Triton runs each request as it comes
            self.dynamic_batching.validate(where, self.max_batch_size)
        return self


@dataclass
class PythonStage(BatchedStage):
    """``backend: "python"``: code in ``1/model.py``."""

    template = "python.pbtxt.j2"


@dataclass
class OnnxRuntimeStage(BatchedStage):
    """``platform: "onnxruntime_onnx"``."""

    model_filename: str = "model.onnx"
    template = "onnxruntime.pbtxt.j2"


@dataclass
class OpenVinoStage(BatchedStage):
    """``backend: "openvino"`` reading an ONNX file (``default_model_filename``); its own
    settings (threads, bf16, batch padding) travel as config ``parameters``."""

    model_filename: str = "model.onnx"
    template = "openvino.pbtxt.j2"


@dataclass
class LibTorchStage(BatchedStage):
    """``platform: "pytorch_libtorch"``: a TorchScript file. Inputs are matched to forward()'s
    argument names, outputs by their order in the config (names without ``__<index>``)."""

    model_filename: str = "model.pt"
    template = "libtorch.pbtxt.j2"


@dataclass
class TensorRTStage(BatchedStage):
    """``platform: "tensorrt_plan"``: a serialized engine in ``1/model.plan``.

    ``max_batch_size`` must lie inside the plan's optimization profile; the dynamic
    batcher's preferred sizes are chosen inside it too.
    """

    model_filename: str = "model.plan"
    instance_kind: str = "KIND_GPU"
    template = "tensorrt.pbtxt.j2"


@dataclass(frozen=True)
class EnsembleStep:
    model_name: str
    input_map: Dict[str, str]  # step model's input -> ensemble tensor
    output_map: Dict[str, str]  # step model's output -> ensemble tensor


@dataclass
class EnsembleStage(Stage):
    """``platform: "ensemble"``: the ensemble itself does not batch dynamically."""

    steps: List[EnsembleStep] = field(default_factory=list)
    template = "ensemble.pbtxt.j2"

    def validate(self) -> "EnsembleStage":
        super().validate()
        where = f"ensemble {self.name!r}"
        if not self.steps:
            raise ConfigError(f"{where}: needs at least one step")
        produced = {t.name for t in self.inputs}
        for step in self.steps:
            check_model_name(step.model_name, f"{where} step model_name")
            missing = [v for v in step.input_map.values() if v not in produced]
            if missing:
                raise ConfigError(f"{where}: step {step.model_name!r} reads {missing} before any step produces them")
            produced.update(step.output_map.values())
        missing_out = [t.name for t in self.outputs if t.name not in produced]
        if missing_out:
            raise ConfigError(f"{where}: outputs {missing_out} are produced by no step")
        return self
