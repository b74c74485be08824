"""Write a repository atomically: everything goes into a temporary sibling folder,
which replaces the destination by a rename only once it is complete."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Union

from generator.errors import UsageError
from generator.repository.render import render_config
from generator.repository.targets import ModelDir

FileSource = Union[Path, bytes]


def check_destination(out: Path, force: bool) -> None:
    """Refuse a non-empty destination unless ``force``; refuse files and missing parents."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(f"--out {out} exists and is not empty; pass --force to replace it")
    if not out.parent.is_dir():
        raise UsageError(f"parent folder of --out does not exist: {out.parent}")


def _put(dest: Path, source: FileSource) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, bytes):
        dest.write_bytes(source)
    else:
        shutil.copyfile(source, dest)


def write_repository(out: Path, models: List[ModelDir], root_files: Dict[str, FileSource], force: bool) -> Path:
    """Render every config (validated by Triton's schema) first, then assemble and swap in."""
    out = Path(out).absolute()
    check_destination(out, force)
    rendered = {m.stage.name: render_config(m.stage) for m in models}  # fails before anything is written
    if len(rendered) != len(models):
        raise UsageError("two models of the repository have the same name")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for model in models:
            folder = tmp / model.stage.name
            _put(folder / "config.pbtxt", rendered[model.stage.name].encode())
            for rel, source in sorted(model.files.items()):
                _put(folder / rel, source)
        for rel, source in sorted(root_files.items()):
            _put(tmp / rel, source)
            if rel.endswith(".sh"):
                os.chmod(tmp / rel, 0o755)
        os.chmod(tmp, 0o755)
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EXDEV):  # kernel or file system without it
        return False
    raise OSError(code, os.strerror(code), str(b))


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``. An existing ``out`` is exchanged with ``tmp`` in one step
    where the system allows it (so a kill at any moment leaves the old or the new
    repository, never neither), else moved aside first; the old one is removed after."""
    if not out.exists():
        os.rename(tmp, out)
        return
    if not out.is_symlink() and _exchange(tmp, out):
        shutil.rmtree(tmp, ignore_errors=True)  # now the previous repository
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, old / out.name)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old / out.name, out)  # put the previous repository back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
