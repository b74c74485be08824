"""The Ultralytics side of the interoperability tests. Run with the interpreter of a
virtual environment that has ``ultralytics`` (never tritonforge's own: Ultralytics is
AGPL and only a test peer), offline (``YOLO_OFFLINE=1`` is set here):

    python ultralytics_peer.py --out DIR --images DIR --data data.yaml [--conf 0.2] [--iou 0.5]

For every export mode in :data:`CASES` it builds a real Ultralytics model from its YAML
(random weights, made input-dependent: BatchNorm statistics measured on the dataset's
images, the head's last layers re-drawn from a fixed seed, so scores spread instead of
all sitting at the head's initial bias), exports it to ONNX with Ultralytics' exporter,
and runs Ultralytics' own prediction on that same ONNX. ``DIR/peer.json`` holds, per
case: the ONNX file, its inputs/outputs, the metadata Ultralytics wrote, and the
predictions per image (x1, y1, x2, y2 in original-image pixels, score, class). It also
loads the dataset with Ultralytics' own checker and ``YOLODataset`` and records the image
and box counts per split. Nothing here needs the network.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ["YOLO_OFFLINE"] = "1"  # before ultralytics is imported: no downloads, no update checks
os.environ.setdefault("YOLO_VERBOSE", "False")

SEED = 0
MAX_DET = 300  # Ultralytics' default max_det, also the test's --max-detections
MAX_CANDIDATES = 1024  # tritonforge's postprocess keeps this many candidates per image for NMS
# name -> (model YAML, export keyword arguments, predict imgsz or None for the export's own)
CASES = {
    "yolo26n-raw": ("yolo26n.yaml", {}, None),  # nms=None: the raw one-to-many head [N, 4+C, A]
    "yolo26n-end2end": ("yolo26n.yaml", {"nms": False}, None),  # NMS-free branch [N, 300, 6]
    "yolov8n-nms": ("yolov8n.yaml", {"nms": True}, None),  # NMS inside the graph [N, 300, 6]
    "yolo11n-raw": ("yolo11n.yaml", {}, None),
    "yolov8n-384x640": ("yolov8n.yaml", {"imgsz": (384, 640)}, None),  # non-square input
    "yolo11n-dynamic": ("yolo11n.yaml", {"dynamic": True}, 640),  # dynamic batch, height and width
    "yolov8n-batch2": ("yolov8n.yaml", {"batch": 2}, None),  # fixed batch 2 (dynamic=False)
}
OPTIONAL_CASES = {"rtdetr-l": ("rtdetr-l.yaml", {}, None)}  # RT-DETR: [N, 300, 6] normalized cx,cy,w,h


def build_model(cfg: str, names: list, images: list):
    """An Ultralytics model from ``cfg`` with ``len(names)`` classes and input-dependent random weights."""
    import torch
    from ultralytics import RTDETR, YOLO
    from ultralytics.cfg import DEFAULT_CFG_DICT

    torch.manual_seed(SEED)
    wrapper = (RTDETR if cfg.startswith("rtdetr") else YOLO)(cfg)
    spec = dict(wrapper.model.yaml, nc=len(names))
    model = type(wrapper.model)(spec, nc=len(names), verbose=False)
    model.args, model.task = {**DEFAULT_CFG_DICT, **wrapper.overrides}, wrapper.task
    model.names = dict(enumerate(names))
    x = image_batch(images)
    calibrate_batchnorm(model, x)
    if not cfg.startswith("rtdetr"):
        redraw_head(model, x)
    wrapper.model = model
    return wrapper


def image_batch(images: list, size: int = 320):
    """The first 8 images, resized to ``size`` square, RGB 0..1, as one tensor."""
    import cv2
    import numpy as np
    import torch

    batch = []
    for path in images[:8]:
        img = cv2.resize(cv2.imread(str(path)), (size, size))[:, :, ::-1]
        batch.append(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float() / 255)
    return torch.stack(batch)


def calibrate_batchnorm(model, x) -> None:
    """BatchNorm running statistics from real images, so activations neither vanish nor explode."""
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the passes below
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(x)
    model.eval()


def head_convs(head):
    """``(last Conv2d of a branch, role)`` for the box and class branches of a Detect head."""
    import torch

    reg = "box-dfl" if getattr(head, "reg_max", 16) > 1 else "box-direct"
    for attr, role in (("cv2", reg), ("cv3", "cls"), ("one2one_cv2", reg), ("one2one_cv3", "cls")):
        for branch in getattr(head, attr, None) or []:
            conv = branch[-1]
            while not isinstance(conv, torch.nn.Conv2d):
                conv = conv[-1] if isinstance(conv, torch.nn.Sequential) else conv.conv
            yield conv, role


# role -> (std, mean) of the head's outputs over the calibration images after re-drawing:
# class logits mostly low (a few anchors per class above 0.2), direct box distances positive
# (1.5 +- 0.5 strides), DFL logits spread
OUTPUT_STATS = {"cls": (1.0, -4.0), "box-direct": (0.5, 1.5), "box-dfl": (1.0, 0.0)}


def redraw_head(model, x) -> None:
    """The head's last convolutions re-drawn from a fixed seed, then scaled so that their
    outputs over ``x`` have the spread of :data:`OUTPUT_STATS`, per output channel."""
    import torch

    g = torch.Generator().manual_seed(SEED + 1)
    convs = list(head_convs(model.model[-1]))
    seen = {}
    hooks = [conv.register_forward_hook(lambda m, i, o: seen.setdefault(id(m), o.detach())) for conv, _ in convs]
    for conv, _ in convs:
        conv.weight.data = torch.randn(conv.weight.shape, generator=g) / conv.weight[0].numel() ** 0.5
        conv.bias.data.zero_()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    for conv, role in convs:
        out = seen[id(conv)]
        mean, std = out.mean(dim=(0, 2, 3)), out.std(dim=(0, 2, 3)).clamp(min=1e-6)
        want_std, want_mean = OUTPUT_STATS[role]
        conv.weight.data *= (want_std / std)[:, None, None, None]
        conv.bias.data = want_mean - mean * want_std / std


def onnx_summary(path: Path) -> dict:
    """Inputs, outputs (name, dims with names for symbolic axes, elem type), opset, metadata."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)

    def tensors(values):
        return [{"name": v.name, "dims": [d.dim_value if d.HasField("dim_value") else d.dim_param
                                          for d in v.type.tensor_type.shape.dim],
                 "elem_type": v.type.tensor_type.elem_type} for v in values]

    return {"inputs": tensors(m.graph.input), "outputs": tensors(m.graph.output),
            "opset": max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")),
            "metadata": {p.key: p.value for p in m.metadata_props},
            "ops": sorted({n.op_type for n in m.graph.node})}


