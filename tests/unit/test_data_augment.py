"""Augmentations move boxes exactly with the pixels; the training letterbox is the serving one."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generator.data import augment
from generator.runtime import boxes as runtime_boxes
from generator.runtime import imaging

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def scene(h=120, w=160, box=(30, 20, 90, 70), color=RED):
    """A dark image with one filled rectangle; its box in pixel-edge coordinates."""
    img = np.full((h, w, 3), 40, np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = color
    return img, np.array([box], np.float32), np.array([3], np.int64)


def pixel_box(img, color):
    """Tight xyxy box of the pixels that are (mostly) ``color``."""
    close = (np.abs(img.astype(int) - np.array(color)) < 100).all(axis=2)
    ys, xs = np.nonzero(close)
    assert len(xs), "colour not found"
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def test_hflip_moves_box_with_pixels_and_twice_is_identity():
    img, b, c = scene()
    fimg, fb, fc = augment.hflip(img, b, c)
    np.testing.assert_array_equal(fb[0], pixel_box(fimg, RED))
    np.testing.assert_array_equal(fb[0], [70, 20, 130, 70])
    img2, b2, c2 = augment.hflip(fimg, fb, fc)
    np.testing.assert_array_equal(img2, img)
    np.testing.assert_array_equal(b2, b)
    np.testing.assert_array_equal(c2, c)


def test_random_hflip_probability():
    img, b, c = scene()
    rng = np.random.default_rng(0)
    flips = sum(not np.array_equal(augment.random_hflip(img, b, c, rng)[1], b) for _ in range(200))
    assert 70 < flips < 130
    assert augment.random_hflip(img, b, c, rng, p=0.0)[0] is img


def test_random_affine_boxes_track_pixels():
    img, b, c = scene()
    kept = 0
    for seed in range(12):
        out, ob, oc = augment.random_affine(img, b, c, np.random.default_rng(seed), scale=(0.5, 1.5),
                                            translate=0.2)
        assert out.shape == img.shape and out.dtype == np.uint8
        if len(ob):
            kept += 1
            assert oc.tolist() == [3]
            np.testing.assert_allclose(ob[0], pixel_box(out, RED), atol=2)
    assert kept >= 9  # the object stays in view for most draws, so the check above is not vacuous


def test_random_affine_output_size_and_padding():
    img, b, c = scene()
    out, ob, _ = augment.random_affine(img, b, c, np.random.default_rng(1), scale=(0.5, 0.5), translate=0.0,
                                       out_size=(100, 200))
    assert out.shape == (100, 200, 3)
    assert (out[:, :10] == augment.PAD).all()  # the half-size image is centred: padding around it
    np.testing.assert_allclose(ob[0], pixel_box(out, RED), atol=1)


def test_filter_boxes_drops_tiny_and_cut_off_boxes_with_their_classes():
    boxes = np.array([[10, 10, 50, 50],     # inside: kept
                      [-36, 10, 4, 50],     # 10% left after clipping: kept (boundary)
                      [-37, 10, 3, 50],     # 7.5% left: dropped
                      [10, 10, 11.5, 50],   # 1.5 px wide: dropped
                      [90, 90, 120, 130]],  # 10/30 x 10/40 visible = 8.3%: dropped
                     np.float32)
    kept, cls = augment.filter_boxes(boxes, np.array([0, 1, 2, 3, 4]), 100, 100)
    assert cls.tolist() == [0, 1]
    np.testing.assert_array_equal(kept, [[10, 10, 50, 50], [0, 10, 4, 50]])


def test_affine_that_pushes_object_out_drops_it():
    img, b, c = scene(box=(0, 0, 20, 20))
    # zoom x1.5 about the centre moves (0,0)-(20,20) to (-40,-30)-(-10,0): gone
    out, ob, oc = augment.random_affine(img, b, c, np.random.default_rng(0), scale=(1.5, 1.5), translate=0.0)
    assert ob.shape == (0, 4) and oc.shape == (0,)


def test_hsv_jitter_keeps_boxes_and_zero_gain_is_near_identity():
    img, b, c = scene()
    img[:, :20] = (30, 120, 200)
    same, sb, sc = augment.hsv_jitter(img, b, c, np.random.default_rng(0), 0.0, 0.0, 0.0)
    assert sb is b and sc is c
    assert np.abs(same.astype(int) - img).max() <= 3  # HSV round trip rounding only
    changed = [augment.hsv_jitter(img, b, c, np.random.default_rng(s))[0] for s in range(5)]
    assert all(x.shape == img.shape and x.dtype == np.uint8 for x in changed)
    assert any(np.abs(x.astype(int) - img).mean() > 5 for x in changed)


@pytest.mark.parametrize("seed", range(6))
def test_mosaic4_boxes_track_pixels(seed):
    colors = [RED, GREEN, BLUE, WHITE]
    parts = [scene(h=60 + 20 * i, w=100 - 10 * i, box=(20, 15, 50, 45), color=col) for i, col in enumerate(colors)]
    for k, (_, _, cls) in enumerate(parts):
        cls[0] = k
    out, ob, oc = augment.mosaic4([p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts], 128,
                                  np.random.default_rng(seed))
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    assert len(ob) == len(oc) >= 1
    assert ((ob >= 0) & (ob <= 128)).all()
    for box, k in zip(ob, oc):
        np.testing.assert_allclose(box, pixel_box(out, colors[k]), atol=2)


def test_mosaic4_needs_four():
    img, b, c = scene()
    with pytest.raises(ValueError, match="exactly 4"):
        augment.mosaic4([img] * 3, [b] * 3, [c] * 3, 64, np.random.default_rng(0))


@pytest.mark.parametrize("shape", [(120, 160), (160, 120), (64, 64), (37, 101)])
def test_letterbox_with_boxes_is_the_serving_letterbox_and_round_trips(shape):
    h, w = shape
    img, b, _ = scene(h, w, box=(w // 4, h // 4, w // 2, h // 2))
    chw, lb, transform = augment.letterbox_with_boxes(img, b, 96)
    ref_chw, ref_t = imaging.letterbox(img, 96, 96)
    np.testing.assert_array_equal(chw, ref_chw)
    np.testing.assert_array_equal(transform, ref_t)
    assert chw.shape == (3, 96, 96) and chw.dtype == np.float32
    np.testing.assert_allclose(runtime_boxes.unletterbox(lb, transform), b, atol=1e-3)
    hwc = np.round(chw.transpose(1, 2, 0) * 255).astype(np.uint8)
    np.testing.assert_allclose(lb[0], pixel_box(hwc, RED), atol=2)


def test_letterbox_uint8_equals_serving_letterbox():
    img, _, _ = scene(77, 130)
    canvas, transform = augment.letterbox_uint8(img, 64)
    chw, ref_t = imaging.letterbox(img, 64, 64)
    np.testing.assert_array_equal(canvas, np.round(chw.transpose(1, 2, 0) * 255).astype(np.uint8))
    np.testing.assert_array_equal(transform, ref_t)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(8, 300), w=st.integers(8, 300), size=st.sampled_from([32, 64, 96]),
       frac=st.tuples(*[st.floats(0, 1)] * 4))
def test_letterbox_boxes_round_trip_any_geometry(h, w, size, frac):
    x1, x2 = sorted((frac[0] * w, frac[1] * w))
    y1, y2 = sorted((frac[2] * h, frac[3] * h))
    b = np.array([[x1, y1, x2, y2]], np.float32)
    chw, lb, transform = augment.letterbox_with_boxes(np.zeros((h, w, 3), np.uint8), b, size)
    assert chw.shape == (3, size, size)
    assert (lb >= -1e-3).all() and (lb <= size + 1e-3).all()
    np.testing.assert_allclose(runtime_boxes.unletterbox(lb, transform), b, atol=1e-2)
