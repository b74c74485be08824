"""The ``tritonforge`` command: one module per command group, each command parsing its
options and calling one library function. Project errors map to exit codes here, in
``ForgeGroup.invoke``. Heavy modules (torch, onnxruntime, cv2, tensorrt) are imported
inside the commands, so ``tritonforge --help`` and every ``COMMAND --help`` stay light.

    data.py        data synth
    train.py       train, distill, prune
    export.py      export, quantize, build
    repository.py  generate, serve, detect
    measure.py     eval, bench (variants | load)
    tune.py        tune
    deploy.py      deploy
    demo.py        demo
"""

from __future__ import annotations

from typing import Optional, Sequence

import click

from generator import __version__
from generator.cli.common import ARGV_KEY, invoked_command
from generator.errors import TritonForgeError

__all__ = ["cli", "main", "invoked_command"]


class ForgeGroup(click.Group):
    """The root group: records the arguments it parsed and maps project errors to exit codes."""

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        argv = list(args)  # parsing consumes ``args``; keep what the user typed for reproducers
        ctx = super().make_context(info_name, args, parent=parent, **extra)
        ctx.meta[ARGV_KEY] = argv
        return ctx

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TritonForgeError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=ForgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tritonforge")
def cli() -> None:
    """Make object detectors light and serve them on NVIDIA Triton."""


def _register() -> None:
    from generator.cli import data, demo, deploy, export, measure, repository, train, tune

    for module in (data, train, export, repository, measure, tune, deploy, demo):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Console entry point (``tritonforge``, ``python -m generator``)."""
    cli.main(args=argv, prog_name="tritonforge")
