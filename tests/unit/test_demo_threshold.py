"""The demo's served score threshold: best F1 at IoU 0.5 on the validation split."""

import numpy as np
import pytest

from generator.demo_threshold import best_f1_threshold, match_image


def test_matching_is_greedy_by_score_one_ground_truth_box_each_same_class():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=np.float32)
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.9, 0.95, 0.5, 0.4])
    matches = match_image(boxes, scores, np.array([0, 0, 1, 0]), gt, np.array([0, 0]))
    # 0.95 takes the first box; 0.9 finds it taken; class 1 matches no class-0 box; 0.4 overlaps nothing
    assert matches == [(0.95, True), (0.9, False), (0.5, False), (0.4, False)]


def test_best_f1_threshold_balances_precision_and_recall():
    matches = [(0.9, True), (0.8, True), (0.3, False), (0.2, True), (0.1, False)]
    choice = best_f1_threshold(matches, positives=4)
    # at 0.8: P 1, R 0.5, F1 0.667; at 0.2: P 0.75, R 0.75, F1 0.75
    assert choice.threshold == 0.2 and choice.f1 == pytest.approx(0.75)
    assert best_f1_threshold([], positives=3).threshold == 1.0  # nothing found: keep the default
