"""Render stage configs from ``templates/config`` (strict Jinja2) and parse each one
back through Triton's own schema before anyone writes it."""

from __future__ import annotations

from functools import lru_cache

import jinja2

from generator import __version__
from generator.errors import ConfigError
from generator.repository.stages import Stage
from generator.resources import templates_dir


def pbstr(value: object) -> str:
    """Quote a value as a protobuf text-format string literal."""
    text = str(value)
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    escaped = escaped.replace("\t", "\\t")
    return f'"{escaped}"'


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["pbstr"] = pbstr
    return env


def render_template(name: str, **context: object) -> str:
    """Render any template (scripts, README) with StrictUndefined."""
    return environment().get_template(name).render(version=__version__, **context)


def parse_config(text: str, where: str = "config.pbtxt"):
    """Parse config.pbtxt text with Triton's schema (``ModelConfig``); unknown fields fail."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ConfigError(f"{where}: rejected by Triton's config schema: {exc}") from exc
    return config


def render_config(stage: Stage) -> str:
    """Validate ``stage``, render its template, and check the result with Triton's schema."""
    stage.validate()
    text = render_template(f"config/{stage.template}", stage=stage)
    config = parse_config(text, f"{stage.name}/config.pbtxt")
    if config.name != stage.name or config.max_batch_size != stage.max_batch_size:
        raise ConfigError(f"{stage.name}/config.pbtxt: rendered text does not round-trip")
    return text
