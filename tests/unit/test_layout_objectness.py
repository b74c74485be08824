"""The ``objectness`` layout ([N, A, 5+C], YOLOv5-style): score = objectness x best class,
decoded for a whole batch, checked against hand-made arrays and a per-image reference."""

import numpy as np
import pytest

from generator.runtime import boxes
from generator.runtime.layouts import LayoutMismatch, OutputShape, get_layout

IDENTITY = [1, 0, 0, 200, 200]


def _rows():
    """Three images, four anchors, two classes: 2, 1 and 0 candidates above 0.3."""
    raw = np.zeros((3, 4, 7), np.float32)
    #                cx   cy  w   h   obj   cls0  cls1
    raw[0, 0] = [50, 40, 20, 10, 0.5, 0.25, 0.75]  # 0.375, class 1
    raw[0, 1] = [10, 10, 4, 8, 1.0, 0.5, 0.125]  # 0.5, class 0
    raw[0, 2] = [90, 90, 10, 10, 0.25, 1.0, 0.0]  # 0.25: a sure class, an unsure object
    raw[0, 3] = [70, 70, 10, 10, 0.75, 0.25, 0.25]  # 0.1875
    raw[1, 2] = [100, 60, 40, 20, 0.5, 0.0, 1.0]  # 0.5, class 1
    raw[1, 3] = [30, 30, 2, 2, 0.9, 0.25, 0.25]  # 0.225
    raw[2, :, 4] = 1.0
    raw[2, :, 5:] = 0.25  # every anchor 0.25: nothing above 0.3
    return raw


def test_score_is_objectness_times_the_best_class():
    cand = get_layout("objectness").decode([_rows()], 0.3, 100)
    assert cand.xyxy.shape == (3, 2, 4) and cand.xyxy.dtype == np.float32
    np.testing.assert_array_equal(cand.valid, [[True, True], [True, False], [False, False]])
    np.testing.assert_array_equal(cand.scores[0], [0.5, 0.375])
    assert cand.scores[1, 0] == 0.5
    np.testing.assert_array_equal(cand.classes[0], [0, 1])
    assert cand.classes[1, 0] == 1
    np.testing.assert_array_equal(cand.xyxy[0], [[8, 6, 12, 14], [40, 35, 60, 45]])
    np.testing.assert_array_equal(cand.xyxy[1, 0], [80, 50, 120, 70])


def test_all_below_threshold_gives_no_slots():
    raw = _rows()[2:]
    cand = get_layout("objectness").decode([raw], 0.3, 100)
    assert cand.xyxy.shape == (1, 0, 4) and cand.valid.shape == (1, 0)
    num, b, s, c = boxes.postprocess(raw, np.float32([IDENTITY]), 0.3, 0.5, 4, layout="objectness")
    assert num.tolist() == [0] and c.tolist() == [[-1] * 4] and not s.any() and not b.any()


def test_postprocess_runs_class_aware_nms_and_pads_each_image():
    raw = np.zeros((2, 3, 7), np.float32)
    raw[0, 0] = [50, 50, 20, 20, 1.0, 0.9, 0.0]
    raw[0, 1] = [51, 51, 20, 20, 1.0, 0.8, 0.0]  # same class, overlaps the first: suppressed
    raw[0, 2] = [51, 51, 20, 20, 1.0, 0.0, 0.7]  # same place, other class: kept
    raw[1, 0] = [20, 20, 10, 10, 0.5, 0.0, 0.8]  # 0.4
    t = np.float32([[0.5, 0, 0, 400, 400], IDENTITY])
    num, b, s, c = boxes.postprocess(raw, t, 0.3, 0.5, 5, layout=get_layout("objectness"))
    assert num.tolist() == [2, 1]
    np.testing.assert_allclose(s, [[0.9, 0.7, 0, 0, 0], [0.4, 0, 0, 0, 0]], rtol=1e-6)
    assert c.tolist() == [[0, 1, -1, -1, -1], [1, -1, -1, -1, -1]]
    np.testing.assert_array_equal(b[0, :2], [[80, 80, 120, 120], [82, 82, 122, 122]])  # scale 0.5 undone
    np.testing.assert_array_equal(b[1, 0], [15, 15, 25, 25])


def test_matches_a_per_image_reference_and_caps_candidates():
    rng = np.random.default_rng(3)
    raw = rng.uniform(0, 1, (4, 300, 5 + 3)).astype(np.float32)
    raw[..., :4] *= 100
    cand = get_layout("objectness").decode([raw], 0.2, 25)
    assert cand.scores.shape == (4, 25) and cand.valid.all()
    for i in range(4):
        conf = raw[i, :, 4] * raw[i, :, 5:].max(axis=1)
        best = np.argsort(-conf, kind="stable")[:25]
        np.testing.assert_array_equal(cand.scores[i], conf[best])
        np.testing.assert_array_equal(cand.classes[i], raw[i, best, 5:].argmax(axis=1))
        cx, cy, w, h = raw[i, best, :4].T
        np.testing.assert_array_equal(cand.xyxy[i], np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1))


def test_fp16_outputs_decode_like_fp32():
    raw = _rows()
    a = get_layout("objectness").decode([raw.astype(np.float16)], 0.3, 100)
    b = get_layout("objectness").decode([raw], 0.3, 100)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_output_checks():
    layout = get_layout("objectness")
    assert layout.check_outputs([("output0", [None, 25200, 85], "FP32")]) == OutputShape(80, 25200)
    assert layout.check_outputs([("output0", (1, 6300, 6))]) == OutputShape(1, 6300)
    for dims in ([None, 25200, 5], [None, None, 85], [None, 25200, None], [None, 85]):
        with pytest.raises(LayoutMismatch, match=r"output 'output0' must be \[N, A, 5\+C\] with fixed A and C >= 1, "
                                                 r"got \["):
            layout.check_outputs([("output0", dims)])
    with pytest.raises(LayoutMismatch, match=r"output 'output0' must be FP32 or FP16, got INT32"):
        layout.check_outputs([("output0", [1, 25200, 85], "INT32")])
    with pytest.raises(LayoutMismatch, match=r"expected one output \[N, A, 5\+C\] .*found \['a', 'b'\]"):
        layout.check_outputs([("a", [1, 25200, 85]), ("b", [1, 3])])
