"""``tritonforge demo``: the whole pipeline on synthetic data, served and measured."""

from __future__ import annotations

from pathlib import Path

import click

FOLDER = click.Path(file_okay=False, path_type=Path)


@click.command()
@click.option("--out", type=FOLDER, default=Path("model_repository"), show_default=True,
              help="Repository folder (a previous tritonforge repository there is replaced).")
@click.option("--budget", "minutes", type=float, default=None, metavar="MINUTES",
              help="Time for the whole run [default: 9, with --quick 3]; each training step sizes its epochs to "
                   "its share from the speed it measures.")
@click.option("--quick", is_flag=True, help="A small run (3 minutes, smaller data and images) for a first look and "
                                            "the tests.")
@click.option("--work", type=FOLDER, default=None,
              help="Keep data, checkpoints and ONNX here (default: a temporary folder).")
@click.option("--epochs", "max_epochs", type=int, default=None,
              help="At most this many epochs per training step (the budget may choose fewer).")
@click.option("--images", "train_images", type=int, default=None, help="Override the number of training images.")
@click.option("--requests", type=int, default=None, help="Requests per protocol for the latency summary.")
@click.option("--keep-server", is_flag=True, help="Leave the server running at the end (Ctrl-C stops it).")
def demo(out, minutes, quick, work, max_epochs, train_images, requests, keep_server) -> None:
    """Whole pipeline on the CPU within a time budget: synthetic data, training, ONNX, repository, served,
    requests, report."""
    from generator.demo import budget_from, run_demo

    budget = budget_from(quick, minutes=minutes, max_epochs=max_epochs, train_images=train_images, requests=requests)
    run_demo(out, budget, work=work, keep_server=keep_server, echo=click.echo)


COMMANDS = [demo]
