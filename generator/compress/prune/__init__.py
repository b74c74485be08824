"""Structured channel pruning with Torch-Pruning's dependency graph.

``engine.prune_model`` physically removes convolution channels (and everything coupled
to them: BatchNorms, the next layers' input channels, both sides of residual adds and
concats), so the pruned model is an ordinary, smaller PyTorch module that exports to
ONNX like any other. ``layers`` says what is never pruned (the head's output
convolutions, the ShuffleNetV2 trunk) and why.

A pruned model no longer fits its family's factory: ``generator.compress.prune_layout``
records every layer shape in the checkpoint and rebuilds it on load.

``run.prune_and_finetune`` is the step behind ``tritonforge prune``: load, prune in
steps (optionally recovering for a few batches between steps, ``finetune``), fine-tune
with ``generator.training.trainer.train``, optionally distilling from a teacher, and
write the checkpoint atomically. Its options: ``generator.compress.config.PruneConfig``.

Modules: ``importance`` (registry of criteria; no torch), ``layers``, ``engine``,
``finetune``, ``report`` (``PruneReport``), ``run``. This ``__init__`` imports nothing
heavy, so the importance names are available to ``--help``.
"""
