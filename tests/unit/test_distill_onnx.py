"""Distillation from a detector ONNX (any layout, run by ONNX Runtime): the teacher's
detections, the soft targets, the loss, and a short run through ``run_distill``."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
import layouts as L  # noqa: E402

from generator.compress.config import DistillConfig, KDWeights  # noqa: E402
from generator.compress.distill import run_distill  # noqa: E402
from generator.compress.distill_onnx import OnnxTeacherKD  # noqa: E402
from generator.compress.onnx_teacher import OnnxTeacher, letterbox_batch  # noqa: E402
from generator.errors import UsageError  # noqa: E402
from generator.models.checkpoint import build_detector, load_checkpoint  # noqa: E402
from generator.training.loss import DetectionLoss, split_raw, targets_by_image  # noqa: E402

S = 128


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    """An Ultralytics-style end-to-end ONNX [N, K, 6] with known detections."""
    out = tmp_path_factory.mktemp("teacher")
    return L.end_to_end_onnx(out / "e2e.onnx", imgsz=(S, S), meta=L.ultralytics_meta((S, S), end2end=True))


@pytest.fixture(scope="module")
def scenes():
    """Saturated squares: the teacher finds each one at its cell with a score of 0.995."""
    return L.random_scenes(4, S, S, seed=3, min_level=255)


def batch(scenes) -> torch.Tensor:
    return torch.from_numpy(np.stack([s.image() for s in scenes]).transpose(0, 3, 1, 2).astype(np.float32) / 255)


def labels(scenes) -> torch.Tensor:
    """``[M, 6]`` (image, class, x1, y1, x2, y2): the trainer's targets for the scenes."""
    rows = [[i, L.cell_score(rgb, "end-to-end")[1], *box] for i, s in enumerate(scenes)
            for (_, _, rgb), box in zip(s.cells, s.boxes())]
    return torch.tensor(rows, dtype=torch.float32)


def test_teacher_detections_are_the_known_ones(e2e, scenes):
    det = OnnxTeacher(e2e.path).detections(batch(scenes))
    for i, scene in enumerate(scenes):
        want = L.expected(scene, "end-to-end", 0.05)
        n = int(det.valid[i].sum())
        assert n == len(want.scores)
        np.testing.assert_allclose(det.boxes[i, :n].numpy(), want.boxes, atol=1e-3)
        np.testing.assert_allclose(det.scores[i, :n].numpy(), want.scores, atol=1e-4)
        assert det.classes[i, :n].tolist() == want.classes.tolist()


def test_a_wider_teacher_sees_the_batch_letterboxed_and_boxes_come_back(scenes):
    x = batch(scenes)
    wide, (scale, pad_x, pad_y) = letterbox_batch(x, 64, 128)
    assert wide.shape == (4, 3, 64, 128) and (scale, pad_x, pad_y) == (0.5, 32, 0)
    assert torch.allclose(wide[:, :, :, :32], torch.full_like(wide[:, :, :, :32], 114 / 255))
    assert letterbox_batch(x, S, S)[0] is x


def test_soft_targets_are_the_label_targets_scaled_by_the_teacher_score(e2e, scenes):
    """A teacher whose detections are the labels gives the labels' task-aligned class targets,
    each times the teacher's score."""
    student = build_detector("mobilenetv3", 3, S, list(L.NAMES), seed=0).model.train()
    kd = OnnxTeacherKD(OnnxTeacher(e2e.path), student)
    x = batch(scenes)
    raw = student(x)
    det = kd.teacher.detections(x)
    crit = DetectionLoss(student.head)
    _, logits = split_raw(raw, 3, student.head.reg_max)
    from generator.models.yolo import make_anchors
    from generator.training.boxes import dist_to_box
    from generator.training.loss import expected_dist

    dist, _ = split_raw(raw, 3, student.head.reg_max)
    points, stride = make_anchors(raw, student.head.strides)
    points, stride = points[0].T, stride[0].T
    pred_px = dist_to_box(expected_dist(dist, student.head.reg_max), points) * stride
    soft, _, fg = kd.soft_targets(logits, pred_px, points * stride, det)
    lab, boxes, mask = targets_by_image(labels(scenes), 4)
    _, want, want_fg = crit.assigner(logits.detach().sigmoid(), pred_px.detach(), points * stride, lab, boxes, mask)
    assert torch.equal(fg, want_fg) and fg.sum() > 20
    ratio = soft[fg].sum(-1) / want[fg].sum(-1)
    teacher_scores = det.scores[det.valid]  # 0.987 .. 0.996 here
    assert ratio.min() >= teacher_scores.min() - 1e-5 and ratio.max() <= teacher_scores.max() + 1e-5
    assert torch.equal(soft[fg].argmax(-1), want[fg].argmax(-1))


