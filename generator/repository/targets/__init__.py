"""Deployment targets, as a registry keyed by name (one module per target). A target
decides how the detector stage runs; preprocess, postprocess and the ensemble are shared
(``generator.repository.pipeline``). Third-party targets come from the
``tritonforge.targets`` entry-point group: a :class:`Target` subclass or instance."""

from generator.repository.targets.base import Generation, Target
from generator.repository.targets.registry import (
    get_target, options_for, register_target, target_names, targets,
)

__all__ = ["Generation", "Target", "get_target", "options_for", "register_target", "target_names", "targets"]
