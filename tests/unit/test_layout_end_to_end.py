"""The ``end-to-end`` layout ([N, K, 6]: x1, y1, x2, y2, score, class as a float): no NMS,
threshold and keep the best, for a whole batch of images with different counts."""

import numpy as np
import pytest

from generator.runtime import boxes
from generator.runtime.layouts import LayoutMismatch, OutputShape, get_layout


def _rows():
    """Three images, five rows each (zero padding at the end, as exporters write it)."""
    raw = np.zeros((3, 5, 6), np.float32)
    raw[0, 0] = [10, 20, 30, 40, 0.5, 2.0]
    raw[0, 1] = [12, 22, 32, 42, 0.875, 2.0]  # overlaps row 0, same class: both stay (no NMS)
    raw[0, 2] = [0, 0, 5, 5, 0.75, 7.0]
    raw[0, 3] = [1, 1, 2, 2, 0.125, 1.0]  # below the threshold
    raw[1, 0] = [50, 60, 70, 80, 0.625, 0.0]
    raw[2, 0] = [1, 1, 9, 9, 0.25, 3.0]  # the only row, below the threshold
    return raw


def test_decode_sorts_thresholds_and_reads_the_float_class():
    cand = get_layout("end-to-end").decode([_rows()], 0.3, 100)
    assert cand.xyxy.shape == (3, 3, 4) and cand.xyxy.dtype == np.float32
    np.testing.assert_array_equal(cand.valid, [[True] * 3, [True, False, False], [False] * 3])
    np.testing.assert_array_equal(cand.scores[0], [0.875, 0.75, 0.5])
    np.testing.assert_array_equal(cand.classes[0], [2, 7, 2])
    assert cand.classes.dtype.kind == "i"
    np.testing.assert_array_equal(cand.xyxy[0], [[12, 22, 32, 42], [0, 0, 5, 5], [10, 20, 30, 40]])
    np.testing.assert_array_equal(cand.xyxy[1, 0], [50, 60, 70, 80])
    assert cand.scores[1, 0] == 0.625 and cand.classes[1, 0] == 0


def test_postprocess_keeps_overlaps_and_pads_when_k_is_below_max_detections():
    t = np.float32([[2, 10, 0, 100, 100], [1, 0, 0, 100, 100], [1, 0, 0, 100, 100]])
    num, b, s, c = boxes.postprocess(_rows(), t, 0.3, 0.1, 8, layout="end-to-end")  # iou 0.1: NMS would cut
    assert num.tolist() == [3, 1, 0]
    assert b.shape == (3, 8, 4) and s.shape == (3, 8) and c.shape == (3, 8)
    np.testing.assert_array_equal(b[0, :3], [[1, 11, 11, 21], [0, 0, 0, 2.5], [0, 10, 10, 20]])  # (x-10)/2, y/2
    np.testing.assert_array_equal(s[0], [0.875, 0.75, 0.5, 0, 0, 0, 0, 0])
    assert c.tolist() == [[2, 7, 2] + [-1] * 5, [0] + [-1] * 7, [-1] * 8]


def test_max_detections_keeps_the_best():
    num, _, s, c = boxes.postprocess(_rows(), np.tile(np.float32([[1, 0, 0, 100, 100]]), (3, 1)), 0.3, 0.5, 2,
                                     layout="end-to-end")
    assert num.tolist() == [2, 1, 0]
    np.testing.assert_array_equal(s[0], [0.875, 0.75])
    assert c[0].tolist() == [2, 7]


def test_zero_padding_never_counts_even_at_threshold_zero():
    cand = get_layout("end-to-end").decode([_rows()], 0.0, 100)
    assert cand.valid.sum(axis=1).tolist() == [4, 1, 1]


def test_output_checks():
    layout = get_layout("end-to-end")
    assert layout.check_outputs([("output0", [1, 300, 6], "FP32")]) == OutputShape(None, 300)
    assert layout.check_outputs([("output0", [None, None, 6])]) == OutputShape(None, None)
    for dims in ([1, 300, 7], [1, 300, None], [300, 6]):
        with pytest.raises(LayoutMismatch, match=r"output 'output0' must be \[N, K, 6\], got \["):
            layout.check_outputs([("output0", dims)])
    with pytest.raises(LayoutMismatch, match=r"output 'output0' must be FP32 or FP16, got INT64"):
        layout.check_outputs([("output0", [1, 300, 6], "INT64")])
    with pytest.raises(LayoutMismatch, match=r"expected one output \[N, K, 6\] .*found \['boxes', 'scores'\]"):
        layout.check_outputs([("boxes", [1, 300, 4]), ("scores", [1, 300])])
