"""The registry of targets, keyed by name: the built-ins listed here, third parties from
the ``tritonforge.targets`` entry-point group; a name registered twice is an error."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Dict, List

from generator.errors import UsageError
from generator.repository.options import RepositoryOptions, flag
from generator.repository.targets.base import Target
from generator.repository.targets.cpu import CpuTarget
from generator.repository.targets.embedded import EmbeddedTarget
from generator.repository.targets.gpu import GpuTarget
from generator.repository.targets.jetson import JetsonTarget

BUILTIN_TARGETS = (EmbeddedTarget, CpuTarget, GpuTarget, JetsonTarget)
ENTRY_POINT_GROUP = "tritonforge.targets"

_TARGETS: Dict[str, Target] = {}
_LOADED = False


def register_target(target: Target) -> None:
    """Add a target; a name registered twice is an error."""
    _load()
    _add(target)


def _add(target: Target) -> None:
    if not target.name:
        raise ValueError("a target needs a name")
    if target.name in _TARGETS:
        raise ValueError(f"target {target.name!r} is already registered")
    _TARGETS[target.name] = target


def _load() -> None:
    """The built-ins, then the entry points: once, on first use."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for cls in BUILTIN_TARGETS:
        _add(cls())
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        _add(obj() if isinstance(obj, type) else obj)


def targets() -> Dict[str, Target]:
    """Every registered target by name."""
    _load()
    return dict(_TARGETS)


def target_names() -> List[str]:
    return sorted(targets())


def get_target(name: str) -> Target:
    """The target called ``name``; UsageError naming the known ones otherwise."""
    known = targets()
    if name not in known:
        raise UsageError(f"unknown target {name!r}; known: {', '.join(sorted(known))}")
    return known[name]


def options_for(target_name: str, /, **given) -> RepositoryOptions:
    """Options for target ``target_name``: what the user gave (``None`` = not given) over
    the target's defaults. An option the target would ignore is refused, naming its flag."""
    target = get_target(target_name)
    given = {key: value for key, value in given.items() if value is not None}
    _refuse_foreign(target, [key for key in given if key not in target.options_class.field_names()])
    return target.options_class(**{**target.defaults, **given})


def _refuse_foreign(target: Target, foreign: List[str]) -> None:
    for key in foreign:
        if key in target.refused:
            raise UsageError(f"{flag(key)}: {target.refused[key]}")
    if foreign:
        raise UsageError(f"{', '.join(flag(k) for k in foreign)}: only for {_who_knows(foreign)}, not {target.name!r}")


def _who_knows(keys: List[str]) -> str:
    """"the gpu and jetson targets (TensorRT)": the targets that know any of ``keys``
    (accept it, or refuse it with a reason), and what their options are for."""
    knowing = [t for t in targets().values()
               if any(k in t.options_class.field_names() or k in t.refused for k in keys)]
    if not knowing:
        raise UsageError(f"{', '.join(flag(k) for k in keys)}: no target knows this option")
    names = sorted(t.name for t in knowing)
    words = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    kinds = sorted({t.options_class.kind for t in knowing if t.options_class.kind})
    return f"the {words} target{'s' if len(names) > 1 else ''}" + (f" ({', '.join(kinds)})" if kinds else "")
