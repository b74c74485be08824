"""Measured selection: keep in float what does not get faster when quantized.

The quantizable nodes are grouped (per op type; Conv / MatMul / Gemm per block of the
network, from the module path in their names). Starting from the full Q/DQ model, each
group in turn is returned to float (``surgery.to_float``) and the two models are timed
on the runtime the model will run on, in interleaved rounds; the median of the per-round
ratios decides: the group stays quantized only when quantizing it makes the model faster
by more than ``margin``. Decisions accumulate (the next group is tried on the model the
previous decisions left).

Timing is behind ``Meter`` so tests can inject a deterministic one; ``RuntimeMeter``
times real runners (``generator.runners.open_runner``) with ONNX Runtime's thread
spinning off (spinning threads steal the cores the next model needs).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from generator.compress.quantize.surgery import quantized_nodes, to_float

WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
MAX_BLOCKS = 6  # weighted layers are split into at most this many blocks
DEFAULT_MARGIN = 0.02  # quantizing must save more than 2 % to be kept
DEFAULT_BUDGET_S = 30.0  # seconds of timing (rounds adapt to the model's speed)
MIN_ROUNDS, MAX_ROUNDS = 3, 9
MEASURE_BATCH = 8

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Group:
    """Nodes decided together: one op type, or one block of weighted layers."""

    name: str
    op_type: str
    nodes: Tuple[str, ...]


@dataclass
class GroupTiming:
    """One group's measurement: latency (ms) with the group quantized and with it float."""

    group: Group
    quantized_ms: float
    float_ms: float
    speedup: float  # float_ms / quantized_ms (median of per-round ratios): > 1 means int8 pays
    quantize: bool

    def reason(self, runtime: str) -> str:
        return (f"measured on {runtime}: {self.group.name} stays float, {self.speedup:.2f}x when quantized")

    def to_json(self) -> dict:
        return {"group": self.group.name, "op_type": self.group.op_type, "nodes": len(self.group.nodes),
                "quantized_ms": round(self.quantized_ms, 3), "float_ms": round(self.float_ms, 3),
                "speedup": round(self.speedup, 4), "decision": "int8" if self.quantize else "float"}


