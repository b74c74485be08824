"""The synthetic shapes dataset: deterministic, YOLO files that match what was drawn, atomic writes."""

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import yaml

from generator.data import synth
from generator.data.dataset import load_yolo
from generator.data.shapes import CLASS_NAMES
from generator.errors import UsageError

SEED, IMAGES, IMGSZ, CLASSES = 7, 16, 128, 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return synth.synthesize(tmp_path_factory.mktemp("synth") / "shapes", IMAGES, SEED, IMGSZ, CLASSES,
                            progress=False)


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _both_splits(data_yaml: Path):
    return load_yolo(data_yaml, "train").samples + load_yolo(data_yaml, "val").samples


def test_same_seed_gives_identical_bytes_and_other_seed_differs(dataset, tmp_path):
    again = synth.synthesize(tmp_path / "again", IMAGES, SEED, IMGSZ, CLASSES, progress=False)
    other = synth.synthesize(tmp_path / "other", IMAGES, SEED + 1, IMGSZ, CLASSES, progress=False)
    reference = _files(dataset.parent)
    assert len(reference) == 2 * IMAGES + 1
    assert _files(again.parent) == reference
    other_files = _files(other.parent)
    changed = [k for k in reference if k.endswith(".jpg") and other_files.get(k) != reference[k]]
    assert len(changed) == IMAGES


def test_data_yaml_and_split_sizes(dataset):
    cfg = yaml.safe_load(dataset.read_text())
    # no "path" key: Ultralytics resolves a relative one against its working/datasets folder, not the YAML's
    assert cfg == {"train": "images/train", "val": "images/val", "nc": CLASSES, "names": CLASS_NAMES[:CLASSES]}
    root = dataset.parent
    train, val = sorted((root / "images/train").glob("*.jpg")), sorted((root / "images/val").glob("*.jpg"))
    assert (len(train), len(val)) == (IMAGES - 3, 3)  # round(16 * 0.2)
    assert {p.stem for p in train}.isdisjoint(p.stem for p in val)
    assert len(list((root / "labels/train").glob("*.txt"))) == len(train)
    assert len(list((root / "labels/val").glob("*.txt"))) == len(val)


def test_labels_round_trip_to_what_was_drawn(dataset):
    for sample in _both_splits(dataset):
        drawn = synth.render_sample(SEED, int(sample.image_path.stem), IMGSZ, CLASSES)
        assert (sample.height, sample.width) == drawn.image.shape[:2]
        np.testing.assert_array_equal(sample.classes, drawn.classes)
        np.testing.assert_allclose(sample.boxes, drawn.boxes, atol=1.0)


def test_label_lines_are_normalized_with_six_decimals(dataset):
    text = next(p for p in sorted((dataset.parent / "labels/train").glob("*.txt")) if p.stat().st_size).read_text()
    cls, *coords = text.splitlines()[0].split()
    assert int(cls) in range(CLASSES)
    assert all(len(c.split(".")[1]) == 6 and 0 <= float(c) <= 1 for c in coords)


def test_boxes_inside_images_all_classes_used_and_variety(dataset):
    samples = _both_splits(dataset)
    counts, overlaps, aspects = [], 0, set()
    for s in samples:
        b = s.boxes
        assert max(s.width, s.height) == IMGSZ
        assert 0.74 <= s.width / s.height <= 1.34
        aspects.add((s.width, s.height))
        assert ((b >= 0) & (b <= [s.width, s.height, s.width, s.height])).all()
        assert ((b[:, 2:] - b[:, :2]) >= 2).all()
        counts.append(len(b))
        overlaps += sum(1 for p, q in combinations(b, 2)
                        if min(p[2], q[2]) > max(p[0], q[0]) and min(p[3], q[3]) > max(p[1], q[1]))
    assert set(np.concatenate([s.classes for s in samples]).tolist()) == set(range(CLASSES))
    assert max(counts) <= synth.MAX_OBJECTS and max(counts) >= 4
    assert overlaps > 0
    assert len(aspects) > 3
    sides = np.concatenate([(s.boxes[:, 2:] - s.boxes[:, :2]).max(1) / min(s.width, s.height) for s in samples])
    assert sides.min() < 0.15 and sides.max() > 0.3


def test_mostly_hidden_shapes_lose_their_label_and_boxes_are_tight():
    owner = np.full((20, 20), -1, np.int16)
    owner[2:12, 3:13] = 0  # shape 0: 100 px drawn
    obj = synth._Placed(0, 1, (0, 0, 20, 20), 100)
    assert synth._visible_box(owner, obj) == (3, 2, 13, 12)
    owner[2:12, 3:9] = 1  # 60 px hidden by a later shape: 40% left, still labelled
    assert synth._visible_box(owner, obj) == (9, 2, 13, 12)
    owner[2:12, 9] = 1  # 70 % hidden: dropped
    assert synth._visible_box(owner, obj) is None


def test_refuses_non_empty_folder_unless_forced(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(UsageError, match="ds exists and is not empty"):
        synth.synthesize(out, 4, 0, 64, progress=False)
    assert (out / "keep.txt").exists()
    data_yaml = synth.synthesize(out, 4, 0, 64, progress=False, force=True)
    assert data_yaml == out.absolute() / "data.yaml" and data_yaml.is_file()
    assert not (out / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary folders left


def test_empty_existing_folder_is_fine(tmp_path):
    (tmp_path / "ds").mkdir()
    assert synth.synthesize(tmp_path / "ds", 3, 0, 64, progress=False).is_file()


def test_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def failing(rng, imgsz, classes):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return synth.render_image(rng, imgsz, classes)

    monkeypatch.setattr(synth, "render_image", failing)
    with pytest.raises(RuntimeError, match="boom"):
        synth.synthesize(tmp_path / "ds", 6, 0, 64, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"classes": 0}, "--classes must be between 1 and 10"),
    ({"classes": len(CLASS_NAMES) + 1}, "--classes must be between 1 and 10"),
    ({"images": 1}, "--images must be an integer >= 2"),
    ({"imgsz": 16}, "--imgsz must be an integer >= 32"),
    ({"val_fraction": 1.0}, "--val-fraction"),
])
def test_bad_arguments_are_refused(tmp_path, kwargs, message):
    args = {"images": 4, "seed": 0, "imgsz": 64, "classes": 3, **kwargs}
    with pytest.raises(UsageError, match=message):
        synth.synthesize(tmp_path / "ds", progress=False, **args)
    assert not (tmp_path / "ds").exists()


def test_every_class_can_be_rendered():
    seen = set()
    for i in range(40):
        seen.update(synth.render_sample(1, i, 96, len(CLASS_NAMES)).classes.tolist())
    assert seen == set(range(len(CLASS_NAMES)))
