"""Helpers shared by the Python-backend stages (no Triton import here)."""

from __future__ import annotations

import json
from typing import Dict


def read_parameters(args: Dict[str, str]) -> Dict[str, str]:
    """The ``parameters`` of a model's config.pbtxt, from the ``initialize`` args."""
    config = json.loads(args["model_config"])
    return {key: value["string_value"] for key, value in config.get("parameters", {}).items()}


def model_config(args: Dict[str, str]) -> dict:
    return json.loads(args["model_config"])


def bad_input(pb_utils, message: str):
    """A TritonError with status INVALID_ARG (HTTP 400) where the Python backend supports
    error codes, so clients can tell a bad input from a server failure (never retried)."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
