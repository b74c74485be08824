"""Which output layout a detector ONNX has, from its outputs, its metadata and its graph.

Used by ``read_signature`` when no ``--layout`` is given. The candidates are the
registered layouts whose ``check_outputs`` accepts the outputs; then, in order:

1. a graph holding TensorRT's ``EfficientNMS_TRT`` node is ``efficient-nms`` (nothing else);
2. a graph that already selects boxes (``TopK``, ``NonMaxSuppression``) has no NMS left
   to run: layouts that need NMS are dropped (when another layout remains);
3. layouts whose class count disagrees with the metadata's names or ``--labels`` are dropped;
4. the layout the exporter's metadata names wins when it is still a candidate;
5. only those with evidence beyond their shape are kept (``_EVIDENCE``), then only the
   ``plausible`` ones (more candidates than fields per candidate, ...), each step only
   when something remains.

Metadata that is certain of its layout (Ultralytics' ``RTDETRDecoder`` head) skips the
rules: that layout, or a UsageError saying why it does not fit. Exactly one left: that layout. None, or several: a UsageError that names each output
with its shape and says what to pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

from generator.errors import UsageError
from generator.runtime.layouts import LayoutMismatch, OutputShape, get_layout, layout_names

# (name, dims with the batch axis, None where dynamic, Triton dtype name)
OutputSpec = Tuple[str, Sequence[Optional[int]], str]

TRT_NMS_OPS = frozenset({"EfficientNMS_TRT"})
SELECTION_OPS = frozenset({"TopK", "NonMaxSuppression"}) | TRT_NMS_OPS


@dataclass(frozen=True)
class DetectHints:
    """What besides the output shapes tells the layout apart."""

    num_classes: Optional[int] = None  # from --labels, else the metadata's class names
    class_source: str = "metadata"  # how messages name where num_classes came from
    ops: FrozenSet[str] = frozenset()  # op types in the graph
    layout: Optional[str] = None  # the layout the exporter's metadata names
    layout_required: bool = False  # the metadata is certain (an error if that layout does not fit)
    layout_detail: str = ""  # what the metadata said, for messages
    scores_given: bool = False  # --scores was passed (only DETR-style layouts read it)


def _selects_boxes(outputs: Sequence[OutputSpec], hints: DetectHints) -> bool:
    return bool(hints.ops & SELECTION_OPS)


def _detr_evidence(outputs: Sequence[OutputSpec], hints: DetectHints) -> bool:
    return len(outputs) == 2 or hints.scores_given or hints.layout == "detr"


# layout name -> evidence beyond the shape, asked only to break a tie: a [N, K, 6] output is
# end-to-end only if the graph selects boxes; a single [N, Q, 4+C] output is DETR only if
# something says so (an [N, 84, 8400] YOLOv8 output fits DETR's shape too)
_EVIDENCE: Dict[str, Callable[[Sequence[OutputSpec], DetectHints], bool]] = {
    "end-to-end": _selects_boxes,
    "detr": _detr_evidence,
}


def format_dims(dims: Sequence[Optional[int]]) -> str:
    """``[N, 84, 8400]``: N for a dynamic batch axis, ? for another dynamic axis."""
    shown = ["N" if (d is None and i == 0) else "?" if d is None else str(d) for i, d in enumerate(dims)]
    return f"[{', '.join(shown)}]"


def describe_outputs(outputs: Sequence[OutputSpec]) -> str:
    """``'output0' [N, 84, 8400] FP32, ...``: how messages name the outputs."""
    return ", ".join(f"{name!r} {format_dims(dims)} {dtype}" for name, dims, dtype in outputs)


def check_layout(name: str, outputs: Sequence[OutputSpec]) -> OutputShape:
    """``name``'s reading of ``outputs``; UsageError with the layout's expectation when they
    do not fit (ValueError naming the known layouts when ``name`` is not one)."""
    layout = get_layout(name)
    try:
        return layout.check_outputs(outputs)
    except LayoutMismatch as exc:
        raise UsageError(f"layout {name}: {exc} (expected {layout.outputs_text})") from None


def detect_layout(outputs: Sequence[OutputSpec], hints: DetectHints = DetectHints()) -> Tuple[str, OutputShape]:
    """The one layout that fits ``outputs`` (see the module docstring) and its reading of them."""
    if hints.layout_required and hints.layout:
        return hints.layout, _required(hints, outputs)
    fits, reasons = _shape_fits(outputs)
    fits = _filter_by_graph(fits, reasons, hints)
    matching = _filter_by_classes(fits, reasons, hints)
    if not matching:
        raise _no_layout(outputs, fits, reasons, hints)
    chosen = _narrow(matching, outputs, hints)
    if len(chosen) > 1:
        raise UsageError(f"ambiguous: {_shapes(outputs)} fits {_and(chosen)}; pass --layout NAME")
    return chosen[0], matching[chosen[0]]


def _required(hints: DetectHints, outputs: Sequence[OutputSpec]) -> OutputShape:
    """The layout the metadata is certain of; UsageError saying so when the outputs disagree."""
    try:
        shape = check_layout(hints.layout, outputs)
    except UsageError as exc:
        reason = str(exc)
    else:
        reasons: Dict[str, str] = {}
        if _filter_by_classes({hints.layout: shape}, reasons, hints):
            return shape
        reason = reasons[hints.layout]
    raise UsageError(f"{hints.layout_detail or 'the metadata'} means layout {hints.layout}, which does not fit: "
                     f"{reason} (outputs {describe_outputs(outputs)})")


def _shape_fits(outputs: Sequence[OutputSpec]) -> Tuple[Dict[str, OutputShape], Dict[str, str]]:
    fits, reasons = {}, {}
    for name in layout_names():
        try:
            fits[name] = get_layout(name).check_outputs(outputs)
        except LayoutMismatch as exc:
            reasons[name] = str(exc)
    return fits, reasons


def _filter_by_graph(fits: Dict[str, OutputShape], reasons: Dict[str, str], hints: DetectHints
                     ) -> Dict[str, OutputShape]:
    """Rules 1 and 2: what the graph's own selection ops leave possible."""
    if hints.ops & TRT_NMS_OPS:
        kept = {n: s for n, s in fits.items() if n == "efficient-nms"}
        why = "the graph ends in TensorRT's EfficientNMS_TRT"
    else:
        kept = {n: s for n, s in fits.items() if not (hints.ops & SELECTION_OPS and get_layout(n).needs_nms)}
        why = "the graph already selects boxes (TopK / NonMaxSuppression): no NMS left to run"
        if not kept:
            return fits
    for name in fits.keys() - kept.keys():
        reasons[name] = why
    return kept


