"""Decode + NMS against a plain per-image reference, and letterbox round trips."""

import numpy as np
import pytest

from generator.runtime import boxes, imaging, letterbox


def iou(a, b):
    """Textbook IoU of two x1, y1, x2, y2 boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_nms(xyxy, scores, classes, iou_threshold):
    """Textbook greedy NMS, one image, one box at a time."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    for i in order:
        ok = True
        for j in keep:
            if classes[i] != classes[j]:
                continue
            if iou(xyxy[i], xyxy[j]) > iou_threshold:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def random_raw(rng, batch, num_classes, anchors, size=320):
    cxcy = rng.uniform(0, size, (batch, 2, anchors))
    wh = rng.uniform(4, size / 3, (batch, 2, anchors))
    scores = rng.uniform(0, 1, (batch, num_classes, anchors)) ** 3
    return np.concatenate([cxcy, wh, scores], 1).astype(np.float32)


@pytest.fixture(params=["opencv", "numpy"])
def nms_path(request, monkeypatch):
    """Both NMS paths: OpenCV's C++ NMS per image, and the numpy greedy pass (no OpenCV)."""
    if request.param == "numpy":
        monkeypatch.setattr(boxes, "cv2", None)
    return request.param


@pytest.mark.parametrize("seed", range(6))
def test_batched_nms_matches_reference(seed, nms_path):
    rng = np.random.default_rng(seed)
    batch, nc, anchors = 4, 3, 300
    raw = random_raw(rng, batch, nc, anchors)
    identity = np.tile(np.array([[1, 0, 0, 320, 320]], np.float32), (batch, 1))
    num, out_boxes, out_scores, out_classes = boxes.postprocess(raw, identity, 0.3, 0.5, max_detections=300)
    for b in range(batch):
        cls = raw[b, 4:].argmax(0)
        conf = raw[b, 4:].max(0)
        cand = np.nonzero(conf > 0.3)[0]
        xywh = raw[b, :4][:, cand].T
        xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
        keep = reference_nms(xyxy, conf[cand], cls[cand], 0.5)
        expected = np.clip(xyxy[keep], 0, 320)
        assert num[b] == len(keep) > 0
        np.testing.assert_allclose(out_boxes[b, : num[b]], expected, atol=1e-4)
        np.testing.assert_allclose(out_scores[b, : num[b]], conf[cand][keep], atol=1e-6)
        np.testing.assert_array_equal(out_classes[b, : num[b]], cls[cand][keep])
        assert (out_classes[b, num[b]:] == -1).all() and (out_scores[b, num[b]:] == 0).all()


def test_nms_is_class_aware_and_suppresses_overlaps(nms_path):
    # two identical boxes of different classes survive; a same-class duplicate does not
    raw = np.zeros((1, 4 + 2, 3), np.float32)
    raw[0, :4, :] = np.array([[50, 50, 50], [50, 50, 50], [20, 20, 20], [20, 20, 20]], np.float32)
    raw[0, 4:, 0] = [0.9, 0.0]
    raw[0, 4:, 1] = [0.8, 0.0]
    raw[0, 4:, 2] = [0.0, 0.7]
    t = np.array([[1, 0, 0, 100, 100]], np.float32)
    num, _, scores, classes = boxes.postprocess(raw, t, 0.25, 0.5, 10)
    assert num[0] == 2
    assert scores[0, :2].tolist() == pytest.approx([0.9, 0.7])
    assert classes[0, :2].tolist() == [0, 1]


def test_max_detections_caps_and_pads(nms_path):
    rng = np.random.default_rng(1)
    raw = random_raw(rng, 2, 2, 500)
    t = np.tile(np.array([[1, 0, 0, 320, 320]], np.float32), (2, 1))
    num, b, s, c = boxes.postprocess(raw, t, 0.01, 0.9, max_detections=5)
    assert num.tolist() == [5, 5]
    assert b.shape == (2, 5, 4) and s.shape == (2, 5) and c.shape == (2, 5)
    assert (np.diff(s, axis=1) <= 0).all()  # sorted by score


def test_empty_batch_item_and_no_candidates(nms_path):
    raw = np.zeros((3, 6, 10), np.float32)
    raw[1, 4, 0] = 0.9
    raw[1, :4, 0] = [10, 10, 4, 4]
    t = np.tile(np.array([[1, 0, 0, 64, 64]], np.float32), (3, 1))
    num, b, s, c = boxes.postprocess(raw, t, 0.25, 0.45, 4)
    assert num.tolist() == [0, 1, 0]
    np.testing.assert_allclose(b[1, 0], [8, 8, 12, 12])


@pytest.mark.parametrize("shape", [(480, 640), (640, 480), (100, 100), (1, 1), (1080, 1920), (33, 777)])
def test_letterbox_round_trip_of_boxes(shape):
    h, w = shape
    img = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    chw, t = imaging.letterbox(img, 320, 320)
    assert chw.shape == (3, 320, 320) and chw.dtype == np.float32
    assert t.tolist()[3:] == [w, h]
    rng = np.random.default_rng(1)
    x1 = rng.uniform(0, w * 0.5, 20)
    y1 = rng.uniform(0, h * 0.5, 20)
    orig = np.stack([x1, y1, x1 + rng.uniform(0, w * 0.5, 20), y1 + rng.uniform(0, h * 0.5, 20)], 1).astype(np.float32)
    there = letterbox.letterbox_boxes(orig, t)
    assert there.min() >= -1e-3 and there.max() <= 320 + 1e-3  # lands inside the model input
    back = letterbox.unletterbox(there, t)
    np.testing.assert_allclose(back, orig, atol=1e-3 * max(h, w))


def test_letterbox_pads_with_114_and_centres():
    img = np.full((100, 200, 3), 255, np.uint8)
    chw, t = imaging.letterbox(img, 320, 320)
    scale, pad_x, pad_y = t[:3]
    assert scale == pytest.approx(1.6) and pad_x == 0 and pad_y == 80
    assert chw[:, 0, 0] == pytest.approx([114 / 255] * 3)
    assert chw[:, 160, 160] == pytest.approx([1.0] * 3)
    assert chw[:, 319, 319] == pytest.approx([114 / 255] * 3)


def test_decode_converts_gray_alpha_and_16_bit():
    import cv2

    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    rgba = np.dstack([gray, gray // 2, gray // 4, np.full_like(gray, 255)])  # stored as BGRA
    deep = (gray.astype(np.uint16) << 8)
    for arr, expect_first in ((gray, [0, 0, 0]), (rgba, [0, 0, 0]), (deep, [0, 0, 0])):
        ok, enc = cv2.imencode(".png", arr)
        img = imaging.decode_image(enc.tobytes())
        assert img.shape == (8, 8, 3) and img.dtype == np.uint8
        assert img[0, 0].tolist() == expect_first
    ok, enc = cv2.imencode(".png", rgba)
    assert imaging.decode_image(enc.tobytes())[7, 7].tolist() == [63 // 4, 63 // 2, 63]  # BGR -> RGB


@pytest.mark.parametrize("data,match", [(b"", "empty"), (b"not an image", "cannot decode"), ("str", "bytes")])
def test_decode_errors_say_why(data, match):
    with pytest.raises(imaging.ImageError, match=match):
        imaging.decode_image(data)
