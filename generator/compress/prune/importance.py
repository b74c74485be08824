"""Registry of channel-importance criteria for structured pruning.

Each entry is a factory of a Torch-Pruning group importance, built per call (some keep
state). Torch-Pruning is imported only when a factory runs, so the names (the CLI's
``--importance`` choices) are available without torch.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List

from generator._lazy import require
from generator.errors import UsageError

# name -> factory of a Torch-Pruning group importance
IMPORTANCES: Dict[str, Callable[[], Any]] = {}
# importances that read ``.grad``: gradients of the detection loss are accumulated first
NEEDS_GRADIENTS: set = set()


def _tp():
    return require("torch_pruning", "to prune a detector")


def register_importance(name: str, factory: Callable[[], Any], needs_gradients: bool = False) -> None:
    """Add an importance criterion; a name already registered is refused."""
    if name in IMPORTANCES:
        raise ValueError(f"pruning importance {name!r} is already registered")
    IMPORTANCES[name] = factory
    if needs_gradients:
        NEEDS_GRADIENTS.add(name)


def importance_names() -> List[str]:
    """Registered importance names, in registration order."""
    return list(IMPORTANCES)


def check_importance(name: str) -> None:
    """Raise a UsageError listing the choices when ``name`` is not registered."""
    if name not in IMPORTANCES:
        raise UsageError(f"unknown pruning importance {name!r}; choose from {', '.join(IMPORTANCES)}")


def make_importance(name: str):
    """A fresh importance estimator for a registered name; unknown names list the choices."""
    check_importance(name)
    return IMPORTANCES[name]()


def needs_gradients(name: str) -> bool:
    """Whether ``name`` reads gradients of the detection loss."""
    return name in NEEDS_GRADIENTS


register_importance("magnitude", lambda: _tp().importance.MagnitudeImportance(p=2))
register_importance("bn-scale", lambda: _tp().importance.BNScaleImportance())
register_importance("taylor", lambda: _tp().importance.TaylorImportance(), needs_gradients=True)
register_importance("lamp", lambda: _tp().importance.LAMPImportance(p=2))
