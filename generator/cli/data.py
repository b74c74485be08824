"""``tritonforge data``: datasets."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def data() -> None:
    """Datasets: synthesize a deterministic shapes dataset in YOLO format."""


@data.command("synth")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Dataset folder.")
@click.option("--images", type=int, default=500, show_default=True, help="Images in all (train + val).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--imgsz", type=int, default=256, show_default=True, help="Long side of the images.")
@click.option("--classes", type=int, default=3, show_default=True)
@click.option("--val-fraction", type=float, default=0.2, show_default=True)
@click.option("--force", is_flag=True, help="Replace a non-empty --out.")
def data_synth(out, images, seed, imgsz, classes, val_fraction, force) -> None:
    """Render a synthetic shapes dataset (same --seed, same bytes)."""
    from generator.data.synth import synthesize

    yaml_path = synthesize(out, images, seed, imgsz=imgsz, classes=classes, val_fraction=val_fraction, force=force)
    click.echo(f"wrote {yaml_path}")


COMMANDS = [data]
