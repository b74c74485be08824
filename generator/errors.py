"""Project errors. The CLI maps each class to one exit code in one place."""

from __future__ import annotations


class TritonForgeError(Exception):
    """Base class: a problem the user can act on; the message says what and where."""

    exit_code = 1


class UsageError(TritonForgeError):
    """Bad option values or input files (exit 2, like click's usage errors)."""

    exit_code = 2


class ConfigError(UsageError):
    """A Triton stage config that fails validation; the message names the field."""


class MissingDependencyError(TritonForgeError):
    """An optional dependency is not installed; the message says which extra brings it."""

    exit_code = 3


class ServerError(TritonForgeError):
    """The Triton server could not start, failed to load a model, or died."""

    exit_code = 4