def test_kd_pulls_the_student_the_way_the_labels_do_and_decreases(e2e, scenes):
    torch.manual_seed(0)
    student = build_detector("mobilenetv3", 3, S, list(L.NAMES), seed=0).model.train()
    kd, crit = OnnxTeacherKD(OnnxTeacher(e2e.path), student), DetectionLoss(student.head)
    x, params = batch(scenes), [p for p in student.parameters() if p.requires_grad]

    def grad(loss):
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])

    g_labels = grad(crit(student(x), labels(scenes))[0])
    g_kd = grad(kd(student, x, student(x)))
    # measured 0.59 (a direction in 1.4M dimensions; the box terms differ: L1 here, DFL for labels)
    assert torch.nn.functional.cosine_similarity(g_labels, g_kd, dim=0) > 0.5
    opt = torch.optim.AdamW(student.parameters(), lr=0.002)
    losses = []
    for _ in range(8):
        loss = kd(student, x, student(x))
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def test_no_teacher_detections_is_a_finite_background_loss(e2e):
    student = build_detector("mobilenetv3", 3, S, list(L.NAMES), seed=0).model.train()
    kd = OnnxTeacherKD(OnnxTeacher(e2e.path), student)
    grey = torch.full((2, 3, S, S), 114 / 255)
    loss = kd(student, grey, student(grey))
    assert torch.isfinite(loss) and loss.item() > 0


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("kd_data")
    yaml = L.write_dataset(root, L.random_scenes(8, S, S, seed=5), split="val")
    text = yaml.read_text()
    (root / "images" / "train").symlink_to(root / "images" / "val")
    (root / "labels" / "train").symlink_to(root / "labels" / "val")
    yaml.write_text(text.replace("train: images/val", "train: images/train"))
    return yaml


def test_distill_from_an_onnx_teacher_writes_a_student(e2e, data, tmp_path):
    lines = []
    cfg = DistillConfig(e2e.path, "mobilenetv3", str(data), tmp_path / "s.pt", epochs=1, batch=4)
    run_distill(cfg, echo=lines.append, progress=False)
    student = load_checkpoint(tmp_path / "s.pt")
    assert student.family == "mobilenetv3" and student.imgsz == S and student.names == list(L.NAMES)
    extra = torch.load(tmp_path / "s.pt", weights_only=True)["extra"]
    assert extra["teacher_layout"] == "end-to-end" and extra["kd_weights"]["feat"] == 0.0
    assert any("--kd-feat set to 0" in line for line in lines)
    assert any("layout end-to-end, input 128x128" in line for line in lines)


def test_onnx_teacher_refusals(e2e, data, tmp_path):
    trt = L.efficient_nms_trt_onnx(tmp_path / "trt.onnx")
    with pytest.raises(UsageError, match="EfficientNMS_TRT node, which only TensorRT runs"):
        run_distill(DistillConfig(trt.path, "yolo-n", str(data), tmp_path / "s.pt", epochs=1), progress=False)
    with pytest.raises(UsageError, match=r"128x128.*--imgsz 256,256 does not match"):
        run_distill(DistillConfig(e2e.path, "yolo-n", str(data), tmp_path / "s.pt", epochs=1, imgsz=256),
                    progress=False)
    with pytest.raises(UsageError, match="apply to an ONNX teacher only"):
        run_distill(DistillConfig(tmp_path / "t.pt", "yolo-n", str(data), tmp_path / "s.pt", layout="detr"),
                    progress=False)
    assert not (tmp_path / "s.pt").exists()


def test_kd_weights_unchanged_for_a_pytorch_teacher():
    assert KDWeights().feat == 1.0  # the default stays: feature imitation with a PyTorch teacher
