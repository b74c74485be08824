"""YOLO and COCO readers: correct boxes, and a clear error (file + line) for each kind of bad input."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from generator.data.dataset import DetectionData, Sample, load_coco, load_dataset, load_yolo, to_coco_json
from generator.data.imagesize import image_size
from generator.errors import UsageError

W, H = 40, 30


def write_image(path: Path, width: int = W, height: int = H) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


def make_yolo(root: Path, labels: dict, yaml_text: str = None, split: str = "train") -> Path:
    """``labels``: image stem -> label text (None = no label file)."""
    for stem, text in labels.items():
        write_image(root / "images" / split / f"{stem}.jpg")
        if text is not None:
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"{stem}.txt").write_text(text)
    data = root / "data.yaml"
    data.write_text(yaml_text or "path: .\ntrain: images/train\nval: images/train\nnames: [a, b, c]\n")
    return data


# ------------------------------------------------------------------ YOLO, valid input

def test_yolo_boxes_in_pixels_and_missing_label_is_empty(tmp_path):
    data = make_yolo(tmp_path, {"img0": "1 0.5 0.5 0.5 0.2\n\n2 0.25 0.5 0.5 1.0\n", "img1": None, "img2": ""})
    d = load_yolo(data, "train")
    assert d.names == ["a", "b", "c"] and d.source.startswith("yolo:")
    assert [s.image_path.name for s in d.samples] == ["img0.jpg", "img1.jpg", "img2.jpg"]
    s0, s1, s2 = d.samples
    assert (s0.width, s0.height) == (W, H)
    np.testing.assert_allclose(s0.boxes, [[10, 12, 30, 18], [0, 0, 20, 30]], atol=1e-4)
    assert s0.boxes.dtype == np.float32 and s0.classes.dtype == np.int64
    assert s0.classes.tolist() == [1, 2]
    assert s1.boxes.shape == (0, 4) and s1.classes.shape == (0,)
    assert s2.boxes.shape == (0, 4)


def test_yolo_folder_names_mapping_and_txt_list(tmp_path):
    make_yolo(tmp_path, {"img0": "0 0.5 0.5 0.5 0.5", "img1": "1 0.5 0.5 0.5 0.5"})
    (tmp_path / "val.txt").write_text("./images/train/img1.jpg\n\n")
    (tmp_path / "data.yaml").write_text("train: images/train\nval: val.txt\nnc: 2\nnames: {1: dog, 0: cat}\n")
    d = load_yolo(tmp_path, "val")  # a folder holding data.yaml
    assert d.names == ["cat", "dog"]
    assert [s.image_path.name for s in d.samples] == ["img1.jpg"]
    assert d.samples[0].classes.tolist() == [1]


def test_yolo_byte_order_marks_and_duplicate_lines_as_ultralytics(tmp_path):
    """Ultralytics reads labels and image lists as utf-8-sig and drops exact duplicate label rows."""
    make_yolo(tmp_path, {"img0": None, "img1": ""})
    (tmp_path / "labels/train").mkdir(parents=True, exist_ok=True)
    (tmp_path / "labels/train/img0.txt").write_bytes(
        "\ufeff1 0.5 0.5 0.5 0.2\n0 0.25 0.5 0.5 1.0\n1 0.50 0.5 0.5 0.2\n".encode("utf-8"))
    (tmp_path / "list.txt").write_bytes("\ufeff./images/train/img0.jpg\n./images/train/img1.jpg\n".encode("utf-8"))
    (tmp_path / "data.yaml").write_text("train: list.txt\nnames: [a, b]\n")
    s0, s1 = load_yolo(tmp_path, "train").samples
    assert s0.classes.tolist() == [1, 0]
    np.testing.assert_allclose(s0.boxes, [[10, 12, 30, 18], [0, 0, 20, 30]], atol=1e-4)
    assert s1.image_path.name == "img1.jpg" and s1.classes.shape == (0,)


def test_yolo_small_overshoot_is_clipped(tmp_path):
    data = make_yolo(tmp_path, {"img0": "0 0.9 0.5 0.2009 0.2\n"})
    b = load_yolo(data, "train").samples[0].boxes
    assert b[0, 2] == pytest.approx(W)


# ------------------------------------------------------------------ YOLO, errors

@pytest.mark.parametrize("text, message", [
    ("0 0.5 0.5 0.2\n", "labels/train/img0.txt:1: expected 5 fields 'class cx cy w h', got 4"),
    ("0 0.5 0.5 0.2 0.2\n0 0.5 x 0.2 0.2\n", "labels/train/img0.txt:2: non-numeric field 'x'"),
    ("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n", "labels/train/img0.txt:2: class id 7 >= nc 3"),
    ("-1 0.5 0.5 0.2 0.2\n", "labels/train/img0.txt:1: class id -1 < 0"),
    ("1.5 0.5 0.5 0.2 0.2\n", "labels/train/img0.txt:1: class id 1.5 is not an integer"),
    ("\n\n0 0.95 0.5 0.2 0.2\n", "labels/train/img0.txt:3: box outside the image"),
    ("0 0.5 -0.1 0.2 0.2\n", "labels/train/img0.txt:1: box outside the image"),
    ("0 0.5 0.5 0 0.2\n", "labels/train/img0.txt:1: box has zero or negative size"),
    ("0 0.5 0.5 0.2 -0.1\n", "labels/train/img0.txt:1: box has zero or negative size"),
    ("0 0.5 0.5 nan 0.2\n", "labels/train/img0.txt:1: non-finite value"),
])
def test_yolo_bad_label_lines(tmp_path, text, message):
    data = make_yolo(tmp_path, {"img0": text})
    with pytest.raises(UsageError) as err:
        load_yolo(data, "train")
    assert message in str(err.value)


def test_yolo_unreadable_label_file(tmp_path):
    data = make_yolo(tmp_path, {"img0": None})
    (tmp_path / "labels/train").mkdir(parents=True)
    (tmp_path / "labels/train/img0.txt").write_bytes(b"0 0.5 \xff\xfe 0.2 0.2\n")
    with pytest.raises(UsageError, match=r"labels/train/img0.txt: cannot read label file"):
        load_yolo(data, "train")


@pytest.mark.parametrize("yaml_text, split, message", [
    ("path: .\ntrain: images/train\nval: images/missing\nnames: [a]\n", "val",
     "val: images/missing does not exist"),
    ("path: .\ntrain: images/train\nnames: [a]\n", "val", "no 'val' entry"),
    ("path: .\ntrain: images/empty\nnames: [a]\n", "train", "no images found under"),
    ("path: nowhere\ntrain: images/train\nnames: [a]\n", "train", "path 'nowhere' is not a folder"),
    ("path: .\ntrain: images/train\nnc: 4\nnames: [a, b, c]\n", "train", "nc is 4 but names has 3 entries"),
    ("path: .\ntrain: images/train\nnames: {0: a, 2: c}\n", "train", "without gaps"),
    ("path: .\ntrain: images/train\n", "train", "needs 'names'"),
    ("path: .\ntrain: images/train\nnames: []\n", "train", "names is empty"),
    ("path: .\ntrain: [images/train\nval: x\n", "train", "data.yaml:3: malformed YAML"),
    ("- a\n- b\n", "train", "data.yaml: expected a mapping"),
])
def test_yolo_bad_data_yaml(tmp_path, yaml_text, split, message):
    (tmp_path / "images/empty").mkdir(parents=True)
    data = make_yolo(tmp_path, {"img0": "0 0.5 0.5 0.2 0.2"}, yaml_text)
    with pytest.raises(UsageError) as err:
        load_yolo(data, split)
    assert message in str(err.value)


def test_yolo_missing_yaml_and_bad_image_list(tmp_path):
    with pytest.raises(UsageError, match="data YAML not found"):
        load_yolo(tmp_path / "nope.yaml", "train")
    with pytest.raises(UsageError, match="folder has no data.yaml"):
        load_yolo(tmp_path, "train")
    make_yolo(tmp_path, {"img0": ""}, "train: list.txt\nnames: [a]\n")
    (tmp_path / "list.txt").write_text("images/train/img0.jpg\nimages/train/gone.jpg\n")
    with pytest.raises(UsageError, match=r"list.txt:2: image not found: images/train/gone.jpg"):
        load_yolo(tmp_path, "train")


def test_yolo_corrupt_image_is_named(tmp_path):
    data = make_yolo(tmp_path, {"img0": ""})
    (tmp_path / "images/train/img0.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(UsageError, match=r"images/train/img0.jpg: not a readable image"):
        load_yolo(data, "train")


# ------------------------------------------------------------------ image headers

@pytest.mark.parametrize("name, params", [
    ("a.jpg", []), ("b.png", []), ("c.jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), ("d.bmp", []),
])
def test_image_size_matches_decoding(tmp_path, name, params):
    img = np.zeros((37, 53, 3), np.uint8)
    path = tmp_path / name
    assert cv2.imwrite(str(path), img, params)
    assert image_size(path) == (53, 37)


# ------------------------------------------------------------------ COCO

def coco_doc():
    return {
        "images": [{"id": 3, "file_name": "b.jpg", "width": W, "height": H},
                   {"id": 1, "file_name": "sub/a.png"}],  # no size: read from the header
        "categories": [{"id": 5, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 3, "name": "cat"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 5, "bbox": [1, 2, 10, 5], "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [0, 0, 40, 30], "iscrowd": 1},  # crowd: skipped
            {"id": 12, "image_id": 3, "category_id": 3, "bbox": [30, 20, 20, 20]},  # clipped to 40x30
            {"id": 13, "image_id": 3, "category_id": 1, "bbox": [5, 5, 0, 4]},  # empty: skipped
        ],
    }


def write_coco(tmp_path: Path, doc: dict) -> Path:
    write_image(tmp_path / "images/b.jpg")
    write_image(tmp_path / "images/sub/a.png", 20, 10)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


def test_coco_reader(tmp_path):
    d = load_coco(write_coco(tmp_path, coco_doc()), tmp_path / "images")
    assert d.names == ["person", "cat", "dog"]  # sorted category ids 1, 3, 5
    a, b = d.samples  # sorted by image id
    assert a.image_path.name == "a.png" and (a.width, a.height) == (20, 10)
    assert a.classes.tolist() == [2] and a.boxes.tolist() == [[1, 2, 11, 7]]
    assert b.classes.tolist() == [1] and b.boxes.tolist() == [[30, 20, 40, 30]]
    assert load_dataset(tmp_path / "instances.json", "val").names == d.names  # images/ found beside the JSON


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["annotations"][0].update(category_id=99), "annotation id 10: unknown category_id 99"),
    (lambda d: d["annotations"][0].update(image_id=42), "annotation id 10: unknown image_id 42"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "annotation id 10: bbox must be 4 finite numbers"),
    (lambda d: d["images"][0].update(file_name="gone.jpg"), "image id 3: gone.jpg not found under"),
    (lambda d: d["images"].append({"id": 3, "file_name": "b.jpg"}), "duplicate image id 3"),
    (lambda d: d["categories"].append({"id": 5, "name": "x"}), "duplicate category id 5"),
    (lambda d: d.pop("categories"), "not a COCO detection file"),
])
def test_coco_errors(tmp_path, edit, message):
    doc = coco_doc()
    edit(doc)
    path = write_coco(tmp_path, doc)
    with pytest.raises(UsageError) as err:
        load_coco(path, tmp_path / "images")
    assert message in str(err.value) and "instances.json" in str(err.value)


def test_coco_malformed_json_and_missing_folder(tmp_path):
    path = write_coco(tmp_path, coco_doc())
    path.write_text('{\n "images": [\n  {"id": 1,,}\n ]\n}')
    with pytest.raises(UsageError, match=r"instances.json:3: malformed JSON"):
        load_coco(path, tmp_path / "images")
    path.write_text(json.dumps(coco_doc()))
    with pytest.raises(UsageError, match="images folder does not exist"):
        load_coco(path, tmp_path / "nope")


def test_load_dataset_dispatch(tmp_path):
    make_yolo(tmp_path, {"img0": "0 0.5 0.5 0.2 0.2"})
    assert load_dataset(tmp_path, "train").source.startswith("yolo:")
    assert load_dataset(tmp_path / "data.yaml", "train").samples[0].classes.tolist() == [0]
    with pytest.raises(UsageError, match="dataset not found"):
        load_dataset(tmp_path / "missing.txt", "train")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match="unknown dataset format"):
        load_dataset(tmp_path / "notes.txt", "train")


# ------------------------------------------------------------------ COCO ground truth out

def small_data() -> DetectionData:
    return DetectionData(["a", "b"], [
        Sample(Path("/x/1.jpg"), np.array([[1, 2, 11, 22], [0, 0, 5, 5]], np.float32), np.array([1, 0]), 40, 30),
        Sample(Path("/x/2.jpg"), width=20, height=10),
    ], "test")


def test_to_coco_json_structure():
    gt = to_coco_json(small_data())
    assert gt["categories"] == [{"id": 1, "name": "a", "supercategory": ""}, {"id": 2, "name": "b", "supercategory": ""}]
    assert gt["images"] == [{"id": 1, "file_name": "/x/1.jpg", "width": 40, "height": 30},
                            {"id": 2, "file_name": "/x/2.jpg", "width": 20, "height": 10}]
    assert gt["annotations"] == [
        {"id": 1, "image_id": 1, "category_id": 2, "bbox": [1.0, 2.0, 10.0, 20.0], "area": 200.0, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 5.0, 5.0], "area": 25.0, "iscrowd": 0},
    ]
    json.dumps(gt)  # plain JSON types only


def test_to_coco_json_round_trips_through_the_reader(tmp_path):
    d = DetectionData(["a", "b"], [Sample(write_image(tmp_path / "1.jpg"), np.array([[1, 2, 11, 22]], np.float32),
                                          np.array([1]), W, H)])
    path = tmp_path / "gt.json"
    gt = to_coco_json(d)
    for img in gt["images"]:
        img["file_name"] = Path(img["file_name"]).name
    path.write_text(json.dumps(gt))
    back = load_coco(path, tmp_path)
    assert back.names == ["a", "b"]
    np.testing.assert_array_equal(back.samples[0].boxes, d.samples[0].boxes)
    assert back.samples[0].classes.tolist() == [1]


def test_to_coco_json_scores_perfectly_against_itself():
    pytest.importorskip("pycocotools")
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_dict = to_coco_json(small_data())
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
               for a in gt_dict["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)
