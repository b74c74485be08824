"""The distribution carries every package, the templates and the runtime code."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def _declared_packages():
    import tomllib

    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib")
def test_every_package_is_declared():
    found = {p.parent.relative_to(ROOT).as_posix().replace("/", ".")
             for top in ("generator", "client") for p in (ROOT / top).rglob("__init__.py")}
    assert found | {"generator.templates"} == _declared_packages()


@pytest.mark.slow
def test_wheel_contains_templates_and_runtime(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("tritonforge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {p.relative_to(ROOT / "templates").as_posix() for p in (ROOT / "templates").rglob("*.j2")}
    assert {f"generator/templates/{t}" for t in templates} <= names
    runtime = {p.name for p in (ROOT / "generator" / "runtime").glob("*.py")}
    assert {f"generator/runtime/{r}" for r in runtime} <= names
    assert not any(n.startswith(("tests/", "templates/")) for n in names)