def predict(onnx_path: Path, images: list, conf: float, iou: float, imgsz) -> dict:
    """Ultralytics' own prediction on the exported ONNX: image name -> [[x1, y1, x2, y2, score, class]]."""
    from ultralytics import YOLO

    model = YOLO(str(onnx_path), task="detect")
    kwargs = {"imgsz": imgsz} if imgsz else {}
    out = {}
    for path in images:  # one at a time: fixed-batch exports pad a short batch themselves
        # rect=False: predict() defaults to rect=True, which runs a dynamic-shape ONNX at the smallest
        # stride-multiple rectangle around each image; tritonforge serves it at one fixed size
        r = model.predict(str(path), conf=conf, iou=iou, max_det=MAX_DET, rect=False, verbose=False, **kwargs)[0]
        b = r.boxes
        rows = zip(b.xyxy.tolist(), b.conf.tolist(), b.cls.tolist())
        out[Path(path).name] = [[*xyxy, score, int(cls)] for xyxy, score, cls in rows]
    return out


def candidates(onnx_path: Path, images: list, conf: float, imgsz) -> dict:
    """Image name -> how many anchors score above ``conf`` in the ONNX's raw output (its
    first output when that is ``[N, 4+C, A]``; None for graphs that end in NMS or top-k),
    on Ultralytics' own letterboxed input."""
    import cv2
    import numpy as np
    import onnxruntime as ort
    from ultralytics.data.augment import LetterBox

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    shape = sess.get_inputs()[0].shape
    batch = shape[0] if isinstance(shape[0], int) else 1
    size = (imgsz, imgsz) if imgsz else tuple(shape[2:])
    out = {}
    for path in images:
        img = LetterBox(size, auto=False, stride=32)(image=cv2.imread(str(path)))
        x = np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))[None].astype(np.float32) / 255
        raw = sess.run(None, {sess.get_inputs()[0].name: np.repeat(x, batch, axis=0)})[0]
        out[Path(path).name] = int((raw[0, 4:].max(axis=0) > conf).sum()) if raw.shape[-1] != 6 else None
    return out


