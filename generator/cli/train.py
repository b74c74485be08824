"""``tritonforge train | distill | prune``: make a checkpoint (train from data, distil from a
teacher, prune channels and fine-tune)."""

from __future__ import annotations

from pathlib import Path

import click

from generator.cli.common import echo_unless, field_default, print_json
from generator.cli.onnx_options import imgsz_option, layout_option, scores_option
from generator.compress.config import DistillConfig, KDWeights, PruneConfig
from generator.compress.prune.importance import importance_names
from generator.training.precision import AMP_MODES
from generator.training.trainer import TrainConfig

CHECKPOINT = click.Path(dir_okay=False, path_type=Path)
MAX_BUDGET_EPOCHS = 1000  # --time-budget without --epochs: the budget alone decides


def _train_default(name: str):
    return field_default(TrainConfig, name)


def _distill_default(name: str):
    return field_default(DistillConfig, name)


def _kd_default(name: str):
    return field_default(KDWeights, name)


def _prune_default(name: str):
    return field_default(PruneConfig, name)


def _report_training(result) -> None:
    """The last line of train and distill: where the checkpoint is, how it was trained and how good it is."""
    how = f"{result.epochs} epoch{'s' if result.epochs != 1 else ''} in {result.precision}"
    if result.plan:
        how += f", sized to the {result.plan['budget_s']:.0f} s budget"
    click.echo(f"wrote {result.checkpoint} after {result.seconds:.0f} s ({how}): "
               f"mAP50 {result.metrics.get('map50', 0):.3f}, mAP50-95 {result.metrics.get('map50_95', 0):.3f} (val)")


def amp_option():
    """``--amp`` (on), ``--amp force``, ``--amp off`` (the default)."""
    return click.option("--amp", type=click.Choice(AMP_MODES), default="off", is_flag=False, flag_value="on",
                        show_default=True,
                        help="Mixed precision: bf16 autocast on CPUs with AMX/AVX512-BF16, fp16 with a gradient "
                             "scaler on CUDA; fp32 (said so) on CPUs without bf16 units. '--amp force': bf16 "
                             "autocast on any CPU (emulated where there are no bf16 units: slower; for testing).")


@click.command()
@click.option("--data", required=True, help="data YAML, dataset folder, or COCO JSON.")
@click.option("--model", default=_train_default("model"), show_default=True,
              help="Family name, or a checkpoint to start from.")
@click.option("--imgsz", type=int, default=_train_default("imgsz"), show_default=True)
@click.option("--epochs", type=int, default=None,
              help=f"Epochs [default: {_train_default('epochs')}]; with --time-budget, the most it may choose.")
@click.option("--time-budget", type=float, default=None, metavar="SECONDS",
              help="Size the epochs to this many seconds (final validation included) from the speed measured on "
                   "the first batches; the learning-rate schedule ends with the chosen epochs.")
@amp_option()
@click.option("--batch", type=int, default=_train_default("batch"), show_default=True)
@click.option("--lr", type=float, default=_train_default("lr"), show_default=True,
              help="AdamW learning rate (cosine decay).")
@click.option("--mosaic", type=float, default=_train_default("mosaic"), show_default=True,
              help="Probability of 4-image mosaic.")
@click.option("--eval-every", type=int, default=_train_default("eval_every"), show_default=True,
              help="Validate every N epochs (0: at the end).")
@click.option("--seed", type=int, default=_train_default("seed"), show_default=True)
@click.option("--workers", type=int, default=_train_default("workers"), show_default=True,
              help="DataLoader worker processes.")
@click.option("--device", default=_train_default("device"), show_default=True, help="auto | cpu | cuda[:N].")
@click.option("--out", type=CHECKPOINT, required=True, help="Checkpoint to write.")
@click.option("--resume", is_flag=True, help="Continue the run stored in --out.")
def train(out: Path, epochs, **options) -> None:
    """Train a detector; the checkpoint embeds family, class names and image size."""
    from generator.training.trainer import train as run

    if epochs is None:
        epochs = MAX_BUDGET_EPOCHS if options["time_budget"] else _train_default("epochs")
    _report_training(run(TrainConfig(out=str(out), epochs=epochs, **options), echo=click.echo))


@click.command()
@click.option("--teacher", type=CHECKPOINT, required=True,
              help="Teacher: a checkpoint, or a detector ONNX in any supported output layout (e.g. an Ultralytics "
                   "export), run by ONNX Runtime.")
