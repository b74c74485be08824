"""Writing the chosen configuration back into the repository, all files or none.

Each changed ``config.pbtxt`` is printed from its ``ModelConfig`` (Triton's schema, never
patched text), under the file's own header comments and one line saying it was tuned (the
p99 bound and the measured ratio: no date, so the same result writes the same bytes), and
parsed back before anything is written. ``tritonforge.json`` follows: its ``options`` take
the tuned values, a ``tuned`` entry records the knobs, and a changed runtime updates its
``runtime`` entry (and ``requirements.txt`` when that runtime needs a package). All of them
are replaced together (``generator.atomic.atomic_paths``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

from generator.errors import ConfigError
from generator.tune.knobs import Knobs
from generator.tune.repository import MANIFEST, TuneRepository

TUNED_PREFIX = "# Tuned by tritonforge tune"
# manifest options that mirror a knob of the same name
OPTION_KNOBS = ("max_batch_size", "queue_delay_us", "preprocess_instances", "detector_instances")


def tuned_line(p99_ms: float, ratio: Optional[float]) -> str:
    """The line each tuned config carries (ratio None: the default met the bound at no level)."""
    gain = (f"{ratio:.2f}x the default configuration's images/s" if ratio is not None
            else "the default configuration met it at no concurrency")
    return f"{TUNED_PREFIX} for p99 <= {p99_ms:g} ms: {gain} (tune.json lists every candidate)."


def header_comments(text: str) -> List[str]:
    """The leading comment lines of a config, without an earlier run's tuned line."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith(TUNED_PREFIX):
            lines.append(line)
    return lines


def config_text(config) -> str:
    """A ModelConfig in protobuf text format (repeated numbers on one line, as generated)."""
    from google.protobuf import text_format

    return text_format.MessageToString(config, use_short_repeated_primitives=True)


def tuned_text(old_text: str, config, line: str, where: str = "config.pbtxt") -> str:
    """``config`` printed in text format under ``old_text``'s header comments and ``line``;
    checked to parse back into the same message."""
    from generator.repository.render import parse_config

    text = "\n".join(header_comments(old_text) + [line]) + "\n" + config_text(config)
    if parse_config(text, where) != config:
        raise ConfigError(f"{where}: the tuned config does not round-trip through Triton's schema")
    return text


def updated_manifest(repo: TuneRepository, knobs: Knobs, default: Knobs, record: dict) -> str:
    """``tritonforge.json`` with the tuned options, the ``tuned`` record and the runtime."""
    manifest = json.loads(json.dumps(repo.manifest))  # a deep copy
    options = manifest["options"]
    for key in OPTION_KNOBS:
        if key in options and key in knobs:
            options[key] = knobs[key]
    manifest["tuned"] = {**record, "knobs": {k: list(v) if isinstance(v, tuple) else v for k, v in knobs.items()}}
    if knobs.get("runtime") != default.get("runtime"):
        entry = dict(manifest.get("runtime") or {"requested": default.get("runtime")})
        entry.update(chosen=knobs["runtime"], how="measured on the served ensemble by tritonforge tune")
        manifest["runtime"] = entry
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def requirements_text(repo: TuneRepository, runtime: str) -> bytes:
    """``requirements.txt`` for a runtime that needs a package (embedded), else b""."""
    from generator.repository.render import render_template
    from generator.repository.targets.embedded import RUNTIME_PACKAGES
    from generator.repository.targets.registry import targets

    package = RUNTIME_PACKAGES.get(runtime)
    if package is None:
        return b""
    return render_template("scripts/requirements_embedded.txt.j2", target=targets()[repo.target],
                           runtime=runtime, package=package).encode()


def tuned_files(repo: TuneRepository, configs: dict, knobs: Knobs, default: Knobs, record: dict) -> Dict[Path, bytes]:
    """Every file the chosen configuration changes -> its new bytes (nothing written yet)."""
    line = tuned_line(record["p99_ms"], record["ratio"])
    files = {repo.config_path(m): tuned_text(repo.texts[m], configs[m], line, str(repo.config_path(m))).encode()
             for m in configs if configs[m] != repo.configs[m]}
    files[repo.path / MANIFEST] = updated_manifest(repo, knobs, default, record).encode()
    if knobs.get("runtime") != default.get("runtime"):
        requirements = requirements_text(repo, str(knobs["runtime"]))
        if requirements:
            files[repo.path / "requirements.txt"] = requirements
    return files


def write_files(files: Dict[Path, bytes]) -> List[Path]:
    """Replace every file together: on any failure none of them changes."""
    from generator.atomic import atomic_paths

    with atomic_paths(*files) as tmps:
        for tmp, data in zip(tmps, files.values()):
            tmp.write_bytes(data)
    return list(files)
