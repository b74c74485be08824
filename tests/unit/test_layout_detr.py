"""The ``detr`` layout: normalized cx, cy, w, h per query scaled to the (non-square) network
input, best class per query, probabilities or logits, one output or boxes + scores apart."""

import numpy as np
import pytest

from generator.runtime import boxes
from generator.runtime.layouts import LayoutMismatch, OutputShape, get_layout

H, W = 384, 640


def _queries():
    """Two images, four queries, three classes (probabilities): 2 and 0 above 0.3."""
    b = np.zeros((2, 4, 4), np.float32)
    p = np.zeros((2, 4, 3), np.float32)
    b[0, 0], p[0, 0] = [0.5, 0.5, 0.25, 0.5], [0.125, 0.75, 0.25]  # class 1
    b[0, 1], p[0, 1] = [0.5, 0.5, 0.25, 0.5], [0.0, 0.5, 0.625]  # same box, other class: kept (no NMS)
    b[0, 2], p[0, 2] = [0.25, 0.75, 0.125, 0.25], [0.25, 0.25, 0.25]  # below
    b[1, :], p[1, :] = [0.5, 0.5, 0.5, 0.5], 0.125  # nothing above the threshold
    return b, p


def _layout(scores="probs"):
    return get_layout("detr", height=H, width=W, scores=scores)


def _check_probs_result(cand):
    assert cand.xyxy.shape == (2, 2, 4) and cand.xyxy.dtype == np.float32
    np.testing.assert_array_equal(cand.valid, [[True, True], [False, False]])
    np.testing.assert_array_equal(cand.scores[0], [0.75, 0.625])
    np.testing.assert_array_equal(cand.classes[0], [1, 2])
    # cx 320, cy 192, w 160, h 192 in pixels of the 640x384 input
    np.testing.assert_array_equal(cand.xyxy[0], [[240, 96, 400, 288]] * 2)


def test_one_output_probabilities():
    b, p = _queries()
    _check_probs_result(_layout().decode([np.concatenate([b, p], axis=2)], 0.3, 100))


@pytest.mark.parametrize("order", ["boxes first", "scores first"])
def test_two_outputs_in_either_order(order):
    b, p = _queries()
    outputs = [b, p] if order == "boxes first" else [p, b]
    _check_probs_result(_layout().decode(outputs, 0.3, 100))


def test_logits_go_through_the_sigmoid():
    b, p = _queries()
    with np.errstate(divide="ignore"):
        logits = np.log(p / (1 - p)).astype(np.float32)  # the inverse sigmoid; -inf where p is 0
    cand = _layout("logits").decode([b, logits], 0.3, 100)
    np.testing.assert_array_equal(cand.valid, [[True, True], [False, False]])
    np.testing.assert_allclose(cand.scores[0], [0.75, 0.625], rtol=1e-6)
    np.testing.assert_array_equal(cand.classes[0], [1, 2])
    np.testing.assert_array_equal(cand.xyxy[0], [[240, 96, 400, 288]] * 2)
    # read as probabilities, the same logits decode differently: log(3) > 1 is no probability
    assert _layout("probs").decode([b, logits], 0.3, 100).scores[0, 0] == np.float32(np.log(3))


def test_very_negative_logits_are_zero_without_warnings():
    b, _ = _queries()
    logits = np.full((2, 4, 3), -1000, np.float32)
    with np.errstate(all="raise"):
        cand = _layout("logits").decode([b, logits], 0.0, 100)
    assert cand.valid.shape == (2, 0)


def test_postprocess_has_no_nms_and_caps_at_max_detections():
    b, p = _queries()
    t = np.float32([[0.5, 0, 32, 1280, 704], [1, 0, 0, 640, 384]])
    num, bx, s, c = boxes.postprocess([b, p], t, 0.3, 0.5, 3, layout=_layout())
    assert num.tolist() == [2, 0]
    np.testing.assert_array_equal(bx[0, :2], [[480, 128, 800, 512]] * 2)  # x/0.5, (y-32)/0.5
    assert c.tolist() == [[1, 2, -1], [-1, -1, -1]]
    num, _, s, c = boxes.postprocess([b, p], t, 0.3, 0.5, 1, layout=_layout())
    assert num.tolist() == [1, 0] and s[0].tolist() == [0.75] and c[0].tolist() == [1]


def test_decode_needs_the_input_size():
    b, p = _queries()
    with pytest.raises(ValueError, match=r"layout detr needs the network input size .*height=0, width=0"):
        get_layout("detr").decode([b, p], 0.3, 100)


def test_output_checks():
    layout = get_layout("detr")  # shapes are checked without the input size
    assert layout.check_outputs([("output0", [None, 300, 84], "FP32")]) == OutputShape(80, 300)
    assert layout.check_outputs([("boxes", [1, 300, 4]), ("logits", [1, 300, 80])]) == OutputShape(80, 300)
    assert layout.check_outputs([("pred_logits", [1, 300, 80]), ("pred_boxes", [1, 300, 4])]) == OutputShape(80, 300)
    assert layout.check_outputs([("a", [1, 300, 4]), ("b", [1, 300, 4])]) == OutputShape(4, 300)
    assert layout.check_outputs([("boxes", [None, None, 4]), ("scores", [None, 300, 2])]) == OutputShape(2, 300)
    with pytest.raises(LayoutMismatch, match=r"output 'output0' must be \[N, Q, 4\+C\] with C >= 1, got \[1, 300, 4\]"):
        layout.check_outputs([("output0", [1, 300, 4])])
    with pytest.raises(LayoutMismatch, match=r"output 'scores' must be \[N, Q, C\] with Q = 300 as in 'boxes', "
                                             r"got \[1, 100, 80\]"):
        layout.check_outputs([("boxes", [1, 300, 4]), ("scores", [1, 100, 80])])
    with pytest.raises(LayoutMismatch, match=r"output 'a' must be \[N, Q, 4\], got \[1, 300, 80\]"):
        layout.check_outputs([("a", [1, 300, 80]), ("b", [1, 300, 80])])
    with pytest.raises(LayoutMismatch, match=r"output 'scores' must be FP32 or FP16, got INT64"):
        layout.check_outputs([("boxes", [1, 300, 4], "FP32"), ("scores", [1, 300, 80], "INT64")])
    with pytest.raises(LayoutMismatch, match=r"expected one output \[N, Q, 4\+C\] .* or two outputs"):
        layout.check_outputs([("a", [1, 1]), ("b", [1, 1]), ("c", [1, 1])])
