"""Helpers shared by the Python-backend stages (no Triton import here).

Each stage declares ``PARAMETERS`` (config parameter name -> default string, ``None``
for required ones) and reads its config through :func:`read_parameters`, so a config
that drifts from the code fails when the model loads, naming the parameter.
"""

from __future__ import annotations

import json
from typing import Dict, Mapping, Optional


def model_config(args: Dict[str, str]) -> dict:
    """The model's config.pbtxt as Triton hands it to ``initialize`` (parsed JSON)."""
    return json.loads(args["model_config"])


def configured_parameters(args: Dict[str, str]) -> Dict[str, str]:
    """The ``parameters`` the config sets, as strings, without checking them."""
    config = model_config(args)
    return {key: value["string_value"] for key, value in config.get("parameters", {}).items()}


def read_parameters(args: Dict[str, str], declared: Mapping[str, Optional[str]]) -> Dict[str, str]:
    """Every parameter in ``declared``, from the config or its default.

    Raises ValueError naming the model and the parameter when a required one (default
    ``None``) is missing, and listing the known ones when the config sets one the stage
    does not declare (a typo or a stale generator would otherwise be ignored silently).
    """
    model = args.get("model_name") or model_config(args).get("name") or "this model"
    given = configured_parameters(args)
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValueError(f"{model}: unknown config parameter(s) {', '.join(unknown)}; "
                         f"this stage reads {', '.join(sorted(declared))}")
    missing = [name for name, default in declared.items() if default is None and name not in given]
    if missing:
        raise ValueError(f"{model}: config parameter(s) {', '.join(missing)} required but not set")
    return {name: given.get(name, default) for name, default in declared.items()}


def bad_input(pb_utils, message: str):
    """A TritonError with status INVALID_ARG (HTTP 400) where the Python backend supports
    error codes, so clients can tell a bad input from a server failure (never retried)."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
