"""The serving image: NGC's tritonserver:<release>-py3 (``-py3-igpu`` on Jetson) with the
pip packages the repository's Python stages import, and for ``--repository image`` the
repository itself in ``/models``. The image is built by the user from the generated
``Dockerfile``; its base is a build argument, so no registry is written into a file."""

from __future__ import annotations

import re
from typing import List

from generator.deploy.source import RepositorySource

# what every Python stage imports inside the official container (the cpu target's serve step)
STAGE_PACKAGES = ("numpy<2", "opencv-python-headless<4.12")
# the embedded detector runs inside the Python backend: its runtime comes from pip
EMBEDDED_RUNTIME = {None: "onnxruntime>=1.17", "onnxruntime": "onnxruntime>=1.17"}
MODELS = "/models"


def triton_tag(src: RepositorySource, release: str) -> str:
    """The NGC tag of the Triton release: ``24.10-py3``; Jetson's iGPU build ``24.10-py3-igpu``."""
    return f"{release}-py3-igpu" if src.target == "jetson" else f"{release}-py3"


def _package(line: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    return match.group(1).lower().replace("_", "-") if match and not line.lstrip().startswith("#") else ""


def image_requirements(src: RepositorySource) -> str:
    """``requirements.txt`` of the image: the repository's own lines, then what its stages need
    in the official container that the repository leaves to the serving environment."""
    lines: List[str] = [f"# pip packages of the {src.target} repository's Python stages inside NGC's tritonserver"]
    if src.requirements:
        lines += ["# from the repository's requirements.txt:"] + src.requirements
    have = {_package(line) for line in src.requirements} - {""}
    extra = list(STAGE_PACKAGES)
    if src.target == "embedded" and src.runtime in EMBEDDED_RUNTIME:
        extra.append(EMBEDDED_RUNTIME[src.runtime])
    missing = [p for p in extra if _package(p) not in have]
    if missing:
        lines += ["# added by tritonforge deploy:"] + missing
    return "\n".join(lines) + "\n"


def dockerfile(src: RepositorySource, tag: str, image: str, bake: bool, kserve: bool) -> str:
    """The generated ``Dockerfile`` (``templates/deploy/Dockerfile.j2``)."""
    from generator.repository.render import render_template

    return render_template("deploy/Dockerfile.j2", model_label=src.model_name, target=src.target, tag=tag, image=image,
                           bake=bake, kserve=kserve, repository_name=src.path.name, pycuda=src.needs_gpu,
                           plan_check=src.needs_gpu, model=src.model_name)
