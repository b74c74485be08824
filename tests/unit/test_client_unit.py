"""SDK pieces that need no server: input encoding and result types."""

import cv2
import numpy as np
import pytest

from client import Detection, InvalidImageError, encode_png, to_bytes
from client.client import _split_url
from client.detection import from_arrays


@pytest.mark.parametrize("shape", [(5, 7, 3), (1, 1, 3), (33, 17), (480, 640, 3)])
def test_png_encoder_is_lossless(shape):
    arr = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    decoded = cv2.imdecode(np.frombuffer(encode_png(arr), np.uint8), cv2.IMREAD_UNCHANGED)
    expected = arr[:, :, ::-1] if arr.ndim == 3 else arr  # OpenCV decodes to BGR
    np.testing.assert_array_equal(decoded, expected)


def test_to_bytes_accepts_paths_bytes_and_arrays(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    assert to_bytes(path) == b"abc" and to_bytes(str(path)) == b"abc" and to_bytes(b"xyz") == b"xyz"
    assert to_bytes(np.zeros((2, 2, 3), np.uint8)).startswith(b"\x89PNG")


@pytest.mark.parametrize("bad,message", [
    (b"", "empty image bytes"), (12, "unsupported image input of type int"),
    (np.zeros((2, 2, 3), np.float32), "must be uint8"), (np.zeros((2, 2, 4), np.uint8), "HxW or HxWx3"),
    ("/nonexistent/file.jpg", "cannot read image file /nonexistent/file.jpg"),
])
def test_to_bytes_errors(bad, message):
    with pytest.raises(InvalidImageError, match=message.replace("(", r"\(")):
        to_bytes(bad)


def test_from_arrays_builds_typed_detections():
    num = np.array([[2], [0]], np.int32)
    boxes = np.zeros((2, 3, 4), np.float32)
    boxes[0, 0] = [1, 2, 3, 4]
    boxes[0, 1] = [5, 6, 7, 9]
    scores = np.array([[0.9, 0.5, 0], [0, 0, 0]], np.float32)
    classes = np.array([[1, 0, -1], [-1, -1, -1]], np.int32)
    out = from_arrays(num, boxes, scores, classes, ["cat", "dog"])
    assert out[1] == []
    assert out[0][0] == Detection(1, 2, 3, 4, pytest.approx(0.9), 1, "dog")
    assert out[0][1].height == 3 and out[0][1].to_dict()["class_name"] == "cat"


@pytest.mark.parametrize("url,protocol,expected", [
    ("localhost", "grpc", ("localhost:8001", False)), ("http://h:9000/", "http", ("h:9000", False)),
    ("https://h", "http", ("h:8000", True)), ("127.0.0.1:8001", "grpc", ("127.0.0.1:8001", False)),
])
def test_url_forms(url, protocol, expected):
    assert _split_url(url, protocol) == expected
