"""Validation of names that become folders and config values."""

from __future__ import annotations

import re

from generator.errors import UsageError

# Triton model names: letters, digits, '_', '-', '.'; no path separators, no "." or ".."
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_TENSOR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/\-]{0,255}$")


def check_model_name(name: str, what: str = "model name") -> str:
    """Return ``name`` if Triton accepts it as a model (folder) name, else raise."""
    if not isinstance(name, str) or not _MODEL_NAME.match(name) or name in {".", ".."} or ".." in name:
        raise UsageError(
            f"invalid {what} {name!r}: use 1-128 letters, digits, '_', '-' or '.', "
            "starting with a letter, digit or '_' (no path separators, '..', spaces or quotes)"
        )
    return name


def check_tensor_name(name: str) -> str:
    """Tensor names come from ONNX graphs; refuse anything that is not a plain identifier."""
    if not isinstance(name, str) or not _TENSOR_NAME.match(name):
        raise UsageError(f"unsupported tensor name {name!r}: expected letters, digits, '_', '.', ':', '/', '-'")
    return name
