"""Batched NMS (generator/runtime/boxes.py) vs per-image loops with OpenCV's NMS.

Two per-image baselines, both with OpenCV's class-aware ``cv2.dnn.NMSBoxesBatched`` (the
same semantics as ours, so the kept detections can be compared):

- ``rows``: the loop of Ultralytics' ONNX/OpenCV example that public Triton ensembles
  copy: per image, a Python loop over the anchors with ``cv2.minMaxLoc`` on each row's
  class scores, then NMS;
- ``vectorized``: a stronger per-image loop: numpy filtering per image, then NMS.

All run on the same synthetic detector output (clusters of jittered boxes around
objects, background below the threshold), must keep the same detections, and are timed
in alternating rounds. Two scales: COCO-like (80 classes, 640 px: 8400 anchors) and the
demo's (3 classes, 320 px: 2100 anchors).

    python benchmarks/nms.py [--batch 16] [--objects 20] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generator.runtime import boxes  # noqa: E402
from generator.runtime.letterbox import unletterbox  # noqa: E402


def synthetic_raw(batch: int, classes: int, anchors: int, objects: int, size: int = 640, seed: int = 0) -> np.ndarray:
    """``[B, 4 + C, A]``: most anchors background; around each object a cluster of
    jittered boxes with high scores of its class (what NMS sees from a trained detector)."""
    rng = np.random.default_rng(seed)
    raw = np.zeros((batch, 4 + classes, anchors), np.float32)
    raw[:, :2] = rng.uniform(0, size, (batch, 2, anchors))
    raw[:, 2:4] = rng.uniform(4, 60, (batch, 2, anchors))
    raw[:, 4:] = rng.uniform(0, 0.05, (batch, classes, anchors))  # background noise below threshold
    per_object = 12
    for b in range(batch):
        idx = rng.choice(anchors, objects * per_object, replace=False).reshape(objects, per_object)
        for o in range(objects):
            cx, cy = rng.uniform(50, size - 50, 2)
            w, h = rng.uniform(20, 200, 2)
            cls = rng.integers(classes)
            a = idx[o]
            raw[b, 0, a] = cx + rng.normal(0, 3, per_object)
            raw[b, 1, a] = cy + rng.normal(0, 3, per_object)
            raw[b, 2, a] = w * rng.uniform(0.9, 1.1, per_object)
            raw[b, 3, a] = h * rng.uniform(0.9, 1.1, per_object)
            raw[b, 4 + cls, a] = rng.uniform(0.3, 0.95, per_object)
    return raw


def _candidates_vectorized(pred, score_threshold):
    scores_all = pred[:, 4:]
    cls = scores_all.argmax(axis=1)
    conf = scores_all[np.arange(len(cls)), cls]
    keep = conf > score_threshold
    return pred[keep, :4], conf[keep], cls[keep]


def _candidates_rows(pred, score_threshold):
    """Ultralytics' example: one Python iteration per anchor, cv2.minMaxLoc on its scores."""
    xywh, conf, cls = [], [], []
    for row in pred:
        _, score, _, (_, best) = cv2.minMaxLoc(row[4:])
        if score > score_threshold:
            xywh.append(row[:4])
            conf.append(score)
            cls.append(best)
    return np.array(xywh, np.float32).reshape(-1, 4), np.array(conf, np.float32), np.array(cls, np.int64)


def per_image_opencv(raw, transforms, score_threshold, iou_threshold, max_det, candidates=_candidates_vectorized):
    """A postprocess model's per-image loop with OpenCV's (class-aware) NMS."""
    out_num = np.zeros(len(raw), np.int32)
    out_boxes = np.zeros((len(raw), max_det, 4), np.float32)
    out_scores = np.zeros((len(raw), max_det), np.float32)
    out_classes = np.full((len(raw), max_det), -1, np.int32)
    for i in range(len(raw)):
        xywh, conf, cls = candidates(np.ascontiguousarray(raw[i].T), score_threshold)  # [A, 4 + C]
        tl = np.column_stack((xywh[:, 0] - xywh[:, 2] / 2, xywh[:, 1] - xywh[:, 3] / 2, xywh[:, 2], xywh[:, 3]))
        idx = cv2.dnn.NMSBoxesBatched(tl.tolist(), conf.tolist(), cls.tolist(), score_threshold, iou_threshold)
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)[:max_det]
        n = len(idx)
        xyxy = np.column_stack((tl[idx, 0], tl[idx, 1], tl[idx, 0] + tl[idx, 2], tl[idx, 1] + tl[idx, 3]))
        out_num[i] = n
        out_boxes[i, :n] = unletterbox(xyxy.astype(np.float32), transforms[i])
        out_scores[i, :n] = conf[idx]
        out_classes[i, :n] = cls[idx]
    return out_num, out_boxes, out_scores, out_classes


def per_image_rows(raw, transforms, score_threshold, iou_threshold, max_det):
    return per_image_opencv(raw, transforms, score_threshold, iou_threshold, max_det, candidates=_candidates_rows)


def same_detections(a, b) -> bool:
    if not (a[0] == b[0]).all():
        return False
    sets = [[sorted(map(tuple, np.round(r[1][i, :r[0][i]], 1).tolist())) for i in range(len(r[0]))] for r in (a, b)]
    return sets[0] == sets[1]


def timed(fn, *args, runs: int = 5) -> float:
    t0 = time.perf_counter()
    for _ in range(runs):
        fn(*args)
    return (time.perf_counter() - t0) / runs * 1000


SCALES = {"coco": dict(classes=80, anchors=8400), "demo": dict(classes=3, anchors=2100)}
METHODS = {"batched (ours)": None, "per-image vectorized + NMSBoxesBatched": per_image_opencv,
           "per-image rows (public example) + NMSBoxesBatched": per_image_rows}


def measure(batch: int, classes: int, anchors: int, objects: int, rounds: int) -> dict:
    raw = synthetic_raw(batch, classes, anchors, objects)
    transforms = np.tile(np.array([[0.5, 0, 140, 1280, 720]], np.float32), (batch, 1))
    thr = (0.25, 0.45, 100)
    fns = {name: (fn or boxes.postprocess) for name, fn in METHODS.items()}
    results = {name: fn(raw, transforms, *thr) for name, fn in fns.items()}
    ours = results["batched (ours)"]
    agree = {name: same_detections(ours, r) for name, r in results.items()}
    times = {name: [] for name in fns}
    for _ in range(rounds):  # alternating rounds: machine noise hits all alike
        for name, fn in fns.items():
            times[name].append(timed(fn, raw, transforms, *thr, runs=2 if "rows" in name else 5))
    med = {name: statistics.median(v) for name, v in times.items()}
    return {"batch": batch, "classes": classes, "anchors": anchors, "objects_per_image": objects,
            "kept_per_image": float(ours[0].mean()), "same_detections": agree, "ms_per_batch": med,
            "speedup_of_ours": {name: med[name] / med["batched (ours)"] for name in fns}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--objects", type=int, default=20, help="objects per image")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    report = {}
    for scale, dims in SCALES.items():
        r = report[scale] = measure(args.batch, dims["classes"], dims["anchors"], args.objects, args.rounds)
        print(f"{scale}: raw [{args.batch}, {4 + r['classes']}, {r['anchors']}], {args.objects} objects/image, "
              f"kept {r['kept_per_image']:.0f}/image; median of {args.rounds} alternating rounds")
        for name, ms in r["ms_per_batch"].items():
            print(f"  {name:<52} {ms:9.2f} ms/batch  ours is {r['speedup_of_ours'][name]:6.2f}x faster"
                  f"  same detections: {r['same_detections'][name]}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
