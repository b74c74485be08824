"""Detector families. Every family follows one output contract (see ``contract``)."""

from generator.models.registry import families, get_family, register_family

__all__ = ["families", "get_family", "register_family"]
