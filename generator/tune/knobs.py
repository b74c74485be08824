"""The ensemble's knobs: what a candidate is, how it is read from and set into the stage
configs, and which values lie next to a given one.

A candidate is a plain dict ``knob -> value`` (JSON-ready; preferred batch sizes a tuple):

    max_batch_size         every composing model and the ensemble alike (so the ensemble's
                           never exceeds its models'); not a knob for a fixed-batch detector
    queue_delay_us         dynamic batching's max queue delay, every batching stage alike
    preferred_batch_sizes  dynamic batching's preferred sizes, every batching stage alike
    <role>_instances       instance count of the preprocess, detector, postprocess stage
    runtime                what runs the detector (``embedded`` only: its ``runtime`` parameter)

Only knobs whose value differs from the repository's own are written into a config, so the
default candidate is the repository exactly as it is.
"""

from __future__ import annotations

import copy
from typing import Callable, Dict, List, Optional, Tuple

from generator.tune.repository import TuneRepository

Knobs = Dict[str, object]

ROLES = ("preprocess", "detector", "postprocess")
# the search's order: the knobs that mattered most on 2-core CPU hosts first
KNOB_ORDER = ("preprocess_instances", "queue_delay_us", "detector_instances", "preferred_batch_sizes",
              "runtime", "max_batch_size", "postprocess_instances")
QUEUE_DELAYS_US = (0, 500, 2000, 8000, 32000)  # steps of 4x: smaller steps drown in this host's noise
MAX_INSTANCES = 8
MAX_BATCH_LIMIT = 64
DEFAULT_RUNTIME = "onnxruntime"  # runtime/detector.py's default for the ``runtime`` parameter
# targets whose detector stage is runtime/detector.py (it reads the ``runtime`` parameter)
RUNTIME_TARGETS = frozenset({"embedded"})


def knob_key(knobs: Knobs) -> tuple:
    """A hashable form of a candidate (to skip one already measured)."""
    return tuple(sorted(knobs.items()))


def instance_count(config) -> Optional[int]:
    """The count of a config's single instance group; None with no group or several."""
    if len(config.instance_group) != 1:
        return None
    return config.instance_group[0].count or 1


def batching_stages(repo: TuneRepository, configs: Optional[dict] = None) -> List[str]:
    """Composing models that have dynamic batching."""
    configs = configs or repo.configs
    return [m for m in repo.composing if configs[m].HasField("dynamic_batching")]


def parameter(config, key: str, default: str = "") -> str:
    value = config.parameters.get(key)
    return default if value is None else value.string_value


def current_runtime(config) -> str:
    return parameter(config, "runtime") or DEFAULT_RUNTIME


def read_knobs(repo: TuneRepository, configs: Optional[dict] = None) -> Knobs:
    """The knob values ``configs`` (default: the repository's own) hold; batching is read from
    the detector when it batches, else from the first stage that does."""
    configs = configs or repo.configs
    knobs: Knobs = {"max_batch_size": configs[repo.detector].max_batch_size}
    batching = batching_stages(repo, configs)
    if batching:
        source = configs[repo.detector if repo.detector in batching else batching[0]].dynamic_batching
        knobs["queue_delay_us"] = int(source.max_queue_delay_microseconds)
        # none listed: Triton prefers the max batch (NormalizeModelConfig), and reports it so
        knobs["preferred_batch_sizes"] = tuple(int(b) for b in source.preferred_batch_size) or \
            (int(knobs["max_batch_size"]),)
    for role, model in repo.roles.items():
        count = instance_count(configs[model])
        if count is not None:
            knobs[f"{role}_instances"] = count
    if repo.target in RUNTIME_TARGETS:
        knobs["runtime"] = current_runtime(configs[repo.detector])
    return knobs


# -- setting knobs into configs ------------------------------------------------------
def _set_max_batch(repo: TuneRepository, configs: dict, value: int) -> None:
    for config in configs.values():
        config.max_batch_size = value


def _set_queue_delay(repo: TuneRepository, configs: dict, value: int) -> None:
    for model in batching_stages(repo, configs):
        configs[model].dynamic_batching.max_queue_delay_microseconds = value


def _set_preferred(repo: TuneRepository, configs: dict, value: Tuple[int, ...]) -> None:
    for model in batching_stages(repo, configs):
        sizes = configs[model].dynamic_batching.preferred_batch_size
        del sizes[:]
        sizes.extend(value)


def _set_instances(role: str) -> Callable[[TuneRepository, dict, int], None]:
    def setter(repo: TuneRepository, configs: dict, value: int) -> None:
        configs[repo.roles[role]].instance_group[0].count = value

    return setter


def _set_runtime(repo: TuneRepository, configs: dict, value: str) -> None:
    params = configs[repo.detector].parameters
    params["runtime"].string_value = value
    if value == "torchscript":
        params["model_file"].string_value = "model.torchscript"
    elif parameter(configs[repo.detector], "model_file"):
        params["model_file"].string_value = ""  # "" reads onnx_file


SETTERS = {"max_batch_size": _set_max_batch, "queue_delay_us": _set_queue_delay,
           "preferred_batch_sizes": _set_preferred, "runtime": _set_runtime,
           **{f"{role}_instances": _set_instances(role) for role in ROLES}}


def configure(repo: TuneRepository, knobs: Knobs) -> dict:
    """Copies of the repository's configs with every knob that differs from its own set."""
    configs = {name: copy.deepcopy(config) for name, config in repo.configs.items()}
    own = read_knobs(repo)
    for knob in KNOB_ORDER:  # max batch before the sizes it bounds: the order does not matter for values
        if knob in knobs and knobs[knob] != own.get(knob):
            SETTERS[knob](repo, configs, knobs[knob])
    return configs


def inconsistencies(repo: TuneRepository, configs: dict) -> List[str]:
    """What makes a set of configs one Triton would refuse (empty: consistent)."""
    problems = []
    ensemble = configs[repo.ensemble].max_batch_size
    for model in repo.composing:
        config = configs[model]
        if config.max_batch_size < ensemble:
            problems.append(f"{model}: max_batch_size {config.max_batch_size} < the ensemble's {ensemble}")
        too_big = [b for b in config.dynamic_batching.preferred_batch_size if not 1 <= b <= config.max_batch_size]
        if too_big:
            problems.append(f"{model}: preferred_batch_size {too_big} outside 1..{config.max_batch_size}")
        if instance_count(config) is not None and config.instance_group[0].count < 1:
            problems.append(f"{model}: instance count must be >= 1")
    return problems


def changed(default: Knobs, knobs: Knobs) -> Dict[str, list]:
    """knob -> [default value, this value] for each knob that differs."""
    return {k: [default.get(k), v] for k, v in knobs.items() if default.get(k) != v}
