"""Atomic outputs: every file or folder tritonforge writes appears whole or not at all.

One naming style for temporaries: ``.NAME.tmp-<pid>-<random>`` beside the destination,
so a crash leaves only a hidden sibling, never a half-written ``NAME``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Union

PathLike = Union[str, os.PathLike]


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{os.urandom(3).hex()}")


def _discard(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_paths(*paths: PathLike) -> Iterator[List[Path]]:
    """Temporary siblings for ``paths``, renamed onto them together when the block succeeds.

    If the block raises, every temporary is removed and the destinations keep their old
    contents; if a rename fails part-way, the files this call already put in place are
    removed again, so the outputs are never a mix of one run and another.
    """
    finals = [Path(p) for p in paths]
    tmps = [_tmp_name(p) for p in finals]
    done: List[Path] = []
    try:
        yield tmps
        for tmp, final in zip(tmps, finals):
            if tmp.exists():  # an output the block chose not to write is left alone
                os.replace(tmp, final)
                done.append(final)
    except BaseException:
        for tmp in tmps:
            _discard(tmp)
        for final in done:
            _discard(final)
        raise


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """One temporary sibling of ``path``; it replaces ``path`` when the block succeeds."""
    with atomic_paths(path) as (tmp,):
        yield tmp


def write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: PathLike, obj: object) -> Path:
    """Indented, key-sorted JSON with a final newline (stable diffs)."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def temp_dir_beside(out: PathLike) -> Path:
    """A fresh hidden folder next to ``out`` (same file system, so it can be renamed onto it)."""
    out = Path(out)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))


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


def replace_dir(tmp: PathLike, out: PathLike) -> None:
    """Rename the folder ``tmp`` onto ``out``.

    An existing ``out`` is exchanged with ``tmp`` in one step where the system allows it
    (a kill at any moment leaves the old or the new folder, never neither), else moved
    aside first and put back if the rename fails; the old one is removed after.
    """
    tmp, out = Path(tmp), Path(out)
    if not out.exists():
        os.rename(tmp, out)
        return
    if not out.is_symlink() and _exchange(tmp, out):
        shutil.rmtree(tmp, ignore_errors=True)  # now the previous folder
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, old / out.name)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old / out.name, out)  # put the previous folder back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(out: PathLike) -> Iterator[Path]:
    """A temporary folder beside ``out`` that replaces ``out`` when the block succeeds."""
    tmp = temp_dir_beside(out)
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
