"""The ``efficient-nms`` layout: TensorRT EfficientNMS's four outputs, slots counted by
``num_dets``; what lies beyond the count is never read as a detection."""

import numpy as np
import pytest

from generator.runtime import boxes
from generator.runtime.layouts import LayoutMismatch, OutputShape, get_layout


def _outputs(class_dtype=np.int64):
    """Three images, K = 4 slots: 2, 0 and 3 detections; stale values left beyond the count."""
    num = np.int32([[2], [0], [3]])
    det_boxes = np.zeros((3, 4, 4), np.float32)
    det_scores = np.zeros((3, 4), np.float32)
    det_classes = np.zeros((3, 4), class_dtype)
    det_boxes[0, :3] = [[10, 10, 20, 20], [11, 11, 21, 21], [0, 0, 1, 1]]
    det_scores[0, :3] = [0.875, 0.5, 0.95]  # slot 2 is stale: beyond num_dets, however high
    det_classes[0, :3] = [4, 4, 1]
    det_boxes[1, 0] = [5, 5, 6, 6]
    det_scores[1, 0] = 0.9  # stale too: num_dets is 0
    det_boxes[2, :3] = [[30, 40, 50, 60], [1, 2, 3, 4], [5, 6, 7, 8]]
    det_scores[2, :3] = [0.75, 0.625, 0.25]  # the third is counted but below the threshold
    det_classes[2, :3] = [0, 2, 3]
    return [num, det_boxes, det_scores, det_classes]


@pytest.mark.parametrize("class_dtype", [np.int32, np.int64])
def test_decode_reads_only_counted_slots_above_the_threshold(class_dtype):
    cand = get_layout("efficient-nms").decode(_outputs(class_dtype), 0.3, 100)
    assert cand.xyxy.shape == (3, 2, 4) and cand.xyxy.dtype == np.float32
    np.testing.assert_array_equal(cand.valid, [[True, True], [False, False], [True, True]])
    np.testing.assert_array_equal(cand.scores, [[0.875, 0.5], [0, 0], [0.75, 0.625]])
    np.testing.assert_array_equal(cand.classes[0], [4, 4])
    np.testing.assert_array_equal(cand.classes[2], [0, 2])
    np.testing.assert_array_equal(cand.xyxy[0], [[10, 10, 20, 20], [11, 11, 21, 21]])
    np.testing.assert_array_equal(cand.xyxy[2], [[30, 40, 50, 60], [1, 2, 3, 4]])


def test_postprocess_maps_back_without_nms():
    t = np.float32([[0.5, 0, 5, 100, 100], [1, 0, 0, 10, 10], [1, 0, 0, 100, 100]])
    num, b, s, c = boxes.postprocess(_outputs(), t, 0.3, 0.1, 3, layout="efficient-nms")
    assert num.tolist() == [2, 0, 2]  # the overlapping class-4 pair survives: the model did NMS
    np.testing.assert_array_equal(b[0, :2], [[20, 10, 40, 30], [22, 12, 42, 32]])
    np.testing.assert_array_equal(s, [[0.875, 0.5, 0], [0, 0, 0], [0.75, 0.625, 0]])
    assert c.tolist() == [[4, 4, -1], [-1, -1, -1], [0, 2, -1]]
    assert not b[1].any()


def test_max_detections_below_num_dets_keeps_the_best():
    num, _, s, c = boxes.postprocess(_outputs(), np.tile(np.float32([[1, 0, 0, 100, 100]]), (3, 1)), 0.0, 0.5, 1,
                                     layout="efficient-nms")
    assert num.tolist() == [1, 0, 1]
    assert s[:, 0].tolist() == [0.875, 0, 0.75] and c[:, 0].tolist() == [4, -1, 0]


def _specs(k=100, class_dtype="INT32"):
    return [("num_dets", [None, 1], "INT32"), ("det_boxes", [None, k, 4], "FP32"),
            ("det_scores", [None, k], "FP32"), ("det_classes", [None, k], class_dtype)]


def test_output_checks():
    layout = get_layout("efficient-nms")
    assert layout.check_outputs(_specs()) == OutputShape(None, 100)
    assert layout.check_outputs(_specs(class_dtype="INT64")) == OutputShape(None, 100)
    assert layout.check_outputs([(n, d) for n, d, _ in _specs()]) == OutputShape(None, 100)  # dtypes unknown
    with pytest.raises(LayoutMismatch, match=r"output 'det_classes' must be INT32 or INT64, got FP32"):
        layout.check_outputs(_specs(class_dtype="FP32"))
    specs = _specs()
    with pytest.raises(LayoutMismatch, match=r"output 'det_boxes' must be \[N, 1\], got \[None, 100, 4\]"):
        layout.check_outputs([specs[1], specs[0]] + specs[2:])  # boxes first: not this order
    specs[3] = ("det_classes", [None, 50], "INT32")
    with pytest.raises(LayoutMismatch, match=r"output 'det_classes' must be \[N, K\] with K = 100 as in "
                                             r"'det_boxes', got \[None, 50\]"):
        layout.check_outputs(specs)
    with pytest.raises(LayoutMismatch, match=r"expected four outputs num_dets .*found \['num_dets', 'det_boxes', "
                                             r"'det_scores'\]"):
        layout.check_outputs(_specs()[:3])
