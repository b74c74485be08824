"""COCO mAP with one code path for PyTorch, ONNX Runtime and a served endpoint."""
