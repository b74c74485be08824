"""Files a Python stage ships are read from its entry module's imports."""

import pytest

from generator.repository.shipping import runtime_root, shipped_units, stage_files


@pytest.fixture()
def root(tmp_path):
    """A small runtime: every way a stage module imports its helpers."""
    files = {
        "entry.py": "import numpy as np\ntry:\n    from . import helper, pkg\nexcept ImportError:\n"
                    "    import helper\n    import pkg\n\ndef later():\n    from .lazy import thing\n",
        "helper.py": "from .deep import x\n",
        "deep.py": "import os\n",
        "lazy.py": "",
        "unused.py": "",
        "pkg/__init__.py": "from .impl import f\n",
        "pkg/impl.py": "from .. import outside\nfrom ..letter import g\n",
        "pkg/sub/__init__.py": "",
        "outside.py": "",
        "letter.py": "from generator.runtime import absolute\n",
        "absolute.py": "",
        "other.py": "import helper\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_transitive_closure_of_the_imports(root):
    assert shipped_units("entry.py", root) == [
        "entry.py", "absolute.py", "deep.py", "helper.py", "lazy.py", "letter.py", "outside.py", "pkg"]


def test_entry_becomes_model_py_and_packages_ship_whole(root):
    files = stage_files("entry.py", root)
    assert files["1/model.py"] == root / "entry.py"
    assert {"1/pkg/__init__.py", "1/pkg/impl.py", "1/pkg/sub/__init__.py", "1/helper.py"} <= set(files)
    assert "1/entry.py" not in files and "1/unused.py" not in files and "1/other.py" not in files
    assert all(source == root / rel[2:] for rel, source in files.items() if rel != "1/model.py")


def test_missing_entry_is_an_error(root):
    with pytest.raises(FileNotFoundError, match="nothere.py"):
        shipped_units("nothere.py", root)


def test_the_real_stages_ship_what_they_import():
    for entry in ("preprocess.py", "preprocess_gpu.py", "postprocess.py", "detector.py"):
        units = shipped_units(entry)
        assert units[0] == entry and "stage_utils.py" in units, entry
        for unit in units:
            assert (runtime_root() / unit).exists(), unit
    assert "__init__.py" not in stage_files("postprocess.py")  # generator/runtime's own package file stays home
