"""Build the tiny detectors the tests use (committed script, nothing downloaded).

- ``contract_onnx``: a hand-built ONNX graph with the detector contract's shapes and
  no torch (for generator/golden tests).
- ``tiny_yolo_onnx``: a real ``yolo-n`` exported through tritonforge, with class
  biases raised so that random weights still give plenty of overlapping detections
  (which exercises NMS end to end).

Run ``python tests/models/make_models.py OUTDIR`` to write both.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def contract_onnx(path: Path, imgsz: int = 64, num_classes: int = 3, names=None) -> Path:
    """input ``images [N,3,S,S]`` -> output ``output0 [N,4+C,A]`` via pooling + 1x1 conv."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    anchors = (imgsz // 8) ** 2
    fields = 4 + num_classes
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(fields, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["images"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Conv", ["pooled", "w"], ["conv"]),
        helper.make_node("Reshape", ["conv", "shape"], ["flat"]),
        helper.make_node("Sigmoid", ["flat"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes, "contract",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, imgsz, imgsz])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", fields, anchors])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.array([0, fields, anchors], np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    model.ir_version = 8
    names = names or [f"shape{i}" for i in range(num_classes)]
    model.metadata_props.add(key="tritonforge.names", value=json.dumps(names))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def tiny_yolo_onnx(path: Path, imgsz: int = 128, names=("circle", "rectangle", "triangle")) -> Path:
    """A real yolo-n, random weights (seeded) with class biases near zero."""
    import torch

    from generator.export.onnx_export import export_onnx
    from generator.models.checkpoint import build_detector

    det = build_detector("yolo-n", len(names), imgsz, list(names), seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for seq in det.model.head.cls:
            seq[-1].bias.copy_(torch.randn(seq[-1].bias.shape, generator=gen) * 0.5 - 0.5)
    export_onnx(det, path)
    return path


def layout_onnx(name: str, out: Path) -> Path:
    """One of the per-layout fixtures with known detections (``layouts.BUILDERS``) as ``out/name.onnx``."""
    import layouts

    return layouts.build(name, out).path


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    print(contract_onnx(out / "contract.onnx"))
    print(tiny_yolo_onnx(out / "tiny_yolo.onnx"))
    sys.path.insert(0, str(Path(__file__).parent))
    import layouts as _layouts

    for _name in _layouts.BUILDERS:
        print(layout_onnx(_name, out))


def make_lively(det, calib: np.ndarray, head_gain: float = 1.0, cls_bias_mean: float = 0.0) -> None:
    """Rescale a random-weight detector in place so its outputs depend on the image (LSUV-style:
    every conv's output gets unit spread on ``calib``; the head's last convs ``head_gain``),
    with class logits spread around ``cls_bias_mean``. Plain random weights give outputs that
    are constant to 1e-6 over images, so any quantized copy would look "close" to them."""
    import torch

    model = det.model.eval()
    last = {id(seq[-1]) for seq in list(model.head.cls) + list(model.head.box)}

    def rescale(module, inputs, output):
        if module is model.head.dfl.conv:
            return None
        gain = (head_gain if id(module) in last else 1.0) / output.std().clamp_min(1e-6)
        with torch.no_grad():
            module.weight.mul_(gain)
            if module.bias is not None:
                module.bias.mul_(gain)
        return output * gain

    hooks = [m.register_forward_hook(rescale) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.from_numpy(calib))
    for h in hooks:
        h.remove()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for seq in model.head.cls:  # class probabilities spread over 0..1
            seq[-1].bias.copy_(torch.randn(seq[-1].bias.shape, generator=gen) * 0.5 + cls_bias_mean)
