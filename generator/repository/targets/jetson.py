"""``jetson``: Triton's JetPack release. Plans are specific to the GPU, TensorRT version
and driver, so the Jetson always builds its own (``build_plans.sh``), optionally for a DLA
core; the CUDA preprocessing copies its output back to the CPU, because Triton's Python
backend has no GPU tensors there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from generator.repository.options import Check
from generator.repository.targets.tensorrt import TensorRTOptions, TensorRTTarget


@dataclass
class JetsonOptions(TensorRTOptions):
    """TensorRT options, plus the DLA core to build for."""

    dla_core: Optional[int] = None  # build for this DLA core (GPU fallback allowed)

    def checks(self) -> List[Check]:
        return super().checks() + [
            (self.dla_core is None or self.dla_core >= 0, f"--dla-core must be >= 0, got {self.dla_core}")]


class JetsonTarget(TensorRTTarget):
    name = "jetson"
    description = ("TensorRT plan built on the Jetson (optionally on a DLA core), CUDA preprocessing with CPU "
                   "tensors between stages; Triton's JetPack release")
    options_class = JetsonOptions
    preprocess_output = "cpu"  # Triton's Python backend has no GPU tensors on Jetson
    preprocess_kind = "KIND_CPU"
    refused = {"plan": "plans are not portable between devices: the Jetson builds its own (build_plans.sh)"}
    # sized for an 8 GB Xavier NX / Orin NX, whose memory the CPU and GPU share
    defaults = {"max_batch_size": 4, "preprocess_instances": 1, "detector_instances": 1, "workspace_mib": 1024}
