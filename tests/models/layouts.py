"""Tiny detectors in every output layout, with KNOWN detections (committed, nothing downloaded).

Each fixture reproduces the graph TAIL of a real exporter (YOLOv5's ``Detect`` in export
mode, Ultralytics' ``Detect`` with its DFL and its ``end2end`` TopK branch, the four
EfficientNMS outputs, RT-DETR's normalized boxes), on top of a "colour probe" that makes
the answer known: the image is average-pooled into 32-pixel cells and each cell's class
logits are a fixed linear function of its mean colour (``class_logits``). So a synthetic
image made of uniformly coloured, cell-aligned squares on the letterbox grey gives, for
every square, a detection whose box is the cell (32x32 input pixels), whose class is
the dominant channel (0 red, 1 green, 2 blue) and whose score is computed here in numpy
(:func:`expected`). Grey cells score ``sigmoid(BIAS)`` (0.018), under any test threshold.

Layouts and what reproduces the real thing:

- ``objectness_onnx``: YOLOv5 ``Detect`` export (sigmoid, grid/anchor decode to pixels,
  ``[N, A, 5+C]``), two anchors per cell: the second (40x40, IoU 0.64 with the first, lower
  objectness) is what NMS must remove; a quiet stride-16 level is concatenated in front.
- ``anchor_free_onnx``: Ultralytics ``Detect`` (DFL softmax + arange conv, ``dist2bbox``,
  anchors made from the feature shapes so H and W may be dynamic), ``[N, 4+C, A]``.
- ``end_to_end_onnx``: the same head through Ultralytics' ``end2end`` postprocess (TopK on
  the best class score, gather, TopK on the flattened scores), ``[N, K, 6]``.
- ``efficient_nms_onnx``: ``num_dets`` INT32 ``[N,1]``, ``det_boxes``, ``det_scores``,
  ``det_classes`` INT32, made with TopK (runs in ONNX Runtime); ``efficient_nms_trt_onnx``: the
  same four outputs from a real ``EfficientNMS_TRT`` node (domain ``TRT`` or ``""``; only
  TensorRT runs it).
- ``detr_onnx``: RT-DETR-style ``sigmoid(inverse_sigmoid(reference) + delta)`` normalized
  cx, cy, w, h; two outputs (boxes, logits) or one ``[N, Q, 4+C]`` with probabilities.

Options shared by all: ``imgsz=(h, w)`` (multiples of 32), ``batch`` (None: dynamic batch
axis; 1: fixed like Ultralytics' default export), ``dynamic_hw`` (dynamic H and W axes),
``input_format`` (scale, channel order, mean, std the network expects: folded into the
probe's weights so the detections stay the same when the preprocess applies it), ``meta``
(ONNX metadata_props; :func:`ultralytics_meta` writes what Ultralytics 8.4 stores).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

NAMES = ("red", "green", "blue")
CELL = 32  # the detecting level's stride: one detection per coloured 32x32 cell
QUIET_STRIDE = 16  # an extra level whose scores never pass a threshold (structure only)
GAIN, BIAS = 10.0, -4.0  # class logit = GAIN * (x_c - mean of the other two) + BIAS, x in 0..1
OBJ_LOGIT, DUP_OBJ_LOGIT, QUIET_LOGIT = 3.0, 1.0, -12.0
DUP_SIZE = 40.0  # YOLOv5 second anchor (px): IoU 1024/1600 = 0.64 with the cell box
REG_MAX = 16  # Ultralytics DFL bins
EFFICIENT_NMS_THRESHOLD = 0.25  # the score threshold baked into the efficient-nms graphs
GREY = 114  # letterbox padding, the background of every scene


@dataclass(frozen=True)
class InputFormat:
    """What the network expects: ``((pixel in channel_order) * scale - mean) / std``."""

    scale: float = 1 / 255
    channel_order: str = "RGB"
    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: Tuple[float, float, float] = (1.0, 1.0, 1.0)


BGR_255 = InputFormat(scale=1.0, channel_order="BGR")
IMAGENET = InputFormat(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


# ------------------------------------------------------------------ the known answer


def class_matrix() -> np.ndarray:
    """``[C, 3]``: logit_c = GAIN * (1.5 x_c - 0.5 (x_r + x_g + x_b)) + BIAS."""
    return GAIN * (1.5 * np.eye(3) - 0.5 * np.ones((3, 3)))


def class_logits(rgb: Sequence[int]) -> np.ndarray:
    """The three class logits of a cell whose mean colour is ``rgb`` (0..255)."""
    return class_matrix() @ (np.asarray(rgb, np.float64) / 255.0) + BIAS


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


@dataclass(frozen=True)
class Scene:
    """A ``height x width`` grey image with uniformly coloured squares on a grid of ``cell`` px.

    ``cells``: ``(row, col, (r, g, b))``. Drawn at the network size (``cell`` = 32), a square is
    exactly one probe cell; drawn at ``k`` times the size, it letterboxes onto one cell."""

    height: int
    width: int
    cells: Tuple[Tuple[int, int, Tuple[int, int, int]], ...]
    cell: int = CELL

    def image(self) -> np.ndarray:
        """``H x W x 3`` uint8 RGB."""
        img = np.full((self.height, self.width, 3), GREY, np.uint8)
        for r, c, rgb in self.cells:
            img[r * self.cell:(r + 1) * self.cell, c * self.cell:(c + 1) * self.cell] = rgb
        return img

    def png(self) -> bytes:
        import cv2

        ok, buf = cv2.imencode(".png", np.ascontiguousarray(self.image()[:, :, ::-1]))
        assert ok
        return buf.tobytes()

    def boxes(self) -> np.ndarray:
        """``[n, 4]`` x1, y1, x2, y2 of the squares, in this image's pixels."""
        s = self.cell
        return np.array([[c * s, r * s, (c + 1) * s, (r + 1) * s] for r, c, _ in self.cells], np.float64).reshape(-1, 4)