@click.option("--student", required=True, help="Student family name or checkpoint.")
@click.option("--data", required=True, help="data YAML, dataset folder, or COCO JSON.")
@click.option("--unlabelled", "--unlabeled", "unlabelled", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Extra images without labels (teacher targets only).")
@click.option("--epochs", type=int, default=_distill_default("epochs"), show_default=True)
@imgsz_option(help="Default: the teacher's. For an ONNX teacher with dynamic height/width: its size H,W.")
@layout_option()
@scores_option()
@click.option("--batch", type=int, default=_distill_default("batch"), show_default=True)
@click.option("--lr", type=float, default=_distill_default("lr"), show_default=True)
@click.option("--kd-obj", type=float, default=_kd_default("obj"), show_default=True, help="Objectness term weight.")
@click.option("--kd-cls", type=float, default=_kd_default("cls"), show_default=True,
              help="Objectness-scaled class term weight.")
@click.option("--kd-box", type=float, default=_kd_default("box"), show_default=True,
              help="Objectness-scaled box (DFL KL) term weight.")
@click.option("--kd-feat", type=float, default=_kd_default("feat"), show_default=True,
              help="Neck feature imitation weight (0: off; PyTorch teachers only).")
@click.option("--seed", type=int, default=_distill_default("seed"), show_default=True)
@amp_option()
@click.option("--out", type=CHECKPOINT, required=True, help="Student checkpoint.")
def distill(kd_obj, kd_cls, kd_box, kd_feat, amp, **options):
    """Teacher -> student knowledge distillation (objectness-scaled, with feature imitation; an ONNX
    teacher teaches through its detections)."""
    from generator.compress.distill import run_distill

    weights = KDWeights(obj=kd_obj, cls=kd_cls, box=kd_box, feat=kd_feat)
    _report_training(run_distill(DistillConfig(weights=weights, **options), echo=click.echo, amp=amp))


@click.command()
@click.option("--model", "checkpoint", type=CHECKPOINT, required=True, help="Trained checkpoint.")
@click.option("--ratio", type=float, required=True, help="Fraction of channels to remove, in (0, 1).")
@click.option("--importance", type=click.Choice(importance_names()), default=_prune_default("importance"),
              show_default=True)
@click.option("--global", "global_pruning", is_flag=True, help="Rank channels across all layers (uneven widths).")
@click.option("--round-to", type=int, default=None, help="Keep channel counts multiples of this (e.g. 8).")
@click.option("--data", type=click.Path(path_type=Path), required=True,
              help="Dataset for fine-tuning (and Taylor gradients).")
@click.option("--steps", type=int, default=_prune_default("steps"), show_default=True, help="Iterative pruning steps.")
@click.option("--step-iters", type=int, default=_prune_default("step_iters"), show_default=True,
              help="Recovery batches between steps.")
@click.option("--finetune-epochs", type=int, default=_prune_default("finetune_epochs"), show_default=True)
@click.option("--teacher", type=CHECKPOINT, default=None,
              help="Distil from this checkpoint while fine-tuning (e.g. the unpruned model).")
@click.option("--imgsz", type=int, default=None)
@click.option("--batch", type=int, default=_prune_default("batch"), show_default=True)
@click.option("--lr", type=float, default=_prune_default("lr"), show_default=True)
@click.option("--seed", type=int, default=_prune_default("seed"), show_default=True)
@click.option("--device", default=_prune_default("device"), show_default=True)
@amp_option()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--out", type=CHECKPOINT, required=True)
def prune(as_json, amp, **options):
    """Structured channel pruning (Torch-Pruning), then fine-tuning; the checkpoint loads like any other."""
    from generator.compress.prune.run import prune_and_finetune

    r = prune_and_finetune(PruneConfig(**options), echo=echo_unless(as_json), amp=amp)
    if as_json:
        print_json(r)
        return
    rep = r["report"]
    click.echo(f"wrote {options['out']}: params {rep['params_after']:,} "
               f"({rep['params_after'] / rep['params_before']:.0%}), GFLOPs {rep['gflops_after']:.3f} "
               f"({rep['gflops_after'] / rep['gflops_before']:.0%}); metrics {r['metrics']}")


COMMANDS = [train, distill, prune]