def usable(predictions: list, count) -> bool:
    """An image both sides can be compared on: fewer than MAX_DET detections (no cut at the
    cap), at most MAX_CANDIDATES raw candidates (tritonforge's pre-NMS cap), no inverted boxes
    (random box regressors can predict them)."""
    return (len(predictions) < MAX_DET and (count is None or count <= MAX_CANDIDATES)
            and all(x2 - x1 >= 1 and y2 - y1 >= 1 for x1, y1, x2, y2, *_ in predictions))


def export_case(name: str, spec, out: Path, names: list, calib: list, images: list, conf: float,
                iou: float) -> dict:
    """Build, export and predict one case of :data:`CASES`."""
    cfg, kwargs, predict_imgsz = spec
    started = time.monotonic()
    model = build_model(cfg, names, calib)
    if kwargs.get("nms"):
        kwargs = dict(kwargs, conf=conf, iou=iou)  # NMS inside the graph: its thresholds are baked in
    exported = Path(model.export(format="onnx", **kwargs))
    target = out / f"{name}.onnx"
    exported.replace(target)
    export_s = time.monotonic() - started
    case = {"name": name, "model": cfg, "export_args": {k: list(v) if isinstance(v, tuple) else v
                                                        for k, v in kwargs.items()},
            "onnx": target.name, **onnx_summary(target), "export_s": round(export_s, 1)}
    started = time.monotonic()
    case["predictions"] = predict(target, images, conf, iou, predict_imgsz)
    counts = candidates(target, images, conf, predict_imgsz)
    case["predict_s"] = round(time.monotonic() - started, 1)
    case["candidates"] = counts
    case["usable"] = sorted(n for n, p in case["predictions"].items() if usable(p, counts[n]))
    return case


def dataset_counts(data_yaml: Path) -> dict:
    """Ultralytics' own view of a data YAML: resolved paths, names, and per split images and boxes."""
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(data_yaml), autodownload=False)
    result = {"names": [data["names"][i] for i in range(len(data["names"]))], "nc": data["nc"],
              "path": str(data["path"]), "splits": {}}
    for split in ("train", "val"):
        ds = YOLODataset(img_path=data[split], imgsz=320, augment=False, data=data, task="detect", cache=False)
        labels = ds.get_labels() if not ds.labels else ds.labels
        result["splits"][split] = {
            "folder": str(data[split]), "images": len(ds.im_files), "boxes": int(sum(len(lb["cls"]) for lb in labels)),
            "files": sorted(Path(f).name for f in ds.im_files)}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True, help="Images to predict on (jpg/png).")
    parser.add_argument("--data", type=Path, required=True, help="Data YAML: its names and images calibrate.")
    parser.add_argument("--conf", type=float, default=0.2)
    parser.add_argument("--iou", type=float, default=0.5)
    parser.add_argument("--cases", default=",".join(CASES), help="Comma-separated case names.")
    args = parser.parse_args(argv)
    args.out, args.images, args.data = (p.absolute() for p in (args.out, args.images, args.data))

    import ultralytics

    args.out.mkdir(parents=True, exist_ok=True)
    os.chdir(args.out)  # Ultralytics writes next to the model YAML name: keep it inside --out
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    names = list(dataset_counts(args.data)["names"])
    calib = sorted(args.data.parent.glob("images/train/*"))
    known = {**CASES, **OPTIONAL_CASES}
    cases = [export_case(n, known[n], args.out, names, calib, images, args.conf, args.iou)
             for n in args.cases.split(",")]
    import onnxruntime
    import torch

    report = {"ultralytics": ultralytics.__version__, "torch": torch.__version__,
              "onnxruntime": onnxruntime.__version__, "conf": args.conf, "iou": args.iou, "names": names,
              "dataset": dataset_counts(args.data), "cases": cases}
    (args.out / "peer.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
