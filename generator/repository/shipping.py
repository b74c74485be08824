"""Which files of ``generator/runtime`` a Python-backend stage ships, read from its imports.

A stage's entry module becomes ``1/model.py``; every runtime module it imports (``from .
import x``, ``import x``, ``from .pkg import y``, also inside functions), transitively, is
copied beside it under its own name, and a sub-package it touches is copied whole. So a
new runtime module ships with the stages that import it, without editing a list here.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

from generator.resources import runtime_file

_PACKAGE = "generator.runtime"


def runtime_root() -> Path:
    """The ``generator/runtime`` folder."""
    return runtime_file("__init__.py").parent


def _unit(root: Path, name: str) -> Optional[str]:
    """``name`` (a top-level name inside the runtime) as a shippable unit: ``x.py`` or package ``x``."""
    if (root / name / "__init__.py").is_file():
        return name
    if (root / f"{name}.py").is_file():
        return f"{name}.py"
    return None


def _imported_names(tree: ast.AST, package_parts: Tuple[str, ...]) -> Iterator[str]:
    """Top-level runtime names an AST imports. ``package_parts``: the module's folder,
    relative to the runtime root (``()`` for top-level modules), to resolve relative imports."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _absolute(alias.name)
        elif isinstance(node, ast.ImportFrom):
            yield from _from_import(node, package_parts)


def _absolute(dotted: str) -> Iterator[str]:
    # inside Triton the runtime modules are top level ("import boxes"); in the package they
    # may also be named in full ("generator.runtime.boxes")
    if dotted.startswith(_PACKAGE + "."):
        dotted = dotted[len(_PACKAGE) + 1:]
    yield dotted.split(".")[0]


def _from_import(node: ast.ImportFrom, package_parts: Tuple[str, ...]) -> Iterator[str]:
    if node.level == 0:
        if node.module == _PACKAGE:
            yield from (alias.name for alias in node.names)
        elif node.module:
            yield from _absolute(node.module)
        return
    depth = len(package_parts) - (node.level - 1)  # "from .." climbs one package per extra dot
    if depth < 0:
        return  # above the runtime: not ours
    base = package_parts[:depth]
    if base:  # inside a sub-package: the package itself is the unit
        yield base[0]
    elif node.module:
        yield node.module.split(".")[0]
    else:
        yield from (alias.name for alias in node.names)


def _sources(root: Path, unit: str) -> List[Tuple[Path, Tuple[str, ...]]]:
    """The Python files of a unit with the package each lives in."""
    path = root / unit
    if path.is_file():
        return [(path, ())]
    return [(p, p.parent.relative_to(root).parts) for p in sorted(path.rglob("*.py")) if "__pycache__" not in p.parts]


def shipped_units(entry: str, root: Optional[Path] = None) -> List[str]:
    """The runtime modules (``x.py``) and packages (``x``) that ``entry`` needs, entry first."""
    root = root or runtime_root()
    if _unit(root, Path(entry).stem) != entry:
        raise FileNotFoundError(f"runtime entry module missing from the installation: {root / entry}")
    order, seen, todo = [entry], {entry}, [entry]
    while todo:
        for path, parts in _sources(root, todo.pop()):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for name in _imported_names(tree, parts):
                unit = _unit(root, name)
                if unit is not None and unit not in seen and unit != "__init__.py":
                    seen.add(unit)
                    order.append(unit)
                    todo.append(unit)
    return [order[0]] + sorted(order[1:])


def stage_files(entry: str, root: Optional[Path] = None) -> Dict[str, Path]:
    """``1/...`` -> source for a stage whose code is ``entry``: it becomes ``1/model.py``,
    the modules and packages it imports keep their names."""
    root = root or runtime_root()
    entry_unit, *helpers = shipped_units(entry, root)
    files: Dict[str, Path] = {"1/model.py": root / entry_unit}
    for unit in helpers:
        for path, _ in _sources(root, unit):
            files[f"1/{path.relative_to(root).as_posix()}"] = path
    return files


def shipped_names(entry: str) -> Set[str]:
    """The ``1/`` file names a stage of ``entry`` ships (for tests and docs)."""
    return set(stage_files(entry))
