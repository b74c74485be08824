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
