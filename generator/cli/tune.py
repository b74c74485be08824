"""``tritonforge tune``: sweep a generated repository's batching, instances and detector
runtime on a Triton server it starts, keep the best throughput under a p99 bound."""

from __future__ import annotations

from pathlib import Path

import click

from generator.cli.common import field_default
from generator.tune.run import TuneOptions

FOLDER = click.Path(file_okay=False, path_type=Path)


def _default(name: str):
    return field_default(TuneOptions, name)


def _knob_list(spec):
    return tuple(k.strip() for k in spec.split(",") if k.strip()) if spec else None


@click.command()
@click.argument("repository", type=FOLDER)
@click.option("--p99-ms", type=float, default=_default("p99_ms"), show_default=True,
              help="Latency bound: a candidate's score is its best img/s at a concurrency whose p99 is within it.")
@click.option("--budget", "budget_min", type=float, default=_default("budget_min"), show_default=True,
              help="Minutes for the whole run (server start, search, final confirmation).")
@click.option("--concurrency", default=",".join(map(str, _default("levels"))), show_default=True,
              help="Concurrency levels measured per candidate (comma-separated).")
@click.option("--duration", "duration_s", type=float, default=_default("duration_s"), show_default=True,
              help="Seconds per concurrency level.")
@click.option("--images", type=FOLDER, default=None, help="Images to send [the built-in samples].")
@click.option("--knobs", default=None, help="Only these knobs (comma-separated) [all that apply].")
@click.option("--margin", type=float, default=100 * _default("margin"), show_default=True,
              help="Percent the winner must beat the default by in the final rounds to replace it.")
@click.option("--rounds", type=int, default=_default("rounds"), show_default=True,
              help="Final interleaved rounds of default vs winner (each scored by its best round).")
@click.option("--dry-run", is_flag=True, help="Measure and report; leave the repository's configs as they are.")
@click.option("--out", type=FOLDER, default=None, help="Folder for tune.json and tune.png [the repository].")
@click.option("--tritonserver", default=None, help="tritonserver binary (default: the one bundled in nvidia-pytriton).")
@click.option("--backend-directory", default=None, help="Backends of --tritonserver (default /opt/tritonserver/backends).")
def tune(repository, p99_ms, budget_min, concurrency, duration_s, images, knobs, margin, rounds, dry_run, out,
         tritonserver, backend_directory) -> None:
    """Tune REPOSITORY's max queue delay, preferred and max batch, instances per stage and detector runtime."""
    from generator.loadtest import parse_levels
    from generator.tune.report import format_table, summary
    from generator.tune.run import tune as run
    from generator.tune.space import describe

    opts = TuneOptions(p99_ms=p99_ms, budget_min=budget_min, levels=tuple(parse_levels(concurrency)),
                       duration_s=duration_s, margin=margin / 100, rounds=rounds, knobs=_knob_list(knobs),
                       images=images, tritonserver=tritonserver, backend_dir=backend_directory)
    result = run(repository, opts, out=out, dry_run=dry_run)
    for line in describe(result["knobs"]["not_searched"]):
        click.echo(line)
    click.echo(format_table(result["candidates"]))
    for line in summary(result):
        click.echo(line)
    _report_written(result, out or repository)


def _report_written(result: dict, out: Path) -> None:
    if result["dry_run"]:
        click.echo("--dry-run: the repository's configs are unchanged")
    elif result["written"]:
        click.echo(f"wrote {', '.join(result['written'])}")
    else:
        click.echo("configs unchanged (the default stays)")
    click.echo(f"report: {Path(out) / 'tune.json'}, {Path(out) / 'tune.png'}")


COMMANDS = [tune]
