"""The output contract shared by every detector family and understood by postprocess.

In eval mode a detector maps ``images`` ``[N, 3, H, W]`` (RGB, 0..1) to one tensor
``[N, 4 + C, A]``: for each of the ``A`` anchor points, the box as centre x, centre y,
width, height in input (letterboxed) pixels, then ``C`` class probabilities (after
sigmoid). This is the layout of Ultralytics YOLOv8/YOLO11 ONNX exports too, so their
models can be served by the same repository.
"""

BOX_FIELDS = 4
INPUT_NAME = "images"
OUTPUT_NAME = "output0"
