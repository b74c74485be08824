"""Light imports: the SDK and --help need only the base dependencies."""

import subprocess
import sys

import pytest


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_client_imports_neither_torch_nor_generator():
    r = _run("import sys, client; heavy = [m for m in ('torch', 'generator', 'cv2', 'onnxruntime') if m in sys.modules]; "
             "print(heavy); sys.exit(1 if heavy else 0)")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("argv", [["--help"], ["data", "synth", "--help"], ["bench", "variants", "--help"],
                                  ["bench", "load", "--help"]] + [[cmd, "--help"] for cmd in (
    "export", "generate", "serve", "detect", "demo", "train", "distill", "prune", "quantize", "build", "eval", "bench")])
def test_help_does_not_import_torch(argv):
    code = ("import sys; from click.testing import CliRunner; from generator.cli import cli; "
            f"r = CliRunner().invoke(cli, {argv!r}); assert r.exit_code == 0, r.output; "
            "heavy = [m for m in ('torch', 'onnxruntime', 'cv2', 'tensorrt') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    r = _run(code)
    assert r.returncode == 0, r.stdout + r.stderr


def test_console_entry_points():
    r = subprocess.run([sys.executable, "-m", "generator", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "tritonforge" in r.stdout
