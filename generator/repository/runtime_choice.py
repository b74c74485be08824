"""``generate --runtime auto``: measure the detector runtimes available on this host and
choose the fastest at the repository's max batch.

Every candidate runs the same random batches (batch 1 and the max batch) in interleaved
rounds, so a machine that slows down mid-way slows every candidate alike; ONNX Runtime's
thread spinning is off (spinning threads would steal the next candidate's cores). The
figures, the choice and how it was made go into the repository's manifest.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from generator.export.signature import DetectorSignature
from generator.runtime.runners import FixedBatch, available_runtimes

MIN_ROUNDS, MAX_ROUNDS = 3, 200


def random_batch(sig: DetectorSignature, batch: int, dtype: np.dtype, seed: int = 0) -> np.ndarray:
    """A seeded random input of the detector's shape in ``dtype`` (pixels for uint8)."""
    rng = np.random.default_rng(seed)
    shape = (batch, 3, sig.height, sig.width)
    if np.dtype(dtype) == np.uint8:
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return rng.random(shape, dtype=np.float32).astype(dtype)


def open_candidates(onnx: Path, sig: DetectorSignature, torchscript: Optional[Path], threads: int):
    """name -> runner for every runtime available here; name -> error for those that fail to open."""
    from generator.runners import open_runner

    runners, errors = {}, {}
    for name in available_runtimes(onnx, torchscript):
        try:
            runner = open_runner(name, torchscript if name == "torchscript" else onnx, threads=threads)
        except Exception as exc:  # a runtime that cannot run this model is a figure, not a failure
            errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        runners[name] = FixedBatch(runner, sig.batch) if sig.batch and name != "torchscript" else runner
    return runners, errors


def time_rounds(runners: Dict[str, Callable], inputs: Dict[str, Dict[int, np.ndarray]], seconds: float) -> tuple:
    """Interleaved rounds (the order rotating each round) until ``seconds`` have passed;
    returns (name -> batch -> [seconds per call], rounds)."""
    names = list(runners)
    times: Dict[str, Dict[int, List[float]]] = {n: {b: [] for b in inputs[n]} for n in names}
    for name in names:  # warm-up: OpenVINO compiles each batch size on first use
        for x in inputs[name].values():
            runners[name](x)
    start, rounds = time.perf_counter(), 0
    while rounds < MIN_ROUNDS or (time.perf_counter() - start < seconds and rounds < MAX_ROUNDS):
        for name in names[rounds % len(names):] + names[:rounds % len(names)]:
            for batch, x in inputs[name].items():
                t0 = time.perf_counter()
                runners[name](x)
                times[name][batch].append(time.perf_counter() - t0)
        rounds += 1
    return times, rounds


def choose_runtime(onnx: Path, sig: DetectorSignature, max_batch: int, torchscript: Optional[Path] = None,
                   seconds: float = 4.0, threads: int = 0) -> dict:
    """``{"chosen", "candidates": {name: {"batch_1_ms", "batch_<max>_ms"} or {"error"}}, "how"}``."""
    runners, errors = open_candidates(Path(onnx), sig, torchscript, threads)
    if not runners:
        from generator.errors import UsageError

        raise UsageError(f"--runtime auto: no runtime could run {onnx}: {errors}")
    batches = sorted({1, int(max_batch)})
    inputs = {n: {b: random_batch(sig, b, r.input_dtype) for b in batches} for n, r in runners.items()}
    times, rounds = time_rounds(runners, inputs, seconds)
    candidates: Dict[str, dict] = {
        name: {f"batch_{b}_ms": round(statistics.median(ts) * 1000, 3) for b, ts in per_batch.items()}
        for name, per_batch in times.items()}
    candidates.update({name: {"error": error} for name, error in errors.items()})
    key = f"batch_{batches[-1]}_ms"
    chosen = min(times, key=lambda n: candidates[n][key])
    return {"chosen": chosen, "candidates": candidates, "how": _how(rounds, batches, threads, torchscript, chosen)}


def _how(rounds: int, batches: List[int], threads: int, torchscript: Optional[Path], chosen: str) -> str:
    from generator.runtime.runners.openvino_runner import bf16_supported

    left_out = []
    if not bf16_supported():
        left_out.append("openvino-bf16 (this CPU has no bfloat16 units)")
    if torchscript is None or not Path(torchscript).is_file():
        left_out.append("torchscript (no .torchscript file beside the ONNX; tritonforge export --torchscript)")
    return (f"median ms per call over {rounds} interleaved rounds on random input at batch "
            f"{' and '.join(map(str, batches))}, {threads or 'default'} threads, ONNX Runtime spinning off; "
            f"{chosen} is the fastest at batch {batches[-1]}"
            + (f"; not measured: {', '.join(left_out)}" if left_out else ""))
