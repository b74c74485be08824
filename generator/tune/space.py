"""Which knobs a repository lets ``tune`` turn, and the values next to a candidate's.

A knob left out is said with its reason (``KnobSpace.notes``): max batch for a detector
graph with a fixed batch, the runtime on targets whose detector does not read the
``runtime`` parameter or on a host with one runtime only, batching knobs without dynamic
batching, instances of a stage with no single instance group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from generator.errors import UsageError
from generator.tune.knobs import (KNOB_ORDER, MAX_BATCH_LIMIT, MAX_INSTANCES, QUEUE_DELAYS_US, ROLES,
                                  RUNTIME_TARGETS, Knobs, batching_stages, instance_count, parameter)
from generator.tune.repository import TuneRepository, fixed_batch


@dataclass
class KnobSpace:
    """The knobs searched (in search order), the runtimes on offer, why others are left out."""

    knobs: List[str]
    runtimes: Tuple[str, ...] = ()
    notes: Dict[str, str] = field(default_factory=dict)

    def neighbours(self, knobs: Knobs, knob: str) -> List[Knobs]:
        """Candidates that differ from ``knobs`` in ``knob`` alone (max batch also rescales the
        preferred sizes it bounds), nearest values first."""
        return [{**knobs, **change} for change in _NEIGHBOURS[knob](self, knobs, knob)]


def _instances(space: KnobSpace, knobs: Knobs, knob: str) -> List[dict]:
    n = int(knobs[knob])
    return [{knob: v} for v in (n + 1, n - 1) if 1 <= v <= MAX_INSTANCES]


def _queue_delay(space: KnobSpace, knobs: Knobs, knob: str) -> List[dict]:
    ladder = sorted(set(QUEUE_DELAYS_US) | {int(knobs[knob])})
    i = ladder.index(int(knobs[knob]))
    return [{knob: ladder[j]} for j in (i - 1, i + 1) if 0 <= j < len(ladder)]


def preferred_options(max_batch: int) -> List[Tuple[int, ...]]:
    """Preferred batch sizes worth trying under a max batch: the max; half and the max; a
    quarter, half and the max. (None listed is the max alone: Triton fills it in.)"""
    options = [(max_batch,)]
    if max_batch >= 2:
        options.append((max_batch // 2, max_batch))
    if max_batch >= 4:
        options.append((max_batch // 4, max_batch // 2, max_batch))
    return options


def _preferred(space: KnobSpace, knobs: Knobs, knob: str) -> List[dict]:
    return [{knob: o} for o in preferred_options(int(knobs["max_batch_size"])) if o != tuple(knobs[knob])]


def _runtime(space: KnobSpace, knobs: Knobs, knob: str) -> List[dict]:
    return [{knob: r} for r in space.runtimes if r != knobs[knob]]


def scale_sizes(sizes: Sequence[int], old: int, new: int) -> Tuple[int, ...]:
    """Preferred sizes kept in proportion to a new max batch (``[4, 8]`` at 8 -> ``[8, 16]`` at 16)."""
    return tuple(sorted({max(1, min(new, b * new // old)) for b in sizes}))


def _max_batch(space: KnobSpace, knobs: Knobs, knob: str) -> List[dict]:
    old = int(knobs[knob])
    out = []
    for new in (old * 2, old // 2):
        if 1 <= new <= MAX_BATCH_LIMIT:
            change: dict = {knob: new}
            if "preferred_batch_sizes" in knobs:
                change["preferred_batch_sizes"] = scale_sizes(knobs["preferred_batch_sizes"], old, new)
            out.append(change)
    return out


_NEIGHBOURS = {**{f"{role}_instances": _instances for role in ROLES},
               "queue_delay_us": _queue_delay, "preferred_batch_sizes": _preferred, "runtime": _runtime,
               "max_batch_size": _max_batch}


# -- which knobs apply ---------------------------------------------------------------
def _available(repo: TuneRepository) -> List[str]:
    """generator.runtime.runners.available_runtimes for the detector's files."""
    from generator.runtime.runners import available_runtimes

    config, version = repo.configs[repo.detector], repo.version_dir(repo.detector)
    onnx = version / (parameter(config, "onnx_file") or "model.onnx")
    return available_runtimes(onnx if onnx.is_file() else None, version / "model.torchscript")


def _runtime_choices(repo: TuneRepository, available: Optional[Sequence[str]]) -> Tuple[Tuple[str, ...], Optional[str]]:
    """(runtimes this host runs the detector with, why the knob is left out or None)."""
    if repo.target not in RUNTIME_TARGETS:
        return (), (f"the {repo.target} target's detector runs on the Triton backend chosen at generation; "
                    "regenerate with --runtime to change it")
    names = list(_available(repo) if available is None else available)
    if len(names) < 2:
        return tuple(names), f"only {', '.join(names) or 'no runtime'} runs the detector on this host"
    return tuple(names), None


def _batch_note(repo: TuneRepository) -> Optional[str]:
    batch = fixed_batch(repo)
    if batch:
        return f"the detector graph has a fixed batch of {batch}: max batch is not a knob"
    if repo.configs[repo.detector].platform == "tensorrt_plan":
        return "a TensorRT plan's batch is bounded by its optimization profile: rebuild it to change max batch"
    return None


def _notes(repo: TuneRepository, runtime_note: Optional[str]) -> Dict[str, str]:
    notes = {}
    if runtime_note:
        notes["runtime"] = runtime_note
    if _batch_note(repo):
        notes["max_batch_size"] = _batch_note(repo)
    if not batching_stages(repo):
        notes["queue_delay_us"] = notes["preferred_batch_sizes"] = "no stage has dynamic batching"
    for role in ROLES:
        model = repo.roles.get(role)
        if model is not None and instance_count(repo.configs[model]) is None:
            notes[f"{role}_instances"] = f"{model} has no single instance group"
        elif model is None:
            notes[f"{role}_instances"] = f"the ensemble has no {role} step"
    return notes


def build_space(repo: TuneRepository, select: Optional[Sequence[str]] = None,
                runtimes: Optional[Sequence[str]] = None) -> KnobSpace:
    """The knob space of ``repo``; ``select`` limits it (``--knobs``); ``runtimes`` overrides
    what this host offers (tests)."""
    unknown = sorted(set(select or ()) - set(KNOB_ORDER))
    if unknown:
        raise UsageError(f"--knobs: unknown {', '.join(unknown)}; choose from {', '.join(KNOB_ORDER)}")
    found, note = _runtime_choices(repo, runtimes)
    notes = _notes(repo, note)
    knobs = [k for k in KNOB_ORDER if k not in notes and (select is None or k in select)]
    return KnobSpace(knobs, found, notes)


def describe(notes: Dict[str, str]) -> List[str]:
    """One line per knob left out (``KnobSpace.notes``), with its reason."""
    return [f"{knob}: not tuned ({why})" for knob, why in notes.items()]

