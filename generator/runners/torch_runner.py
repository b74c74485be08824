"""PyTorch eager: a detector module as trained, for offline eval and bench (never shipped)."""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np

from generator._cpu import denormals_flushed
from generator._lazy import require
from generator.runtime.runners.base import Runner


class TorchRunner(Runner):
    """A PyTorch detector in eval mode: ``[B, 3, H, W]`` float32 -> its outputs as float32.

    ``model``: a ``torch.nn.Module``, or the path of a tritonforge checkpoint (``.pt``).
    Threads are torch's own setting (``OMP_NUM_THREADS``, ``torch.set_num_threads``).
    """

    name = "torch"
    input_name = "images"
    output_names = ["output0"]

    def __init__(self, model):
        self.torch = require("torch", "to run a PyTorch detector")
        if isinstance(model, (str, Path)):
            from generator.models.checkpoint import load_checkpoint

            model = load_checkpoint(Path(model)).model
        self.model = model.eval()

    def __call__(self, x: np.ndarray) -> List[np.ndarray]:
        with self.torch.no_grad(), denormals_flushed(self.torch):
            y = self.model(self.torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        outputs = list(y) if isinstance(y, (list, tuple)) else [y]
        return [t.numpy().astype(np.float32, copy=False) for t in outputs]
