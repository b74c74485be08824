"""What ``tritonforge deploy`` reads from a generated repository: its ``tritonforge.json``
(target, ensemble, backends, options) and ``requirements.txt``. A folder that is not a
generated repository is refused before anything is written, naming the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

from generator.errors import UsageError
from generator.repository.manifest import MANIFEST, read_manifest

REQUIRED_KEYS = ("target", "ensemble", "backends", "options")


@dataclass(frozen=True)
class RepositorySource:
    """A generated repository, as deploy sees it."""

    path: Path
    target: str
    ensemble: str
    backends: Tuple[str, ...]
    options: dict
    requirements: List[str] = field(default_factory=list)  # lines of its requirements.txt ([] when absent)
    runtime: Optional[str] = None  # the detector runtime of embedded/cpu repositories (None: ONNX Runtime)
    plan_missing: bool = False  # a TensorRT repository whose plan build_plans.sh has yet to build

    @property
    def needs_gpu(self) -> bool:
        """A TensorRT detector runs on a GPU (gpu and jetson targets, or a plugin with that backend)."""
        return "tensorrt" in self.backends

    @property
    def model_name(self) -> str:
        """The detector's model name (the ensemble is ``<name>_ensemble``)."""
        return str(self.options.get("name") or self.ensemble)

    @property
    def batching_stages(self) -> int:
        """Inner models that batch dynamically (preprocess, detector, postprocess), 0 without it."""
        return 3 if self.options.get("dynamic_batching", True) else 0


def _requirements(path: Path) -> List[str]:
    file = path / "requirements.txt"
    if not file.is_file():
        return []
    return [line.rstrip() for line in file.read_text(encoding="utf-8").splitlines()]


def _plan_missing(path: Path, info: dict) -> bool:
    plan = info.get("plan")
    return isinstance(plan, dict) and "build" in plan and \
        not (path / str(info["options"].get("name", "")) / "1" / "model.plan").is_file()


def read_repository(path: Path) -> RepositorySource:
    """The repository at ``path``; refuses a folder ``tritonforge generate`` did not write."""
    path = Path(path)
    info = read_manifest(path, REQUIRED_KEYS)
    if not (path / info["ensemble"] / "config.pbtxt").is_file():
        raise UsageError(f"{path / MANIFEST}: its ensemble {info['ensemble']!r} has no "
                         f"{path / info['ensemble'] / 'config.pbtxt'}")
    runtime = info.get("runtime", {}).get("chosen") if isinstance(info.get("runtime"), dict) else None
    runtime = runtime or info["options"].get("runtime")
    return RepositorySource(path=path.absolute(), target=str(info["target"]), ensemble=str(info["ensemble"]),
                            backends=tuple(info["backends"]), options=dict(info["options"]),
                            requirements=_requirements(path), runtime=runtime,
                            plan_missing=_plan_missing(path, info))
