"""The generated repository ``tritonforge tune`` works on: its manifest, its ensemble and
the role of each composing model, every stage's config as Triton parses it.

Roles come from the ensemble's steps (the first step is the preprocess, the model named by
the manifest's ``options.name`` is the detector, any other step is a postprocess), so a
repository whose detector runs NMS itself (no postprocess step) is read the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from generator.errors import UsageError
from generator.repository.manifest import MANIFEST, read_manifest



@dataclass
class TuneRepository:
    """A generated repository, read once; ``configs`` are Triton ``ModelConfig`` messages."""

    path: Path
    manifest: dict
    ensemble: str
    roles: Dict[str, str]  # role ("preprocess", "detector", "postprocess") -> model name
    texts: Dict[str, str] = field(default_factory=dict)  # model -> config.pbtxt text as on disk
    configs: Dict[str, object] = field(default_factory=dict)  # model -> ModelConfig

    @property
    def target(self) -> str:
        return str(self.manifest.get("target", ""))

    @property
    def detector(self) -> str:
        return self.roles["detector"]

    @property
    def composing(self) -> List[str]:
        """The ensemble's models in step order (the ensemble itself excluded)."""
        return [name for name in self.configs if name != self.ensemble]

    def config_path(self, model: str) -> Path:
        return self.path / model / "config.pbtxt"

    def version_dir(self, model: str) -> Path:
        return self.path / model / "1"


def _read_config(path: Path, model: str):
    from generator.repository.render import parse_config

    file = path / model / "config.pbtxt"
    if not file.is_file():
        raise UsageError(f"{file}: not found (the ensemble in {MANIFEST} names model {model!r})")
    text = file.read_text()
    return text, parse_config(text, str(file))


def _roles(steps: List[str], detector: str, where: str) -> Dict[str, str]:
    if detector not in steps:
        raise UsageError(f"{where}: the ensemble's steps {steps} do not include the detector {detector!r} "
                         f"(options.name in {MANIFEST})")
    roles = {"detector": detector}
    if steps[0] != detector:
        roles["preprocess"] = steps[0]
    rest = [s for s in steps[1:] if s != detector]
    if len(rest) > 1:
        raise UsageError(f"{where}: expected preprocess -> detector -> postprocess steps, got {steps}")
    if rest:
        roles["postprocess"] = rest[0]
    return roles


def read_repository(path: Path) -> TuneRepository:
    """Read and check a generated repository; UsageError naming the file when it is not one."""
    path = Path(path).absolute()
    manifest = read_manifest(path, ("ensemble", "options", "target"))
    ensemble = str(manifest["ensemble"])
    ens_text, ens_config = _read_config(path, ensemble)
    if ens_config.platform != "ensemble":
        raise UsageError(f"{path / ensemble / 'config.pbtxt'}: platform is {ens_config.platform!r}, not 'ensemble'")
    steps = [step.model_name for step in ens_config.ensemble_scheduling.step]
    detector = str(manifest["options"].get("name", ""))
    roles = _roles(steps, detector, str(path / ensemble / "config.pbtxt"))
    repo = TuneRepository(path, manifest, ensemble, roles)
    for model in steps:
        repo.texts[model], repo.configs[model] = _read_config(path, model)
    repo.texts[ensemble], repo.configs[ensemble] = ens_text, ens_config
    return repo


def fixed_batch(repo: TuneRepository) -> Optional[int]:
    """The detector graph's fixed batch (manifest signature, or the ``fixed_batch`` parameter), else None."""
    batch = (repo.manifest.get("signature") or {}).get("batch")
    param = repo.configs[repo.detector].parameters.get("fixed_batch")
    if param is not None and param.string_value not in ("", "0"):
        batch = int(param.string_value)
    return int(batch) if batch else None
