"""Objectness-scaled distillation: the terms, feature-map NMS, errors, and a short run."""

import pytest
import torch

from generator.compress.config import DistillConfig
from generator.compress.distill import KDWeights, ObjectnessScaledKD, feature_map_nms, run_distill
from generator.data.synth import synthesize
from generator.errors import UsageError
from generator.models.checkpoint import build_detector, load_checkpoint, save_checkpoint


def test_feature_map_nms_keeps_local_maxima_only():
    o = torch.zeros(1, 4, 4)
    o[0, 1, 1], o[0, 1, 2], o[0, 3, 3] = 0.9, 0.5, 0.4
    kept = feature_map_nms([o], 3).view(4, 4)
    assert kept[1, 1] == pytest.approx(0.9) and kept[1, 2] == 0 and kept[3, 3] == pytest.approx(0.4)


def test_kd_is_zero_ish_for_a_student_equal_to_its_teacher_and_positive_otherwise():
    teacher = build_detector("yolo-n", 3, 64, seed=0).model
    twin = build_detector("yolo-n", 3, 64, seed=0).model
    other = build_detector("mobilenetv3", 3, 64, seed=1).model
    x = torch.rand(2, 3, 64, 64)
    kd_twin = ObjectnessScaledKD(teacher, twin, 64, KDWeights(feat=0))
    kd_other = ObjectnessScaledKD(teacher, other, 64)
    with torch.no_grad():
        twin_raw = twin.eval().head.raw_maps(twin.neck(twin.lateral(twin.backbone(x))))
        same = kd_twin.prediction_terms(twin_raw, kd_twin.teacher_outputs(x)[0])
    other.train()
    loss = kd_other(other, x, other(x))
    # the objectness and class terms are cross-entropies: their floor is the teacher's entropy, not 0
    assert loss.item() > same.item() * 2 > 0
    loss.backward()
    assert all(a.weight.grad is not None for a in kd_other.adapters) and len(kd_other.adapters) == 3


def test_teacher_and_student_class_counts_must_match():
    with pytest.raises(UsageError, match="teacher has 3 classes but the student has 2"):
        ObjectnessScaledKD(build_detector("yolo-n", 3, 64).model, build_detector("yolo-n", 2, 64).model, 64)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("kd")
    data = synthesize(root / "data", 16, seed=2, imgsz=64, classes=2, progress=False)
    teacher = build_detector("yolo-n", 2, 64, ["circle", "rectangle"], seed=0)
    save_checkpoint(teacher, root / "teacher.pt")
    return root, data


def test_short_distillation_run_writes_a_reloadable_student(tiny, tmp_path):
    root, data = tiny
    unlabelled = root / "data" / "images" / "val"
    result = run_distill(DistillConfig(root / "teacher.pt", "mobilenetv3", str(data), tmp_path / "s.pt", epochs=1,
                                       imgsz=64, unlabelled=unlabelled), echo=lambda _: None, progress=False)
    student = load_checkpoint(tmp_path / "s.pt")
    assert student.family == "mobilenetv3" and student.names == ["circle", "rectangle"]
    assert torch.load(tmp_path / "s.pt", weights_only=True)["extra"]["distilled_from"].endswith("teacher.pt")
    assert result.history[0]["box"] >= 0


def test_distillation_refuses_a_teacher_of_other_classes(tiny, tmp_path):
    root, data = tiny
    save_checkpoint(build_detector("yolo-n", 3, 64, seed=0), tmp_path / "t3.pt")
    with pytest.raises(UsageError, match="t3.pt: teacher classes"):
        run_distill(DistillConfig(tmp_path / "t3.pt", "yolo-n", str(data), tmp_path / "s.pt", epochs=1), progress=False)
    assert not (tmp_path / "s.pt").exists()