@dataclass(frozen=True)
class Expected:
    """Known detections of one image, best first: boxes ``[n,4]`` (image px), scores, classes."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def cell_score(rgb: Sequence[int], kind: str) -> Tuple[float, int]:
    """(score, class) the fixture of ``kind`` gives a cell of colour ``rgb``."""
    probs = sigmoid(class_logits(rgb))
    cls = int(np.argmax(probs))
    obj = sigmoid(OBJ_LOGIT) if kind == "objectness" else 1.0
    return float(obj * probs[cls]), cls


def expected(scene: Scene, kind: str, score_threshold: float) -> Expected:
    """The detections a fixture of layout ``kind`` must give for ``scene`` (image pixels),
    with every square's second-best class far below any threshold used by the tests."""
    rows = []
    for (r, c, rgb), box in zip(scene.cells, scene.boxes()):
        score, cls = cell_score(rgb, kind)
        floor = EFFICIENT_NMS_THRESHOLD if kind == "efficient-nms" else 0.0
        if score > max(score_threshold, floor):
            rows.append((score, cls, box))
    rows.sort(key=lambda t: -t[0])
    return Expected(np.array([t[2] for t in rows], np.float64).reshape(-1, 4),
                    np.array([t[0] for t in rows], np.float64), np.array([t[1] for t in rows], np.int64))


