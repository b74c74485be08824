"""ONNX export and inspection; the TensorRT plan builder joins later."""
