"""TorchScript on the CPU: a detector traced by ``tritonforge export --torchscript``.

torch is imported when a runner is opened, not when this module is. The file's
``tritonforge.json`` extra file (written by the export) names the input and outputs and the
input's data type; a TorchScript file without it runs as ``images`` float32 -> ``output0``...
"""

from __future__ import annotations

import json
import os
import warnings
from typing import List, Union

import numpy as np

from .base import Runner

META_FILE = "tritonforge.json"  # the extra file inside the TorchScript archive


def read_meta(path: Union[str, os.PathLike]) -> dict:
    """The ``tritonforge.json`` extra file of a TorchScript archive ({} when absent)."""
    import torch

    extra = {META_FILE: ""}
    _load(torch, path, extra)
    return json.loads(extra[META_FILE]) if extra[META_FILE] else {}


class TorchScriptRunner(Runner):
    """A TorchScript module in eval mode on the CPU.

    ``threads``: torch's intra-op threads for this process (0: torch's default). Denormals
    are flushed to zero during a call (trained detectors produce them; they slow x86 CPUs
    down; the setting is process-wide, so it is switched off again after). Outputs
    come back as float32, in the module's output order.
    """

    name = "torchscript"

    def __init__(self, path: Union[str, os.PathLike], threads: int = 0):
        import torch

        self.torch = torch
        if int(threads) > 0:
            torch.set_num_threads(int(threads))
        for dtype in (np.float16, np.float32, np.float64):  # numpy's lazy float limits, before flush-to-zero
            np.finfo(dtype).smallest_subnormal
        extra = {META_FILE: ""}
        self.module = _load(torch, path, extra).eval()
        meta = json.loads(extra[META_FILE]) if extra[META_FILE] else {}
        self.input_name = meta.get("input_name", "images")
        self.input_dtype = np.dtype(meta.get("input_dtype", "float32"))
        self.output_names = list(meta.get("output_names", ["output0"]))

    def __call__(self, x: np.ndarray) -> List[np.ndarray]:
        x = self.torch.from_numpy(np.ascontiguousarray(x, dtype=self.input_dtype))
        self.torch.set_flush_denormal(True)
        try:
            with self.torch.inference_mode():
                y = self.module(x)
        finally:
            self.torch.set_flush_denormal(False)
        outputs = list(y) if isinstance(y, (list, tuple)) else [y]
        return [t.float().numpy() for t in outputs]


def _load(torch, path, extra: dict):
    """``torch.jit.load`` on the CPU, filling ``extra``; its deprecation notice silenced (the
    format is what Triton's libtorch backend serves)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
