"""Detector training: task-aligned assignment, CIoU + DFL + BCE losses, EMA, cosine LR."""
