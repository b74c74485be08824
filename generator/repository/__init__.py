"""Triton model repository generation: targets, stage configs, rendering, writing."""
