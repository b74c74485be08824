"""Reproducers: the exact command (and versions) that made an output, written beside it.

The caller passes the command: the CLI the one it parsed, the demo the equivalent
command of each step it runs, so a record never claims a command that did not make it.
"""

from __future__ import annotations

import platform
import shlex
from pathlib import Path
from typing import Mapping, Optional, Sequence

from generator.atomic import write_json


def command_line(command: str, options: Mapping[str, object], positional: Sequence[object] = ()) -> list:
    """``["tritonforge", *command.split(), *positional, --flag value ...]`` from option values.

    Keys are parameter names (``max_batch`` -> ``--max-batch``); ``None`` and ``False`` are
    left out, ``True`` is a bare flag, lists and tuples repeat the flag (or join with commas
    where the option takes one comma-separated value: pass a string then).
    """
    args = ["tritonforge", *command.split(), *(str(p) for p in positional)]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag, str(value)]
    return args


def format_command(args: Optional[Sequence[str]]) -> str:
    """A shell-quoted command line ("" when unknown)."""
    return " ".join(shlex.quote(str(a)) for a in args) if args else ""


def reproducer_path(out: Path, step: str) -> Path:
    """``model.onnx`` + ``export`` -> ``model.onnx.export.json``."""
    return Path(str(out) + f".{step}.json")


def write_reproducer(out: Path, step: str, command: Optional[Sequence[str]], versions: Mapping[str, str] = (),
                     **info: object) -> Path:
    """Write ``OUT.STEP.json``: the command, tritonforge / Python / library versions, and ``info``."""
    from generator import __version__

    record = {
        "step": step, "command": format_command(command), "tritonforge": __version__,
        "python": platform.python_version(), "versions": dict(versions), **info,
    }
    return write_json(reproducer_path(out, step), record)
