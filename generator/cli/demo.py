"""``tritonforge demo``: the whole pipeline on synthetic data, served and measured."""

from __future__ import annotations

from pathlib import Path

import click

FOLDER = click.Path(file_okay=False, path_type=Path)


@click.command()
@click.option("--out", type=FOLDER, default=Path("model_repository"), show_default=True,
              help="Repository folder (a previous tritonforge repository there is replaced).")
@click.option("--quick", is_flag=True, help="A small budget (3 to 4 minutes on 2 cores) for a first look and the tests.")
@click.option("--work", type=FOLDER, default=None,
              help="Keep data, checkpoints and ONNX here (default: a temporary folder).")
@click.option("--epochs", type=int, default=None, help="Override the budget's training epochs.")
@click.option("--images", "train_images", type=int, default=None, help="Override the number of training images.")
@click.option("--requests", type=int, default=None, help="Requests per protocol for the latency summary.")
@click.option("--keep-server", is_flag=True, help="Leave the server running at the end (Ctrl-C stops it).")
def demo(out, quick, work, epochs, train_images, requests, keep_server) -> None:
    """Whole pipeline on the CPU: synthetic data, training, ONNX, repository, served, requests, report."""
    from generator.demo import budget_from, run_demo

    budget = budget_from(quick, epochs=epochs, train_images=train_images, requests=requests)
    run_demo(out, budget, work=work, keep_server=keep_server, echo=click.echo)


COMMANDS = [demo]
