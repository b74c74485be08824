"""Datasets: synthetic shapes data, YOLO/COCO readers, augmentations, training loader.

Importing this package is cheap; OpenCV, PyYAML and torch are imported by the
submodules that need them (``synth``, ``augment``, ``loader``, the readers).
"""