@dataclass
class Selection:
    """What measured selection decided, with every figure it decided from."""

    runtime: str
    threads: int
    batch: int
    rounds: int
    margin: float
    timings: List[GroupTiming] = field(default_factory=list)
    latency_ms: Dict[str, float] = field(default_factory=dict)  # fp32, full int8, selected
    seconds: float = 0.0

    @property
    def float_nodes(self) -> List[str]:
        return [n for t in self.timings if not t.quantize for n in t.group.nodes]

    def to_json(self) -> dict:
        return {"mode": "measured", "runtime": self.runtime, "threads": self.threads, "batch": self.batch,
                "rounds": self.rounds, "margin": self.margin, "seconds": round(self.seconds, 2),
                "groups": [t.to_json() for t in self.timings],
                "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()}}

    def table(self) -> List[str]:
        """The per-group table printed by the CLI."""
        lines = [f"  measured selection on {self.runtime} (batch {self.batch}, {self.threads or 'default'} threads, "
                 f"{self.rounds} rounds, margin {self.margin:.0%}):",
                 f"    {'group':<34} {'nodes':>5} {'int8 ms':>9} {'float ms':>9} {'int8 gain':>9}  decision"]
        for t in self.timings:
            lines.append(f"    {t.group.name:<34} {len(t.group.nodes):>5} {t.quantized_ms:>9.2f} {t.float_ms:>9.2f} "
                         f"{t.speedup:>8.2f}x  {'int8' if t.quantize else 'float'}")
        lat = self.latency_ms
        if {"fp32", "full_int8", "selected"} <= set(lat):
            lines.append(f"    latency: fp32 {lat['fp32']:.2f} ms, full int8 {lat['full_int8']:.2f} ms "
                         f"({lat['fp32'] / lat['full_int8']:.2f}x), selected {lat['selected']:.2f} ms "
                         f"({lat['fp32'] / lat['selected']:.2f}x)")
        return lines


def block_of(name: str) -> str:
    """A node's block: the first two parts of its module path (``/backbone/stage2/...``
    -> ``backbone/stage2``), or "" when the name has no path."""
    parts = [p for p in name.split("/") if p]
    return "/".join(parts[:2]) if len(parts) > 2 else ""


def groups_of(model, candidates: Sequence[str]) -> List[Group]:
    """``candidates`` (quantized node names, graph order) grouped: each non-weighted op type
    is one group; weighted layers (Conv, ...) are split into at most ``MAX_BLOCKS`` runs of
    consecutive blocks. Non-weighted groups come first (they are likeliest to stay float)."""
    ops = {n.name: n.op_type for n in model.graph.node}
    by_type: Dict[str, List[str]] = {}
    weighted: Dict[str, Dict[str, List[str]]] = {}
    for name in candidates:
        op = ops[name]
        if op in WEIGHTED_OPS:
            weighted.setdefault(op, {}).setdefault(block_of(name), []).append(name)
        else:
            by_type.setdefault(op, []).append(name)
    groups = [Group(op, op, tuple(nodes)) for op, nodes in by_type.items()]
    for op, blocks in weighted.items():
        groups.extend(_merge_blocks(op, blocks))
    return groups


def _merge_blocks(op: str, blocks: Dict[str, List[str]]) -> List[Group]:
    """Consecutive blocks merged into at most ``MAX_BLOCKS`` groups of similar node counts."""
    keys = list(blocks)
    total = sum(len(v) for v in blocks.values())
    chunks: List[List[str]] = [[]]
    done = 0
    for key in keys:
        if chunks[-1] and done >= total * len(chunks) / MAX_BLOCKS:
            chunks.append([])
        chunks[-1].append(key)
        done += len(blocks[key])
    groups = []
    for chunk in chunks:
        nodes = tuple(n for key in chunk for n in blocks[key])
        label = chunk[0] if len(chunk) == 1 else f"{chunk[0]}..{chunk[-1]}"
        groups.append(Group(f"{op} {label or 'all'}".strip(), op, nodes))
    return groups


class Meter:
    """Times models; ``compare`` returns (median ms of a, median ms of b, median ratio b/a)."""

    rounds = MIN_ROUNDS

    def compare(self, a, b) -> Tuple[float, float, float]:
        raise NotImplementedError

    def latency(self, models: Dict[str, object]) -> Dict[str, float]:
        """Median ms of each model (interleaved)."""
        raise NotImplementedError


class RuntimeMeter(Meter):
    """Real timing: each model (an ONNX ModelProto) is written to a temporary file, opened
    with ``runtime`` and run on ``x`` in interleaved rounds after one warm-up run."""

    def __init__(self, runtime: str, x: np.ndarray, threads: int = 0, budget_s: float = DEFAULT_BUDGET_S,
                 groups: int = 1, work: Optional[Path] = None):
        self.runtime, self.x, self.threads = runtime, np.ascontiguousarray(x), int(threads)
        self.budget_s, self.groups = float(budget_s), max(1, int(groups))
        self.work = Path(work or tempfile.gettempdir())
        self.rounds = MIN_ROUNDS
        self._cache: Dict[int, tuple] = {}  # id(model) -> (model, file, warm runner)

    def calibrate_rounds(self, model) -> int:
        """Rounds that keep the whole measurement near the budget: two models per group."""
        runner = self._open(model)
        t0 = time.perf_counter()
        runner(self.x)
        one = time.perf_counter() - t0
        self.rounds = int(np.clip(self.budget_s / max(1e-6, one * 2 * (self.groups + 2)), MIN_ROUNDS, MAX_ROUNDS))
        return self.rounds

    def compare(self, a, b) -> Tuple[float, float, float]:
        runners = [self._open(a), self._open(b)]
        times = self._interleaved(runners)
        ratios = [tb / ta for ta, tb in zip(*times)]
        return float(np.median(times[0])) * 1e3, float(np.median(times[1])) * 1e3, float(np.median(ratios))

    def latency(self, models: Dict[str, object]) -> Dict[str, float]:
        names = list(models)
        times = self._interleaved([self._open(models[n]) for n in names])
        return {n: float(np.median(t)) * 1e3 for n, t in zip(names, times)}

    def _interleaved(self, runners) -> List[List[float]]:
        times: List[List[float]] = [[] for _ in runners]
        for i in range(self.rounds):
            order = range(len(runners)) if i % 2 == 0 else reversed(range(len(runners)))
            for k in order:
                t0 = time.perf_counter()
                runners[k](self.x)
                times[k].append(time.perf_counter() - t0)
        return times

    def _open(self, model):
        """A warm runner for ``model``; the last two opened are kept (the model being
        improved is compared again and again)."""
        key = id(model)  # the cache holds the model too, so its id cannot be reused meanwhile
        if key not in self._cache:
            path, runner = self._load(model)
            runner(self.x)  # warm-up
            while len(self._cache) > 1:
                _, old_path, _ = self._cache.pop(next(iter(self._cache)))
                old_path.unlink(missing_ok=True)
            self._cache[key] = (model, path, runner)
        self._cache[key] = self._cache.pop(key)  # most recently used last
        return self._cache[key][2]

    def _load(self, model):
        """(file, runner): the file stays while the runner lives (some runtimes read it lazily)."""
        import onnx

        fd, name = tempfile.mkstemp(suffix=".onnx", dir=self.work)
        os.close(fd)
        path = Path(name)
        try:
            onnx.save(model, str(path))
            return path, open_timing_runner(self.runtime, path, self.threads)
        except BaseException:
            path.unlink(missing_ok=True)
            raise


def open_timing_runner(runtime: str, path: Path, threads: int = 0):
    """A runner for timing, as registered (the ONNX Runtime runner has thread spinning off)."""
    from generator.runners import open_runner

    return open_runner(runtime, path, threads=threads)


def measured_selection(full, source_model, meter: Meter, runtime: str, threads: int = 0, batch: int = MEASURE_BATCH,
                       margin: float = DEFAULT_MARGIN, float_initializers=None,
                       echo: Optional[Echo] = None) -> Selection:
    """Decide, group by group, what of the Q/DQ model ``full`` stays float (see the module
    docstring). ``source_model``: the float model ``full`` was quantized from (its
    latency is recorded beside the full and selected int8 ones)."""
    started = time.perf_counter()
    say = echo or (lambda _msg: None)
    groups = groups_of(full, quantized_nodes(full))
    selection = Selection(runtime, threads, batch, meter.rounds, margin)
    if isinstance(meter, RuntimeMeter):
        meter.groups = len(groups)
        selection.rounds = meter.calibrate_rounds(full)
    say(f"measured selection: {len(groups)} groups on {runtime}, {selection.rounds} interleaved rounds each")
    kept_float: List[str] = []
    current = full
    for i, group in enumerate(groups, 1):
        candidate = to_float(full, kept_float + list(group.nodes), float_initializers)
        q_ms, f_ms, ratio = meter.compare(current, candidate)
        timing = GroupTiming(group, q_ms, f_ms, ratio, quantize=ratio > 1.0 + margin)
        selection.timings.append(timing)
        if not timing.quantize:
            kept_float.extend(group.nodes)
            current = candidate
        say(f"  [{i}/{len(groups)}] {group.name}: int8 {q_ms:.2f} ms, float {f_ms:.2f} ms -> "
            f"{'int8' if timing.quantize else 'float'} ({ratio:.2f}x when quantized)")
    selection.latency_ms = meter.latency({"fp32": source_model, "full_int8": full, "selected": current})
    selection.seconds = time.perf_counter() - started
    return selection
