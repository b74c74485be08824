"""CPU numerics settings shared by training and offline inference."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np


@contextlib.contextmanager
def denormals_flushed(torch):
    """Treat denormal floats as zero in torch's CPU kernels inside the block.

    Trained detectors produce denormal activations that slow x86 CPUs down ~40x. The
    setting is process-wide processor state, so it is switched off again on exit (other
    code, e.g. numpy or hypothesis, expects IEEE subnormals). numpy computes its float
    limits lazily and warns if that happens while flush-to-zero is on: compute them first.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for dtype in (np.float16, np.float32, np.float64):
            np.finfo(dtype).smallest_subnormal
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