def random_scenes(n: int, height: int, width: int, seed: int = 0, per_image: Tuple[int, int] = (2, 6),
                  scale: int = 1, min_level: int = 110) -> List[Scene]:
    """``n`` scenes of distinct cells with saturated colours of random intensity (seeded): the
    dominant channel in ``min_level..255`` (110: scores from 0.16 to 0.997; 180: all above 0.75).
    ``scale`` > 1 draws them ``scale`` times larger (letterboxed back onto the grid)."""
    rng = np.random.default_rng(seed)
    gh, gw = height // CELL, width // CELL
    scenes = []
    for _ in range(n):
        k = int(rng.integers(per_image[0], per_image[1] + 1))
        picks = rng.choice(gh * gw, size=k, replace=False)
        cells = []
        for p in picks:
            cls = int(rng.integers(0, 3))
            rgb = [int(v) for v in rng.integers(0, 50, size=3)]
            rgb[cls] = int(rng.integers(min_level, 256))
            cells.append((int(p) // gw, int(p) % gw, tuple(rgb)))
        scenes.append(Scene(height * scale, width * scale, tuple(cells), CELL * scale))
    return scenes


def write_dataset(root: Path, scenes: Sequence[Scene], split: str = "val") -> Path:
    """A YOLO-format dataset of ``scenes`` (PNG), for mAP that is neither 0 nor 1: every fourth
    square is left out of the labels (a false positive with a real score) and every image
    gets one label on a grey cell (an object no fixture finds). Returns the data YAML."""
    root = Path(root)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i, scene in enumerate(scenes):
        (root / "images" / split / f"{i:03d}.png").write_bytes(scene.png())
        lines = [_label(scene, r, c, cls) for j, (r, c, rgb) in enumerate(scene.cells) if j % 4 != 3
                 for cls in [cell_score(rgb, "anchor-free")[1]]]
        lines.append(_label(scene, *_grey_cell(scene), 0))
        (root / "labels" / split / f"{i:03d}.txt").write_text("\n".join(lines) + "\n")
    yaml = f"train: images/{split}\nval: images/{split}\nnc: {len(NAMES)}\nnames: {list(NAMES)}\n"
    (root / "data.yaml").write_text(yaml)
    return root / "data.yaml"


def _label(scene: Scene, r: int, c: int, cls: int) -> str:
    s = scene.cell
    return f"{cls} {(c + 0.5) * s / scene.width:.6f} {(r + 0.5) * s / scene.height:.6f} " \
           f"{s / scene.width:.6f} {s / scene.height:.6f}"


def _grey_cell(scene: Scene) -> Tuple[int, int]:
    used = {(r, c) for r, c, _ in scene.cells}
    gw = scene.width // scene.cell
    return next(divmod(p, gw) for p in range((scene.height // scene.cell) * gw) if divmod(p, gw) not in used)


# ------------------------------------------------------------------ torch building blocks


def _torch():
    import torch

    return torch


def _folded(fmt: InputFormat, weight: np.ndarray, bias: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Rewrite ``weight @ x_rgb01 + bias`` as a function of the network input ``v`` in ``fmt``:
    ``x[rgb c] = (v[k] * std[k] + mean[k]) / (scale * 255)`` with ``k`` the network channel of c."""
    order = fmt.channel_order.upper()
    k_of = [order.index(ch) for ch in "RGB"]
    a = np.zeros((3, 3))
    m = np.zeros(3)
    for c, k in enumerate(k_of):
        a[c, k] = fmt.std[k] / (fmt.scale * 255.0)
        m[c] = fmt.mean[k] / (fmt.scale * 255.0)
    return weight @ a, weight @ m + bias


def _probe(stride: int, weight: np.ndarray, bias: np.ndarray, fmt: InputFormat):
    """AvgPool(stride) + 1x1 conv with ``weight [out, 3]`` on colours in 0..1 RGB (folded for ``fmt``)."""
    torch = _torch()
    w, b = _folded(fmt, np.asarray(weight, np.float64), np.asarray(bias, np.float64))
    conv = torch.nn.Conv2d(3, w.shape[0], 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(w, dtype=torch.float32)[:, :, None, None])
        conv.bias.copy_(torch.tensor(b, dtype=torch.float32))
    return torch.nn.Sequential(torch.nn.AvgPool2d(stride, stride), conv)


def _class_rows(quiet: bool) -> Tuple[np.ndarray, np.ndarray]:
    if quiet:
        return np.zeros((3, 3)), np.full(3, QUIET_LOGIT)
    return class_matrix(), np.full(3, BIAS)


# ---- YOLOv5 Detect (export mode): objectness layout


def _yolov5_level(stride: int, quiet: bool, fmt: InputFormat):
    """One level's conv: per anchor x, y, w, h (logit 0: centre, anchor size), obj, 3 classes."""
    cls_w, cls_b = _class_rows(quiet)
    rows_w, rows_b = [], []
    for obj in ((QUIET_LOGIT, QUIET_LOGIT) if quiet else (OBJ_LOGIT, DUP_OBJ_LOGIT)):
        rows_w += [np.zeros((5, 3)), cls_w]
        rows_b += [np.array([0, 0, 0, 0, obj]), cls_b]
    return _probe(stride, np.concatenate(rows_w), np.concatenate(rows_b), fmt)


def _yolov5_detect(fmt: InputFormat):
    torch = _torch()

    class Detect(torch.nn.Module):
        """YOLOv5 v7.0 ``Detect.forward`` with ``export=True``: ``[N, sum(na*ny*nx), 5+C]``."""

        def __init__(self):
            super().__init__()
            self.strides = (QUIET_STRIDE, CELL)
            self.m = torch.nn.ModuleList([_yolov5_level(QUIET_STRIDE, True, fmt), _yolov5_level(CELL, False, fmt)])
            self.anchors = [((16.0, 16.0), (20.0, 20.0)), ((float(CELL), float(CELL)), (DUP_SIZE, DUP_SIZE))]
            self.na, self.no = 2, 5 + len(NAMES)

        def _make_grid(self, nx, ny, i):
            yv, xv = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
            grid = torch.stack((xv, yv), 2).expand(1, self.na, ny, nx, 2).float() - 0.5
            anchor_grid = torch.tensor(self.anchors[i]).view(1, self.na, 1, 1, 2).expand(1, self.na, ny, nx, 2)
            return grid, anchor_grid

        def forward(self, images):
            z = []
            for i, (m, stride) in enumerate(zip(self.m, self.strides)):
                x = m(images)
                bs, _, ny, nx = x.shape
                x = x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
                grid, anchor_grid = self._make_grid(nx, ny, i)
                xy, wh, conf = x.sigmoid().split((2, 2, self.no - 4), 4)
                xy = (xy * 2 + grid) * stride
                wh = (wh * 2) ** 2 * anchor_grid
                z.append(torch.cat((xy, wh, conf), 4).view(bs, self.na * nx * ny, self.no))
            return torch.cat(z, 1)

    return Detect()


# ---- Ultralytics Detect (export mode): anchor-free, and the end2end / efficient-nms tails


def _dfl_level(stride: int, quiet: bool, fmt: InputFormat):
    """Box conv: 4 sides x REG_MAX bins, bins 0 and 1 equal (distance 0.5 cell), the rest off."""
    side = np.full(REG_MAX, -30.0)
    side[:2] = 0.0
    box = _probe(stride, np.zeros((4 * REG_MAX, 3)), np.tile(side, 4), fmt)
    return box, _probe(stride, *_class_rows(quiet), fmt)


def _ultralytics_head(fmt: InputFormat):
    torch = _torch()

    class Head(torch.nn.Module):
        """Ultralytics ``Detect._inference``: boxes ``[N, 4, A]`` (xywh or xyxy px), class probs ``[N, C, A]``."""

        def __init__(self):
            super().__init__()
            self.strides = (QUIET_STRIDE, CELL)
            levels = [_dfl_level(QUIET_STRIDE, True, fmt), _dfl_level(CELL, False, fmt)]
            self.cv2 = torch.nn.ModuleList([b for b, _ in levels])
            self.cv3 = torch.nn.ModuleList([c for _, c in levels])
            self.dfl = torch.nn.Conv2d(REG_MAX, 1, 1, bias=False).requires_grad_(False)
            self.dfl.weight.data[:] = torch.arange(REG_MAX, dtype=torch.float32).view(1, REG_MAX, 1, 1)

        def make_anchors(self, feats):
            points, strides = [], []
            for f, stride in zip(feats, self.strides):
                _, _, h, w = f.shape
                sx = torch.arange(end=w, dtype=torch.float32) + 0.5
                sy = torch.arange(end=h, dtype=torch.float32) + 0.5
                sy, sx = torch.meshgrid(sy, sx, indexing="ij")
                points.append(torch.stack((sx, sy), -1).view(-1, 2))
                strides.append(torch.full((h * w, 1), float(stride), dtype=torch.float32))
            return torch.cat(points).transpose(0, 1), torch.cat(strides).transpose(0, 1)

        def forward(self, images, xywh: bool = True):
            feats = [torch.cat((b(images), c(images)), 1) for b, c in zip(self.cv2, self.cv3)]
            shape = feats[0].shape
            anchors, strides = self.make_anchors(feats)
            x_cat = torch.cat([f.view(shape[0], 4 * REG_MAX + len(NAMES), -1) for f in feats], 2)
            box, cls = x_cat.split((REG_MAX * 4, len(NAMES)), 1)
            b, _, a = box.shape
            dist = self.dfl(box.view(b, 4, REG_MAX, a).transpose(2, 1).softmax(1)).view(b, 4, a)
            lt, rb = dist.chunk(2, 1)
            x1y1, x2y2 = anchors.unsqueeze(0) - lt, anchors.unsqueeze(0) + rb
            if xywh:
                dbox = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1)
            else:
                dbox = torch.cat((x1y1, x2y2), 1)
            return dbox * strides, cls.sigmoid()

    return Head()


def _anchor_free(fmt: InputFormat):
    torch = _torch()

    class AnchorFree(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = _ultralytics_head(fmt)

        def forward(self, images):
            dbox, probs = self.head(images)
            return torch.cat((dbox, probs), 1)

    return AnchorFree()


def _end_to_end(fmt: InputFormat, max_det: int):
    torch = _torch()

    class EndToEnd(torch.nn.Module):
        """Ultralytics ``Detect.postprocess`` (the end2end / YOLOv10 / YOLO26 ``nms=False`` branch)."""

        def __init__(self):
            super().__init__()
            self.head = _ultralytics_head(fmt)

        def forward(self, images):
            dbox, probs = self.head(images, xywh=False)
            preds = torch.cat((dbox, probs), 1).permute(0, 2, 1)
            batch_size, anchors, _ = preds.shape
            nc = len(NAMES)
            boxes, scores = preds.split([4, nc], dim=-1)
            k = min(max_det, anchors)
            index = scores.amax(dim=-1).topk(k)[1].unsqueeze(-1)
            boxes = boxes.gather(dim=1, index=index.repeat(1, 1, 4))
            scores = scores.gather(dim=1, index=index.repeat(1, 1, nc))
            scores, index = scores.flatten(1).topk(k)
            i = torch.arange(batch_size)[..., None]
            return torch.cat([boxes[i, index // nc], scores[..., None], (index % nc)[..., None].float()], dim=-1)

    return EndToEnd()


def _efficient_nms_topk(fmt: InputFormat, max_det: int):
    torch = _torch()

    class EfficientNMSTopK(torch.nn.Module):
        """The four EfficientNMS outputs, made with TopK (no NMS needed: one box per cell)."""

        def __init__(self):
            super().__init__()
            self.head = _ultralytics_head(fmt)

        def forward(self, images):
            dbox, probs = self.head(images, xywh=False)
            boxes, probs = dbox.permute(0, 2, 1), probs.permute(0, 2, 1)
            best, cls = probs.max(-1)
            scores, index = best.topk(min(max_det, best.shape[1]))
            keep = scores > EFFICIENT_NMS_THRESHOLD
            det_boxes = boxes.gather(1, index.unsqueeze(-1).repeat(1, 1, 4)) * keep.unsqueeze(-1)
            det_classes = torch.where(keep, cls.gather(1, index), torch.zeros_like(index)).to(torch.int32)
            num_dets = keep.sum(1, keepdim=True).to(torch.int32)
            return num_dets, det_boxes, scores * keep, det_classes

    return EfficientNMSTopK()


def _efficient_nms_trt(fmt: InputFormat, max_det: int):
    torch = _torch()

    class TRTEfficientNMS(torch.autograd.Function):
        """As community exports write it (e.g. YOLOv8-TensorRT): a placeholder forward and a
        ``TRT::EfficientNMS_TRT`` node in the graph."""

        @staticmethod
        def forward(ctx, boxes, scores):
            b = scores.shape[0]
            return (torch.zeros(b, 1, dtype=torch.int32), torch.zeros(b, max_det, 4),
                    torch.zeros(b, max_det), torch.zeros(b, max_det, dtype=torch.int32))

        @staticmethod
        def symbolic(g, boxes, scores):
            return g.op("TRT::EfficientNMS_TRT", boxes, scores, background_class_i=-1, box_coding_i=0,
                        iou_threshold_f=0.45, max_output_boxes_i=max_det, plugin_version_s="1",
                        score_activation_i=0, score_threshold_f=EFFICIENT_NMS_THRESHOLD, outputs=4)

    class WithTRTNMS(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = _ultralytics_head(fmt)

        def forward(self, images):
            dbox, probs = self.head(images, xywh=False)
            return TRTEfficientNMS.apply(dbox.permute(0, 2, 1), probs.permute(0, 2, 1))

    return WithTRTNMS()


def _detr(fmt: InputFormat, single_output: bool):
    torch = _torch()

    def inverse_sigmoid(x, eps=1e-5):
        x = x.clamp(min=0, max=1)
        return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))

    class DETRHead(torch.nn.Module):
        """RT-DETR's last decoder step: boxes = sigmoid(inverse_sigmoid(reference) + delta),
        one query per 32-pixel cell (reference = the cell, delta = 0), logits from the probe."""

        def __init__(self):
            super().__init__()
            self.score_head = _probe(CELL, class_matrix(), np.full(3, BIAS), fmt)
            self.bbox_head = _probe(CELL, np.zeros((4, 3)), np.zeros(4), fmt)

        def forward(self, images):
            h, w = images.shape[2], images.shape[3]
            logits = self.score_head(images)
            _, _, gh, gw = logits.shape
            gy, gx = torch.meshgrid(torch.arange(gh, dtype=torch.float32), torch.arange(gw, dtype=torch.float32),
                                    indexing="ij")
            size = torch.ones_like(gx)
            ref = torch.stack(((gx + 0.5) * CELL / w, (gy + 0.5) * CELL / h, size * CELL / w, size * CELL / h), -1)
            delta = self.bbox_head(images).flatten(2).transpose(1, 2)
            boxes = (inverse_sigmoid(ref.view(1, -1, 4)) + delta).sigmoid()
            logits = logits.flatten(2).transpose(1, 2)
            if single_output:
                return torch.cat((boxes, logits.sigmoid()), -1)
            return boxes, logits

    return DETRHead()


# ------------------------------------------------------------------ export


@dataclass(frozen=True)
class Fixture:
    """What a fixture file is, for the tests: its layout and how it was made."""

    path: Path
    layout: str
    kind: str  # the layout whose scores :func:`expected` computes
    imgsz: Tuple[int, int]
    input_format: InputFormat = InputFormat()
    meta: Dict[str, str] = field(default_factory=dict)
    outputs: Tuple[str, ...] = ("output0",)


def yolov5_meta(names: Sequence[str] = NAMES) -> Dict[str, str]:
    """What YOLOv5's ``export.py`` stores: ``{"stride": 32, "names": {0: ...}}``, each ``str(value)``."""
    return {"stride": "32", "names": str(dict(enumerate(names)))}


def ultralytics_meta(imgsz: Tuple[int, int], end2end: bool = False, head: str = "Detect", batch: int = 1,
                     names: Sequence[str] = NAMES) -> Dict[str, str]:
    """The metadata_props Ultralytics 8.4 writes (every value ``str(value)``)."""
    return {
        "description": "Ultralytics YOLO26n model trained on shapes.yaml", "author": "Ultralytics",
        "date": "2025-01-01T00:00:00", "version": "8.4.190", "license": "AGPL-3.0 License",
        "docs": "https://docs.ultralytics.com", "stride": "32", "task": "detect", "head": head,
        "batch": str(batch), "imgsz": str(list(imgsz)), "names": str(dict(enumerate(names))),
        "args": str({"batch": batch, "half": False, "dynamic": False, "simplify": True, "opset": 17,
                     "nms": False}),
        "channels": "3", "end2end": str(end2end),
    }


def _export(module, path: Path, imgsz: Tuple[int, int], outputs: Sequence[str], batch: Optional[int],
            dynamic_hw: bool, meta: Dict[str, str], opset: int = 17, custom: bool = False,
            anchor_axis: int = 1) -> Path:
    """torch.onnx (TorchScript exporter, like Ultralytics/YOLOv5) + metadata; batch ``None`` = dynamic.
    With ``dynamic_hw`` the outputs' ``anchor_axis`` is named "anchors", as Ultralytics names it."""
    import onnx

    torch = _torch()
    axes = {}
    in_axes = {} if batch else {0: "batch"}
    if dynamic_hw:
        in_axes.update({2: "height", 3: "width"})
    if in_axes:
        axes["images"] = in_axes
        for name in outputs:
            axes[name] = {} if batch else {0: "batch"}
            if dynamic_hw:
                axes[name][anchor_axis] = "anchors"
    x = torch.rand(batch or 2, 3, *imgsz)
    path = Path(path)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings: the graphs are checked by the tests
        torch.onnx.export(module.eval(), (x,), str(path), input_names=["images"], output_names=list(outputs),
                          dynamic_axes=axes or None, opset_version=opset, dynamo=False,
                          custom_opsets={"TRT": 1} if custom else None)
    model = onnx.load(str(path))
    if not custom:  # onnxslim folds the shape arithmetic, as Ultralytics and YOLOv5 --simplify do
        import onnxslim

        model = onnxslim.slim(model)
        _declare_axes(model, axes)
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    if not custom:
        onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _declare_axes(model, axes: Dict[str, Dict[int, str]]) -> None:
    """The dynamic axes as torch.onnx declared them (onnxslim may resolve some to numbers)."""
    for value in list(model.graph.input) + list(model.graph.output):
        for axis, label in axes.get(value.name, {}).items():
            value.type.tensor_type.shape.dim[axis].dim_param = label


def _with_stem(head):
    """A 3x3 identity convolution in front: the "backbone" that INT8 quantization quantizes
    (the head's output convolutions and the decode tail stay float by default)."""
    torch = _torch()

    class Stem(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 3, 3, padding=1, bias=False).requires_grad_(False)
            self.stem.weight.zero_()
            self.stem.weight[:, :, 1, 1] = torch.eye(3)
            self.head = head

        def forward(self, images):
            return self.head(self.stem(images))

    return Stem()


def _fixture(module, path, layout, kind, imgsz, outputs, batch, dynamic_hw, fmt, meta, **kw) -> Fixture:
    module = _with_stem(module)
    _export(module, path, tuple(imgsz), outputs, batch, dynamic_hw, meta or {}, **kw)
    return Fixture(Path(path), layout, kind, tuple(imgsz), fmt, dict(meta or {}), tuple(outputs))


def objectness_onnx(path: Path, imgsz=(128, 128), batch: Optional[int] = None,
                    input_format: InputFormat = InputFormat(), meta: Optional[Dict[str, str]] = None) -> Fixture:
    """YOLOv5-style ``output0 [N, A, 5+C]`` (A = 2 anchors x (stride-16 + stride-32 cells))."""
    return _fixture(_yolov5_detect(input_format), path, "objectness", "objectness", imgsz, ("output0",),
                    batch, False, input_format, meta)


def anchor_free_onnx(path: Path, imgsz=(128, 128), batch: Optional[int] = None, dynamic_hw: bool = False,
                     input_format: InputFormat = InputFormat(), meta: Optional[Dict[str, str]] = None) -> Fixture:
    """Ultralytics ``Detect``-style ``output0 [N, 4+C, A]`` (DFL, anchors from the feature shapes)."""
    return _fixture(_anchor_free(input_format), path, "anchor-free", "anchor-free", imgsz, ("output0",),
                    batch, dynamic_hw, input_format, meta, anchor_axis=2)


def end_to_end_onnx(path: Path, imgsz=(128, 128), max_det: int = 50, batch: Optional[int] = None,
                    dynamic_hw: bool = False, input_format: InputFormat = InputFormat(),
                    meta: Optional[Dict[str, str]] = None) -> Fixture:
    """Ultralytics end2end ``output0 [N, min(max_det, A), 6]`` (x1, y1, x2, y2, score, class)."""
    return _fixture(_end_to_end(input_format, max_det), path, "end-to-end", "end-to-end", imgsz, ("output0",),
                    batch, dynamic_hw, input_format, meta)


EFFICIENT_NMS_OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")


def efficient_nms_onnx(path: Path, imgsz=(128, 128), max_det: int = 20, batch: Optional[int] = None,
                       input_format: InputFormat = InputFormat(), meta: Optional[Dict[str, str]] = None) -> Fixture:
    """The four EfficientNMS outputs from TopK (ONNX Runtime runs it)."""
    return _fixture(_efficient_nms_topk(input_format, max_det), path, "efficient-nms", "efficient-nms", imgsz,
                    EFFICIENT_NMS_OUTPUTS, batch, False, input_format, meta)


def efficient_nms_trt_onnx(path: Path, imgsz=(128, 128), max_det: int = 20, domain: str = "TRT",
                           batch: Optional[int] = None, meta: Optional[Dict[str, str]] = None) -> Fixture:
    """The four outputs from a real ``EfficientNMS_TRT`` node (``domain`` "TRT" or "" as some
    community exports write it). Output types and shapes are declared, as those exports do."""
    import onnx
    from onnx import TensorProto, helper

    fx = _fixture(_efficient_nms_trt(InputFormat(), max_det), path, "efficient-nms", "efficient-nms", imgsz,
                  EFFICIENT_NMS_OUTPUTS, batch, False, InputFormat(), meta, custom=True)
    model = onnx.load(str(path))
    n = batch or "batch"
    types = {"num_dets": (TensorProto.INT32, [n, 1]), "det_boxes": (TensorProto.FLOAT, [n, max_det, 4]),
             "det_scores": (TensorProto.FLOAT, [n, max_det]), "det_classes": (TensorProto.INT32, [n, max_det])}
    del model.graph.output[:]
    model.graph.output.extend([helper.make_tensor_value_info(k, *types[k]) for k in EFFICIENT_NMS_OUTPUTS])
    if domain != "TRT":
        for node in model.graph.node:
            if node.op_type == "EfficientNMS_TRT":
                node.domain = domain
        kept = [o for o in model.opset_import if o.domain != "TRT"]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    onnx.save(model, str(path))
    return fx


def detr_onnx(path: Path, imgsz=(128, 128), single_output: bool = False, batch: Optional[int] = None,
              input_format: InputFormat = InputFormat(),
              meta: Optional[Dict[str, str]] = None) -> Fixture:
    """RT-DETR-style: ``pred_boxes [N,Q,4]`` + ``pred_logits [N,Q,C]`` (logits), or with
    ``single_output`` ``output0 [N,Q,4+C]`` with probabilities (Ultralytics' RT-DETR export)."""
    outputs = ("output0",) if single_output else ("pred_boxes", "pred_logits")
    return _fixture(_detr(input_format, single_output), path, "detr", "detr", imgsz, outputs, batch, False,
                    input_format, meta)


def network_input(images: Sequence[np.ndarray], fmt: InputFormat = InputFormat()) -> np.ndarray:
    """``[N, 3, H, W]`` float32 from ``H x W x 3`` uint8 RGB images at the network size, in ``fmt``."""
    x = np.stack(images).astype(np.float32)
    x = x[..., ["RGB".index(ch) for ch in fmt.channel_order.upper()]]
    x = (x * np.float32(fmt.scale) - np.asarray(fmt.mean, np.float32)) / np.asarray(fmt.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


WIDE = (384, 640)

# name -> builder(path): every fixture the layout tests use
BUILDERS: Dict[str, Callable[[Path], Fixture]] = {
    "yolov5": lambda p: objectness_onnx(p, meta=yolov5_meta()),
    "yolov5_b1": lambda p: objectness_onnx(p, batch=1, meta=yolov5_meta()),
    "yolov5_bgr255": lambda p: objectness_onnx(p, input_format=BGR_255, meta=yolov5_meta()),
    "yolov5_imagenet": lambda p: objectness_onnx(p, imgsz=WIDE, input_format=IMAGENET, meta=yolov5_meta()),
    "ultralytics_dynamic": lambda p: anchor_free_onnx(p, imgsz=WIDE, dynamic_hw=True, meta=ultralytics_meta(WIDE)),
    "dynamic_no_meta": lambda p: anchor_free_onnx(p, dynamic_hw=True),
    "ultralytics_b1": lambda p: anchor_free_onnx(p, imgsz=WIDE, batch=1, meta=ultralytics_meta(WIDE)),
    "yolo26_e2e": lambda p: end_to_end_onnx(p, imgsz=WIDE, meta=ultralytics_meta(WIDE, end2end=True)),
    "yolo26_e2e_dynamic": lambda p: end_to_end_onnx(p, imgsz=WIDE, dynamic_hw=True,
                                                    meta=ultralytics_meta(WIDE, end2end=True)),
    "efficient_nms": lambda p: efficient_nms_onnx(p),
    "efficient_nms_trt": lambda p: efficient_nms_trt_onnx(p, meta=yolov5_meta()),  # names kept by the exporter
    "efficient_nms_trt_nodomain": lambda p: efficient_nms_trt_onnx(p, domain=""),
    "detr_logits": lambda p: detr_onnx(p),
    "rtdetr": lambda p: detr_onnx(p, imgsz=WIDE, single_output=True, meta=ultralytics_meta(WIDE, head="RTDETRDecoder")),
}


def build(name: str, out: Path) -> Fixture:
    """Write fixture ``name`` as ``out/name.onnx``."""
    Path(out).mkdir(parents=True, exist_ok=True)
    return BUILDERS[name](Path(out) / f"{name}.onnx")


if __name__ == "__main__":  # pragma: no cover
    import sys

    for name in BUILDERS:
        fx = build(name, Path(sys.argv[1] if len(sys.argv) > 1 else "layout_models"))
        print(fx.layout, fx.path)
