"""Result conversions (dicts, JSON, COCO results) and drawing with numpy alone."""

import json

import cv2
import numpy as np
import pytest

from client import Detection, InvalidImageError, draw, draw_array, to_coco, to_dicts, to_json
from client.draw import PALETTE, text_mask

DETS = [Detection(10, 20, 40, 60, 0.9, 0, "cat"), Detection(5.5, 6.5, 8.5, 10.5, 0.25, 2, "bird")]


def test_dicts_and_json():
    assert to_dicts(DETS)[1] == {"x1": 5.5, "y1": 6.5, "x2": 8.5, "y2": 10.5, "score": 0.25, "class_id": 2,
                                 "class_name": "bird"}
    assert json.loads(to_json(DETS)) == to_dicts(DETS)


def test_coco_results_default_ids():
    out = to_coco([DETS, [], DETS[:1]])
    assert out == [
        {"image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.9},
        {"image_id": 1, "category_id": 3, "bbox": [5.5, 6.5, 3.0, 4.0], "score": 0.25},
        {"image_id": 3, "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.9},
    ]
    json.dumps(out)  # plain types only


@pytest.mark.parametrize("mapping", [{0: 17, 2: 5}, lambda cid: {0: 17, 2: 5}[cid]])
def test_coco_results_with_a_category_mapping_and_image_ids(mapping):
    out = to_coco([DETS], image_ids=[42], category_ids=mapping)
    assert [(o["image_id"], o["category_id"]) for o in out] == [(42, 17), (42, 5)]


def test_coco_errors():
    with pytest.raises(KeyError, match="no entry for class 2 \\('bird'\\)"):
        to_coco([DETS], category_ids={0: 1})
    with pytest.raises(ValueError, match="1 image_ids for 2 images"):
        to_coco([DETS, DETS], image_ids=[1])


def test_draw_boxes_with_numpy_and_return_png():
    image = np.full((80, 100, 3), 50, np.uint8)
    png = draw(image, DETS[:1], labels=False, thickness=2)
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    color = PALETTE[0]
    for y, x in ((20, 25), (21, 25), (60, 25), (59, 25), (40, 10), (40, 11), (40, 40), (40, 39)):
        assert tuple(decoded[y, x]) == color, (y, x)
    assert tuple(decoded[40, 25]) == (50, 50, 50) and tuple(decoded[22, 25]) == (50, 50, 50)  # inside untouched
    assert tuple(decoded[5, 5]) == (50, 50, 50)
    assert (image == 50).all(), "the input is not modified"


def test_labels_are_drawn_above_the_box_in_white_on_the_class_colour():
    image = np.zeros((80, 100, 3), np.uint8)
    out = draw_array(image, DETS[:1], labels=True, scale=1)
    band = out[20 - 7:20, 10:60]  # 5 px glyphs + 1 px padding each side
    assert (band == PALETTE[0]).all(axis=2).any() and (band == 255).all(axis=2).any()
    mask = text_mask("CAT 0.90", 1)
    assert mask.shape == (5, 8 * 4 - 1) and mask.any()
    assert (out[:12] == 0).all(axis=2).any(), "text is only drawn near the box"


def test_boxes_outside_the_image_are_clipped_and_gray_images_accepted():
    gray = np.zeros((30, 30), np.uint8)
    out = draw_array(gray, [Detection(-10, -10, 100, 100, 0.5, 1, "dog")], labels=True)
    assert out.shape == (30, 30, 3) and tuple(out[15, 0]) == PALETTE[1]


def test_draw_refuses_what_it_cannot_draw_on():
    with pytest.raises(InvalidImageError, match="HxWx3 RGB"):
        draw(np.zeros((4, 4, 3), np.float32), DETS)


def test_draw_onto_encoded_png_bytes():
    pytest.importorskip("PIL")
    from client import encode_png

    image = np.full((80, 100, 3), 7, np.uint8)
    assert np.array_equal(draw_array(encode_png(image), DETS), draw_array(image, DETS))
