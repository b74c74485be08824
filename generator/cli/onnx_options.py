"""How to read a detector ONNX whose outputs and metadata do not say it all
(``export.signature.read_signature``'s keywords): ``--layout``, ``--imgsz H,W``, ``--scores``
and the input format (``--input-scale``, ``--channel-order``, ``--mean``, ``--std``).

Shared by ``generate``, ``eval --onnx``, ``bench variants`` and ``quantize`` (``distill
--teacher x.onnx`` takes the first three). Light: the layout names come from the
numpy-only layout registry; the parsers from ``export.input_format``.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import click

from generator.export.input_format import (
    CHANNEL_ORDERS, INPUT_SCALES, SCORE_KINDS, click_callback, input_format_from_flags, parse_imgsz,
)
from generator.runtime.layouts import layout_names

LAYOUT_HELP = "Output layout of the ONNX (default: detected from its outputs and metadata)."
IMGSZ_HELP = "Input size H,W (or one number) for an ONNX with dynamic height/width and no size in its metadata."
SCORES_HELP = "Whether a detr-layout ONNX outputs class logits or probabilities (default: from its metadata)."


def layout_option(hidden: bool = False) -> Callable:
    return click.option("--layout", type=click.Choice(layout_names()), default=None, hidden=hidden, help=LAYOUT_HELP)


def imgsz_option(help: str = IMGSZ_HELP, hidden: bool = False) -> Callable:
    """``--imgsz H,W`` (or N), parsed to ``(height, width)``."""
    return click.option("--imgsz", default=None, callback=click_callback(parse_imgsz), metavar="H,W",
                        hidden=hidden, help=help)


def scores_option(hidden: bool = False) -> Callable:
    return click.option("--scores", type=click.Choice(SCORE_KINDS), default=None, hidden=hidden, help=SCORES_HELP)


def format_options(hidden: bool = False) -> List[Callable]:
    """The network's input format, where its metadata does not give it."""
    return [
        click.option("--input-scale", type=click.Choice(sorted(INPUT_SCALES)), default=None, hidden=hidden,
                     help="Network input values in 0..1 or 0..255 [its metadata, else 1]."),
        click.option("--channel-order", type=click.Choice([c.lower() for c in CHANNEL_ORDERS], case_sensitive=False),
                     default=None, hidden=hidden, help="Channel order the network takes [its metadata, else rgb]."),
        click.option("--mean", default=None, hidden=hidden,
                     help="Per-channel mean a,b,c, in the input scale's units [0,0,0]."),
        click.option("--std", default=None, hidden=hidden,
                     help="Per-channel std a,b,c, in the input scale's units [1,1,1]."),
    ]


def reading_option_list(hidden: bool = False) -> List[Callable]:
    """``--layout``, ``--imgsz``, ``--scores`` and the input format, as a list of decorators."""
    return [layout_option(hidden), imgsz_option(hidden=hidden), scores_option(hidden)] + format_options(hidden)


def onnx_reading_options(hidden: bool = False) -> Callable:
    """All the reading options, as one decorator."""
    decorators = reading_option_list(hidden)

    def wrap(f):
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return wrap


def read_options(layout: Optional[str] = None, imgsz: Optional[Tuple[int, int]] = None,
                 scores: Optional[str] = None, input_scale: Optional[str] = None,
                 channel_order: Optional[str] = None, mean: Optional[str] = None, std: Optional[str] = None) -> dict:
    """The given flags as ``read_signature`` keywords (none given: ``{}``, everything detected)."""
    given = {"layout": layout, "imgsz": tuple(imgsz) if imgsz else None, "scores": scores,
             "input_format": input_format_from_flags(input_scale, channel_order, mean, std)}
    return {key: value for key, value in given.items() if value is not None}