def _filter_by_classes(fits: Dict[str, OutputShape], reasons: Dict[str, str], hints: DetectHints
                       ) -> Dict[str, OutputShape]:
    """Rule 3: drop layouts whose class count disagrees with the names we were given."""
    kept = {}
    for name, shape in fits.items():
        if hints.num_classes is None or shape.num_classes is None or shape.num_classes == hints.num_classes:
            kept[name] = shape
        else:
            reasons[name] = _class_text(hints, shape.num_classes)
    return kept


def _class_text(hints: DetectHints, num_classes: int) -> str:
    return f"{hints.class_source} lists {hints.num_classes} class names but the output has {num_classes} classes"


def _narrow(fits: Dict[str, OutputShape], outputs: Sequence[OutputSpec], hints: DetectHints,
            strict: bool = False) -> List[str]:
    """Rules 4 and 5 over the candidates (sorted names). Used to choose, it never narrows to
    nothing and keeps a single candidate as it is; ``strict`` (to guess what the shapes
    alone say) applies every rule and may leave nothing."""
    names = sorted(fits)
    if (len(names) > 1 or strict) and hints.layout in fits:
        return [hints.layout]
    for keep in (lambda n: _EVIDENCE.get(n, _always)(outputs, hints),
                 lambda n: get_layout(n).plausible(fits[n])):
        if strict:
            names = [n for n in names if keep(n)]
        elif len(names) > 1:
            names = [n for n in names if keep(n)] or names
    return names


def _always(outputs: Sequence[OutputSpec], hints: DetectHints) -> bool:
    return True


def _no_layout(outputs: Sequence[OutputSpec], fits: Dict[str, OutputShape], reasons: Dict[str, str],
               hints: DetectHints) -> UsageError:
    """Nothing fits. When the shapes alone point at one layout whose class count is what
    disagrees, say just that; else name every output and every layout's reason."""
    guess = _narrow(fits, outputs, hints, strict=True)
    if len(guess) == 1 and fits[guess[0]].num_classes is not None:
        return UsageError(f"{_class_text(hints, fits[guess[0]].num_classes)} (layout {guess[0]})")
    lines = [f"  {name}: {get_layout(name).outputs_text}\n    {reasons.get(name, 'does not fit')}"
             for name in layout_names()]
    return UsageError(f"the outputs {describe_outputs(outputs)} fit no known output layout:\n" + "\n".join(lines)
                      + "\npass --layout NAME to force one (and --labels FILE if the class count is what disagrees)")


def _shapes(outputs: Sequence[OutputSpec]) -> str:
    return " + ".join(format_dims(dims) for _, dims, _ in outputs)


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
