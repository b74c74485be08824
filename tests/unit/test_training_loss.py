"""Assignment and losses on small hand-made cases; a tiny model overfits one batch."""

import math

import pytest
import torch

from generator.models.checkpoint import build_detector
from generator.training.assigner import TaskAlignedAssigner
from generator.training.boxes import box_iou_pairs, box_to_dist, ciou, dist_to_box
from generator.training.loss import DetectionLoss, targets_by_image
from generator.training.trainer import lr_at


def test_ciou_is_one_for_identical_boxes_and_penalises_offsets():
    a = torch.tensor([[10.0, 10, 50, 30]])
    assert ciou(a, a).item() == pytest.approx(1.0, abs=1e-5)
    shifted = a + torch.tensor([[5.0, 0, 5, 0]])
    iou = box_iou_pairs(a, shifted).item()
    assert ciou(a, shifted).item() < iou < 1.0  # centre-distance penalty


def test_dfl_encoding_round_trip():
    points = torch.tensor([[4.5, 4.5], [10.5, 2.5]])
    boxes = torch.tensor([[1.0, 2.0, 9.0, 7.5], [8.0, 0.0, 13.0, 6.0]])
    np_dist = box_to_dist(points, boxes, reg_max=16)
    assert torch.allclose(dist_to_box(np_dist, points), boxes, atol=1e-5)


def test_assigner_picks_anchors_inside_the_box_with_its_class():
    points = torch.stack(torch.meshgrid(torch.arange(8) + 0.5, torch.arange(8) + 0.5, indexing="xy"), -1).view(-1, 2) * 8
    a = points.shape[0]
    gt = torch.tensor([[[8.0, 8.0, 40.0, 40.0]]])
    pd_boxes = gt.expand(1, a, 4).clone()  # every prediction is the GT box: IoU 1
    pd_scores = torch.full((1, a, 3), 0.5)
    t_boxes, t_scores, fg = TaskAlignedAssigner(topk=4)(pd_scores, pd_boxes, points, torch.tensor([[2]]), gt,
                                                        torch.tensor([[True]]))
    assert fg.sum() == 4
    inside = ((points > 8) & (points < 40)).all(-1)
    assert inside[fg[0]].all()
    assert (t_scores[0, fg[0], 2] > 0).all() and (t_scores[0, fg[0], :2] == 0).all()
    assert torch.allclose(t_boxes[0, fg[0]], gt[0].expand(4, 4))


def test_targets_by_image_pads_per_image():
    targets = torch.tensor([[0, 1, 0, 0, 5, 5], [2, 0, 1, 1, 4, 4], [2, 2, 3, 3, 9, 9.0]])
    labels, boxes, mask = targets_by_image(targets, 3)
    assert mask.tolist() == [[True, False], [False, False], [True, True]]
    assert labels[2].tolist() == [0, 2] and boxes[0, 0].tolist() == [0, 0, 5, 5]


def test_lr_schedule_warms_up_then_decays():
    lrs = [lr_at(s, 100, 10, 1.0, 0.05) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(x >= y for x, y in zip(lrs[10:], lrs[11:])) and lrs[-1] == pytest.approx(0.05, abs=1e-3)


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    det = build_detector("yolo-n", 2, 64, seed=0)
    model = det.model.train()
    criterion = DetectionLoss(model.head)
    images = torch.rand(2, 3, 64, 64)
    targets = torch.tensor([[0, 0, 8, 8, 40, 30], [0, 1, 30, 20, 60, 60], [1, 1, 4, 10, 50, 50.0]])
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    losses = []
    for _ in range(40):
        loss, parts = criterion(model(images), targets)
        assert torch.isfinite(loss) and parts.shape == (3,)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert not math.isnan(losses[-1])


def test_loss_without_targets_is_classification_only():
    det = build_detector("yolo-n", 2, 64, seed=0)
    criterion = DetectionLoss(det.model.head)
    loss, parts = criterion(det.model.train()(torch.rand(1, 3, 64, 64)), torch.zeros(0, 6))
    assert loss.item() > 0 and parts[0] == 0 and parts[2] == 0
