"""Inference requests for the ensemble: encoded images in a ``[N, 1]`` BYTES tensor,
the four padded outputs requested back, inline or through shared-memory regions."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np

from client.info import OUTPUTS, ModelInfo
from client.shm import Slot


def bytes_tensor(encoded: List[bytes]) -> np.ndarray:
    """The ``[N, 1]`` object array tritonclient sends as BYTES."""
    data = np.empty((len(encoded), 1), dtype=object)
    data[:, 0] = encoded
    return data


def build_request(module: Any, protocol: str, info: ModelInfo, encoded: List[bytes], slot: Optional[Slot] = None,
                  input_bytes: int = 0) -> Tuple[list, list]:
    """``InferInput``s and ``InferRequestedOutput``s of ``module`` (``tritonclient.grpc`` or
    ``.http``; the aio clients use the same classes). With a ``slot`` the input is read from,
    and the outputs written to, its regions (the input already holds ``input_bytes``)."""
    binary = {"binary_data": True} if protocol == "http" else {}
    inp = module.InferInput(info.input_name, [len(encoded), 1], "BYTES")
    if slot is None:
        inp.set_data_from_numpy(bytes_tensor(encoded), **binary)
    else:
        assert slot.input is not None
        inp.set_shared_memory(slot.input.name, input_bytes)
    outputs = []
    for name in OUTPUTS:
        out = module.InferRequestedOutput(name, **binary)
        if slot is not None:
            assert slot.output is not None
            offset, capacity = slot.layout[name]
            out.set_shared_memory(slot.output.name, capacity, offset=offset)
        outputs.append(out)
    return [inp], outputs
