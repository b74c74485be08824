"""The pixel limit of the preprocess stages: sizes read from the encoded header (pure
Python), big images refused before any decoding, odd images converted, and nothing
but ImageError ever raised for bad bytes (so a bad item can only fail its own request)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

import image_bytes as ib
from generator.errors import UsageError
from generator.repository.generate import generate
from generator.repository.render import parse_config
from generator.repository.options import DEFAULT_MAX_IMAGE_PIXELS, RepositoryOptions
from generator.repository.targets import options_for
from generator.runtime import imaging

LIMIT = 50_000_000


def test_generator_default_is_the_runtime_default():
    assert DEFAULT_MAX_IMAGE_PIXELS == imaging.DEFAULT_MAX_PIXELS == RepositoryOptions().max_image_pixels


@pytest.mark.parametrize("name", sorted(ib.every_format(3, 2)))
def test_header_size_of_every_format(name):
    data = ib.every_format(37, 53, seed=1)[name]
    fmt, width, height = imaging.header_size(data)
    assert (width, height) == (53, 37)
    assert fmt == {"png": "PNG", "jpe": "JPEG", "bmp": "BMP", "gif": "GIF", "web": "WebP"}[name[:3]]


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 300), w=st.integers(1, 300), fmt=st.sampled_from(["png", "jpeg", "bmp", "webp-lossy",
                                                                           "webp-lossless", "webp-alpha", "gif"]))
def test_header_size_agrees_with_the_decoder(h, w, fmt):
    data = ib.every_format(h, w)[fmt]
    assert imaging.header_size(data)[1:] == (w, h)
    if fmt != "gif":  # this OpenCV build has no GIF reader
        assert imaging.decode_image(data, LIMIT).shape == (h, w, 3)


def test_jpeg_size_skips_an_exif_thumbnail_of_another_size():
    from PIL import Image

    thumb = ib.jpeg(8, 8)
    exif = Image.Exif()
    exif[0x010E] = "x" * 2000  # a long APP1 segment before the frame header
    big = ib.pil(ib.noise(40, 60), "JPEG", exif=exif.tobytes())
    data = big[:2] + b"\xff\xe1" + (len(thumb) + 2).to_bytes(2, "big") + thumb + big[2:]  # APP1 holding a JPEG
    assert imaging.header_size(data) == ("JPEG", 60, 40)
    assert imaging.decode_image(data, LIMIT).shape == (40, 60, 3)


@pytest.mark.parametrize("fmt", sorted(ib.CLAIMING_HUGE))
def test_huge_header_is_refused_before_decoding(fmt, monkeypatch):
    data = ib.CLAIMING_HUGE[fmt]()
    assert len(data) < 100_000  # small on the wire

    def must_not_decode(*args):
        raise AssertionError("decoded despite the pixel limit")

    monkeypatch.setattr(imaging.cv2, "imdecode", must_not_decode)
    for decode in (imaging.decode_image, imaging.decode_bgr):
        with pytest.raises(imaging.ImageError) as info:
            decode(data, LIMIT)
        assert str(info.value) == (f"{imaging.header_size(data)[0]} header says 20000x20000 = 400,000,000 pixels, "
                                   "over the limit of 50,000,000 (max_pixels of the preprocess model); "
                                   "refused before decoding")


def test_png_bomb_is_a_real_image_under_a_higher_limit():
    data = ib.png_bomb(3000, 2000)
    with pytest.raises(imaging.ImageError, match="3000x2000 = 6,000,000 pixels, over the limit of 5,999,999"):
        imaging.decode_image(data, 5_999_999)
    img = imaging.decode_image(data, 6_000_000)
    assert img.shape == (2000, 3000, 3) and not img.any()


def test_formats_without_a_readable_size_are_refused_with_a_limit_only():
    tiff = ib.pil(ib.noise(5, 7), "TIFF")
    with pytest.raises(imaging.ImageError, match=r"not JPEG, PNG, BMP, GIF or WebP \(first bytes 49 49 2a 00"):
        imaging.decode_image(tiff, LIMIT)
    assert imaging.decode_image(tiff).shape == (5, 7, 3)  # offline readers (datasets) take what OpenCV reads


@pytest.mark.parametrize("data,message", [
    (b"", "empty input (0 bytes)"),
    (b"this is not an image", "cannot decode 20 bytes as an image: not JPEG, PNG, BMP, GIF or WebP"),
    (ib.jpeg(64, 64)[:300], "cannot decode 300 bytes as JPEG (corrupt, truncated"),
    (ib.jpeg(64, 64)[:100], "cannot decode 100 bytes as JPEG: the header is corrupt or truncated"),
    (ib.png(ib.noise(64, 64))[:20], "cannot decode 20 bytes as PNG: the header is corrupt or truncated"),
    (ib.png(ib.noise(64, 64))[:-20], "as PNG (corrupt, truncated"),
    (ib.every_format(4, 4)["gif"], "as GIF (corrupt, truncated or an unsupported format)"),
    (ib.jpeg_claiming(0, 10), "the header says 0x10 pixels"),
    ("a str", "expected encoded image bytes, got str"),
])
def test_bad_bytes_name_the_problem(data, message):
    with pytest.raises(imaging.ImageError) as info:
        imaging.decode_image(data, LIMIT)
    assert message in str(info.value)


@pytest.mark.parametrize("name", ["png-gray", "png-rgba", "png-16bit", "png-palette", "jpeg-gray", "webp-alpha"])
def test_odd_images_are_converted_not_refused(name):
    data = ib.every_format(9, 11)[name]
    img = imaging.decode_image(data, LIMIT)
    assert img.shape == (9, 11, 3) and img.dtype == np.uint8
    chw, transform = imaging.preprocess_bytes(data, 32, 32, LIMIT)
    assert chw.shape == (3, 32, 32) and transform.tolist()[3:] == [11, 9]


def test_one_pixel_image():
    chw, transform = imaging.preprocess_bytes(ib.png(np.full((1, 1, 3), 200, np.uint8)), 32, 32, LIMIT)
    assert transform.tolist() == [32.0, 0.0, 0.0, 1.0, 1.0]
    np.testing.assert_allclose(chw, 200 / 255, atol=1e-6)  # one pixel scaled up fills the whole input


def test_sixteen_bit_keeps_the_high_byte():
    array = np.full((2, 2, 3), 0xAB12, np.uint16)
    assert (imaging.decode_image(ib.png(array), LIMIT) == 0xAB).all()


def _mutations():
    seeds = [ib.jpeg(24, 24), ib.png(ib.noise(24, 24)), ib.every_format(8, 8)["bmp"],
             ib.every_format(8, 8)["webp-lossy"], ib.every_format(8, 8)["gif"]]
    return st.tuples(st.sampled_from(seeds), st.integers(0, 2000), st.integers(0, 255), st.integers(0, 2000)).map(
        lambda t: (t[0][:t[1]] + bytes([t[2]]) + t[0][t[1] + 1:])[:t[3] or None])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=64), _mutations()))
def test_only_image_errors_escape_for_any_bytes(data):
    """Random and mutated bytes: an image or an ImageError, never struct.error, IndexError, cv2.error, ..."""
    for decode in (imaging.decode_image, imaging.decode_bgr):
        try:
            img = decode(data, LIMIT)
        except imaging.ImageError:
            continue
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8


def test_pixel_limit_parameter():
    assert imaging.pixel_limit(None) == imaging.DEFAULT_MAX_PIXELS
    assert imaging.pixel_limit("1000") == 1000
    for bad in ("0", "-5", "lots", "1e6"):
        with pytest.raises(ValueError, match=f"parameter max_pixels must be a positive integer, got '{bad}'"):
            imaging.pixel_limit(bad)


def _args(parameters):
    config = {"parameters": {k: {"string_value": v} for k, v in parameters.items()}}
    return {"model_config": json.dumps(config)}


def _stage_args(module, parameters):
    """``parameters`` plus, for the GPU stage (the only one declaring it), ``output_device: cpu``."""
    extra = {"output_device": "cpu"} if module == "preprocess_gpu" else {}
    return _args({**parameters, **extra})


def _batch(*items):
    arr = np.empty((len(items), 1), dtype=object)
    arr[:, 0] = items
    return arr


@pytest.mark.parametrize("module", ["preprocess", "preprocess_gpu"])
def test_stages_apply_their_limit_per_request(pb_utils, module, monkeypatch):
    import importlib

    stage = importlib.import_module(f"generator.runtime.{module}")
    model = stage.TritonPythonModel()
    model.initialize(_stage_args(module, {"height": "32", "width": "32", "max_pixels": "400"}))
    small, big = ib.jpeg(20, 20), ib.jpeg(20, 21)
    responses = model.execute([pb_utils.InferenceRequest(IMAGE=_batch(small, big)),
                               pb_utils.InferenceRequest(IMAGE=_batch(small))])
    assert [r.has_error() for r in responses] == [True, False]
    assert responses[0].error().message() == (
        "IMAGE[1]: JPEG header says 21x20 = 420 pixels, over the limit of 400 (max_pixels of the preprocess model); "
        "refused before decoding")
    # an unexpected failure inside one item also stays with its own request
    real = imaging.letterbox
    monkeypatch.setattr(imaging, "letterbox", lambda img, h, w: (_ for _ in ()).throw(MemoryError("boom"))
                        if img.shape[0] == 19 else real(img, h, w))
    responses = model.execute([pb_utils.InferenceRequest(IMAGE=_batch(ib.jpeg(19, 19))),
                               pb_utils.InferenceRequest(IMAGE=_batch(small))])
    assert [r.has_error() for r in responses] == [True, False]
    assert responses[0].error().message() == "IMAGE[0]: MemoryError: boom"


@pytest.mark.parametrize("module", ["preprocess", "preprocess_gpu"])
def test_stage_without_the_parameter_uses_the_default_and_refuses_a_bad_one(pb_utils, module):
    import importlib

    stage = importlib.import_module(f"generator.runtime.{module}")
    model = stage.TritonPythonModel()
    model.initialize(_stage_args(module, {"height": "32", "width": "32"}))  # an older repository
    assert model.max_pixels == imaging.DEFAULT_MAX_PIXELS
    with pytest.raises(ValueError, match="max_pixels must be a positive integer, got '0'"):
        stage.TritonPythonModel().initialize(_args({"height": "32", "width": "32", "max_pixels": "0"}))


@pytest.mark.parametrize("target", ["embedded", "cpu", "gpu", "jetson"])
def test_max_image_pixels_reaches_every_targets_preprocess(contract_onnx, tmp_path, target):
    generate(contract_onnx, target, tmp_path / "r", options_for(target, max_image_pixels=1234))
    config = parse_config((tmp_path / "r" / "detector_preprocess" / "config.pbtxt").read_text())
    assert config.parameters["max_pixels"].string_value == "1234"


def test_max_image_pixels_flag_and_its_check(contract_onnx, tmp_path):
    from generator.cli import cli

    out = tmp_path / "r"
    args = ["generate", "--onnx", str(contract_onnx), "--out", str(out)]
    r = CliRunner().invoke(cli, args + ["--max-image-pixels", "0"])
    assert r.exit_code == 2 and "--max-image-pixels must be >= 1, got 0" in r.output and not out.exists()
    r = CliRunner().invoke(cli, args + ["--max-image-pixels", "2000000"])
    assert r.exit_code == 0, r.output
    config = parse_config((out / "detector_preprocess" / "config.pbtxt").read_text())
    assert config.parameters["max_pixels"].string_value == "2000000"
    with pytest.raises(UsageError, match="--max-image-pixels must be >= 1, got -1"):
        RepositoryOptions(max_image_pixels=-1).validate()
