"""The one interface every detector runtime implements (shipped: no Triton import here)."""

from __future__ import annotations

from typing import Callable, List, Sequence

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


class FixedBatch:
    """A runner for a graph exported with a fixed batch size (Ultralytics' default is 1, and
    ``dynamic=False`` with ``batch=N``): any batch runs in chunks of that size, the last one
    padded by repeating its last image (the padding rows are dropped). ``min_batch`` =
    ``max_batch`` = that size, so benchmarks time only what the graph runs."""

    def __init__(self, runner: Callable[[np.ndarray], Sequence[np.ndarray]], batch: int):
        self.runner, self.batch = runner, int(batch)
        self.min_batch = self.max_batch = self.batch
        for name in ("name", "input_name", "output_names", "input_dtype"):
            setattr(self, name, getattr(runner, name, getattr(Runner, name)))

    def __call__(self, x: np.ndarray) -> List[np.ndarray]:
        parts = []
        for start in range(0, len(x), self.batch):
            chunk = x[start:start + self.batch]
            n = len(chunk)
            if n < self.batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - n, axis=0)])
            parts.append([np.asarray(y)[:n] for y in self.runner(chunk)])
        return [np.concatenate(outputs) for outputs in zip(*parts)]
