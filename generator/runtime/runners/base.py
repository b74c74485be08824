"""The one interface every detector runtime implements (shipped: no Triton import here)."""

from __future__ import annotations

from typing import List

import numpy as np


class Runner:
    """A detector network loaded and ready to run, whatever executes it.

    ``__call__`` takes the preprocessed batch ``[B, 3, H, W]`` and returns every output
    of the network, in graph order, as float32 (so decoders and comparisons need not care
    which runtime produced them). A runner whose engine accepts only some batch sizes
    also sets ``min_batch`` / ``max_batch`` (the benchmark skips sizes outside them).
    """

    name: str = ""
    input_name: str = ""
    output_names: List[str] = []
    input_dtype: np.dtype = np.dtype(np.float32)

    def __call__(self, x: np.ndarray) -> List[np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__} does not implement __call__")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.input_name!r} -> {self.output_names!r})"
