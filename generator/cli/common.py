"""Helpers the command modules share: the command the user ran, quiet echo, JSON output,
and option defaults read from the library's config objects (defined once, there)."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any, Callable, List

import click

# where the root group keeps the arguments it parsed (ctx.meta is shared by every sub-context)
ARGV_KEY = "tritonforge.argv"


def invoked_command() -> List[str]:
    """The command the user ran, as ``["tritonforge", <args>...]``.

    The root group records the arguments it parsed, so the console script, ``python -m
    generator`` and click's test runner agree; outside a command, ``sys.argv`` is used.
    The CLI is the one layer that knows it: library functions take it as ``command=``.
    """
    ctx = click.get_current_context(silent=True)
    args = ctx.meta.get(ARGV_KEY) if ctx is not None else None
    if args is None:
        args = sys.argv[1:]
    return ["tritonforge", *args]


def _silent(_: str) -> None:
    pass


def echo_unless(quiet: bool) -> Callable[[str], None]:
    """``click.echo``, or a no-op where the command prints JSON (progress would corrupt it)."""
    return _silent if quiet else click.echo


def print_json(obj: Any) -> None:
    """Indented JSON on stdout (paths and other objects as strings)."""
    click.echo(json.dumps(obj, indent=2, default=str))


def field_default(config: type, name: str) -> Any:
    """The default of dataclass ``config``'s field ``name``: the CLI shows the library's defaults."""
    for f in dataclasses.fields(config):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise KeyError(f"{config.__name__}.{name} has no default")
    raise KeyError(f"{config.__name__} has no field {name!r}")


def json_option(help: str = "Print JSON."):
    """The ``--json`` flag (stored as ``as_json``)."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def protocol_option(default="grpc", help=None):
    """``--protocol grpc|http``."""
    return click.option("--protocol", type=click.Choice(PROTOCOLS), default=default,
                        show_default=default is not None, help=help)


PROTOCOLS = ("grpc", "http")  # TODO(integrate): the client SDK's protocol names, if it exports them lightly
