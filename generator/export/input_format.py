"""How a detector wants its input pixels, and the command-line helpers that set it.

The network input is ``((pixel in RGB or BGR order, uint8) * scale - mean) / std`` per
channel, with ``mean`` and ``std`` in the same units as ``pixel * scale``. Every exporter
we read (tritonforge, Ultralytics, YOLOv5) wants RGB in 0..1 with no mean/std: the
default. The preprocess stage receives the format as config parameters
(:meth:`InputFormat.parameters`).

Also here: the parsers behind ``--imgsz H,W``, ``--mean a,b,c``, ``--std a,b,c``,
``--input-scale 1|255`` and ``--channel-order rgb|bgr`` (plain functions raising
UsageError; :func:`click_callback` adapts one for a click option).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple

from generator.errors import UsageError

Triple = Tuple[float, float, float]

CHANNEL_ORDERS = ("RGB", "BGR")
# --input-scale: the range of the network's input values -> the factor applied to uint8 pixels
INPUT_SCALES: Dict[str, float] = {"1": 1 / 255, "255": 1.0}
SCORE_KINDS = ("probs", "logits")


@dataclass(frozen=True)
class InputFormat:
    """Pixel scale, channel order and per-channel mean/std of the network input."""

    scale: float = 1 / 255
    channel_order: str = "RGB"
    mean: Triple = (0.0, 0.0, 0.0)
    std: Triple = (1.0, 1.0, 1.0)

    def __post_init__(self):
        for field in ("mean", "std"):  # tuples of floats, so that equal formats compare equal
            object.__setattr__(self, field, tuple(float(v) for v in getattr(self, field)))
        object.__setattr__(self, "scale", float(self.scale))
        if not self.scale > 0:
            raise UsageError(f"input scale must be > 0, got {self.scale}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise UsageError(f"channel order must be one of {', '.join(CHANNEL_ORDERS)}, got {self.channel_order!r}")
        for field, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != 3:
                raise UsageError(f"input {field} needs 3 values (one per channel), got {list(values)}")
        if any(not s > 0 for s in self.std):
            raise UsageError(f"input std values must be > 0, got {list(self.std)}")

    @property
    def is_default(self) -> bool:
        """RGB, 0..1, no mean/std: the preprocess stage's bit-identical fast path."""
        return self == InputFormat()

    def parameters(self) -> Dict[str, str]:
        """The preprocess stage's config parameters (``scale``, ``channel_order``, ``mean``, ``std``)."""
        return {"scale": repr(float(self.scale)), "channel_order": self.channel_order,
                "mean": _join(self.mean), "std": _join(self.std)}

    def describe(self) -> str:
        """One line for CLI output, e.g. ``RGB, 0..1`` or ``BGR, 0..255, mean 103.5,116.3,123.7``."""
        text = f"{self.channel_order}, 0..{_number(255 * self.scale)}"
        if self.mean != (0.0, 0.0, 0.0):
            text += f", mean {_join(self.mean)}"
        if self.std != (1.0, 1.0, 1.0):
            text += f", std {_join(self.std)}"
        return text


def _number(value: float) -> str:
    """``0`` for 0.0, ``123.675`` for 123.675: short and exact (repr of the float)."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _join(values: Sequence[float]) -> str:
    return ",".join(_number(v) for v in values)


def parse_numbers(text: str, count: int, flag: str) -> Tuple[float, ...]:
    """``"a,b,c"`` -> floats; UsageError naming ``flag`` when the count or a value is wrong."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise UsageError(f"{flag} takes {count} comma-separated numbers, got {text!r}") from None
    if len(values) != count:
        raise UsageError(f"{flag} takes {count} comma-separated numbers, got {len(values)} in {text!r}")
    return values


def parse_imgsz(text: str, flag: str = "--imgsz") -> Tuple[int, int]:
    """``"384,640"`` -> (384, 640) as (height, width); one number means a square input."""
    parts = [p.strip() for p in str(text).replace("x", ",").split(",")]
    if len(parts) == 1:
        parts *= 2
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise UsageError(f"{flag} takes H,W or one number (pixels), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise UsageError(f"{flag} sizes must be positive, got {text!r}")
    return h, w


def parse_channel_order(text: str) -> str:
    """``rgb``/``bgr`` (any case) -> ``RGB``/``BGR``."""
    order = str(text).strip().upper()
    if order not in CHANNEL_ORDERS:
        raise UsageError(f"--channel-order must be rgb or bgr, got {text!r}")
    return order


def parse_input_scale(text: str) -> float:
    """``--input-scale 1`` (inputs in 0..1, the default) or ``255`` (raw 0..255) -> the pixel factor."""
    key = str(text).strip()
    key = {"1.0": "1", "255.0": "255"}.get(key, key)
    if key not in INPUT_SCALES:
        raise UsageError(f"--input-scale must be 1 (inputs in 0..1) or 255 (inputs in 0..255), got {text!r}")
    return INPUT_SCALES[key]


def parse_scores(text: Optional[str]) -> Optional[str]:
    """``--scores logits|probs`` (None stays None: the metadata or the layout decides)."""
    if text is None:
        return None
    kind = str(text).strip().lower()
    if kind not in SCORE_KINDS:
        raise UsageError(f"--scores must be logits or probs, got {text!r}")
    return kind


def input_format_from_flags(input_scale: Optional[str] = None, channel_order: Optional[str] = None,
                            mean: Optional[str] = None, std: Optional[str] = None,
                            base: Optional[InputFormat] = None) -> Optional[InputFormat]:
    """The format the flags ask for, over ``base`` (default: RGB 0..1); None when no flag is
    given, so that what the exporter's metadata says stands."""
    if all(v is None for v in (input_scale, channel_order, mean, std)):
        return None
    base = base or InputFormat()
    return InputFormat(
        scale=base.scale if input_scale is None else parse_input_scale(input_scale),
        channel_order=base.channel_order if channel_order is None else parse_channel_order(channel_order),
        mean=base.mean if mean is None else parse_numbers(mean, 3, "--mean"),
        std=base.std if std is None else parse_numbers(std, 3, "--std"),
    )


def click_callback(parse: Callable[[str], object]) -> Callable:
    """A click option callback running ``parse`` on the value (None passes through);
    UsageError becomes click's BadParameter, so click reports it as a usage error."""

    def callback(ctx, param, value):
        import click

        if value is None:
            return None
        try:
            return parse(value)
        except UsageError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None

    return callback
