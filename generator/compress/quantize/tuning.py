"""What stays float beyond the head: measured selection, then accuracy control.

``tune`` takes the full Q/DQ model (everything ONNX Runtime quantizes, head and decode
tail float) and returns the model to write: the groups measured selection keeps float
(``select``), plus the layers accuracy control returns to float (``accuracy``), all
applied to the full model by ``surgery.to_float``. What was timed and validated is the
model written.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from generator.compress.config import QuantizeConfig
from generator.compress.quantize.accuracy import SENSITIVITY_IMAGES, accuracy_control, local_errors
from generator.compress.quantize.graph import ExcludedNode
from generator.compress.quantize.select import RuntimeMeter, measured_selection
from generator.compress.quantize.surgery import quantized_nodes, to_float
from generator.errors import UsageError

RANKING_SHOWN = 20  # ranked layers recorded in the report besides the reverted ones


@dataclass
class Plan:
    """The options and inputs ``tune`` needs: ``validation`` is the val split (a
    ``DetectionData``) for accuracy control; ``echo`` gets progress lines."""

    cfg: QuantizeConfig
    sig: Any
    source_path: Path
    validation: Any = None
    echo: Optional[Callable[[str], None]] = None

    def say(self, msg: str) -> None:
        if self.echo is not None:
            self.echo(msg)


@dataclass
class Tuned:
    model: Any
    excluded: List[ExcludedNode] = field(default_factory=list)
    selection: Any = None
    accuracy: Any = None


def tune(plan: Plan, full, prepared, source, calib: np.ndarray, work: Path) -> Tuned:
    """The model to write and what was kept float beyond ``full``'s own exclusions, and why."""
    cfg = plan.cfg
    if cfg.select != "measured" and cfg.max_drop is None:
        return Tuned(full)
    float_inits = float_initializers(prepared)
    ops = {n.name: n.op_type for n in full.graph.node}
    tuned = Tuned(full)
    kept: List[str] = []
    if cfg.select == "measured":
        meter = RuntimeMeter(cfg.runtime, measurement_batch(calib, plan.sig.batch or cfg.measure_batch),
                             cfg.threads, cfg.measure_seconds, work=work)
        tuned.selection = measured_selection(full, source, meter, cfg.runtime, cfg.threads,
                                             plan.sig.batch or cfg.measure_batch, cfg.margin, float_inits, plan.echo)
        for timing in tuned.selection.timings:
            if not timing.quantize:
                tuned.excluded += [ExcludedNode(n, ops[n], timing.reason(cfg.runtime)) for n in timing.group.nodes]
        kept = tuned.selection.float_nodes
        if tuned.selection.timings and all(not t.quantize for t in tuned.selection.timings):
            plan.say(f"warning: INT8 paid for no group on {cfg.runtime} (this model is too small, or the machine "
                     f"too busy, for quantized kernels to win): the output is the float graph; "
                     f"--select op-type quantizes by op type regardless")
    base = to_float(full, kept, float_inits)
    tuned.model = base
    if cfg.max_drop is not None:
        reverted = _control(plan, full, base, prepared, source, calib, kept, float_inits, work, tuned)
        tuned.model = to_float(full, kept + reverted, float_inits)
    return tuned


def _control(plan: Plan, full, base, prepared, source, calib, kept, float_inits, work, tuned: Tuned) -> List[str]:
    """Accuracy control on ``base``; returns the layers reverted (recorded in ``tuned``)."""
    cfg = plan.cfg
    evaluate = map_evaluator(plan.validation, plan.sig, cfg.runtime, cfg.threads, work)
    plan.say(f"accuracy control: mAP50-95 of the FP32 model on {len(plan.validation.samples)} val images")
    fp32 = evaluate(source)
    ranking = rank_layers(prepared, base, calib[:SENSITIVITY_IMAGES])
    ranked = [r["name"] for r in ranking]
    result = accuracy_control(ranked, lambda names: evaluate(to_float(full, kept + list(names), float_inits)),
                              fp32, cfg.max_drop, plan.echo)
    result.ranking = ranking[:max(RANKING_SHOWN, len(result.reverted))]
    ops = {r["name"]: r["op_type"] for r in ranking}
    tuned.excluded += [ExcludedNode(n, ops[n], result.reason()) for n in result.reverted]
    tuned.accuracy = result
    return result.reverted


def rank_layers(float_model, qdq_model, images: np.ndarray) -> List[Dict]:
    """Every quantized node of ``qdq_model``, most sensitive first (own quantization error;
    nodes it could not measure last, in graph order)."""
    names = quantized_nodes(qdq_model)
    ops = {n.name: n.op_type for n in qdq_model.graph.node}
    errors = local_errors(float_model, qdq_model, images, names)
    order = sorted(names, key=lambda n: (n not in errors, -errors.get(n, 0.0)))
    return [{"name": n, "op_type": ops[n], "error": float(errors.get(n, 0.0))} for n in order]


def float_initializers(model) -> Dict[str, np.ndarray]:
    """The float initializers of ``model`` by name (exact values for reverted weights)."""
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type in (1, 10, 11)}


def measurement_batch(calib: np.ndarray, batch: int) -> np.ndarray:
    """``batch`` calibration images (repeated when there are fewer)."""
    return np.ascontiguousarray(calib[np.arange(batch) % len(calib)])


def map_evaluator(dataset, sig, runtime: str, threads: int, work: Path) -> Callable[[Any], float]:
    """model (ONNX ModelProto) -> mAP50-95 on ``dataset``, run on ``runtime`` through the
    offline predictor (the server's pre- and postprocessing, the model's layout)."""
    import onnx

    from generator.evaluation.coco import evaluate
    from generator.evaluation.predictors import FixedBatch, Thresholds, decode_options, offline_detector
    from generator.runners import open_runner

    def score(model) -> float:
        fd, name = tempfile.mkstemp(suffix=".onnx", dir=work)
        os.close(fd)
        path = Path(name)
        try:
            onnx.save(model, str(path))
            runner = open_runner(runtime, path, threads=threads)
            runner = runner if sig.batch is None else FixedBatch(runner, sig.batch)
            detect = offline_detector(runner, sig.height, sig.width, Thresholds(), **decode_options(sig))
            return float(evaluate(dataset, detect, progress=False).map50_95)
        finally:
            path.unlink(missing_ok=True)

    return score


def validation_split(data: Path, sig):
    """The val split of dataset ``data`` for accuracy control; refused for a folder of
    images (no labels) or a dataset without a val split or with other classes."""
    from generator.compress.calibration import dataset_names
    from generator.data.dataset import load_dataset

    if dataset_names(data) is None:
        raise UsageError(f"--max-drop measures mAP on the validation split, but --data {data} is a folder of images "
                         "without labels: pass a dataset (data YAML / dataset folder with a val split, COCO JSON)")
    try:
        dataset = load_dataset(Path(data), "val")
    except UsageError as exc:
        raise UsageError(f"--max-drop needs the val split of --data {data}: {exc}") from exc
    if not dataset.samples:
        raise UsageError(f"--max-drop needs the val split of --data {data}, which has no images")
    if len(dataset.names) != sig.num_classes:
        raise UsageError(f"--data {data}: the val split has {len(dataset.names)} classes but the model has "
                         f"{sig.num_classes}")
    return dataset
