"""Layout auto-detection from output specs and hints (no ONNX files): each rule of
generator/export/layout_detect.py, with the real exporters' output shapes."""

import pytest

from generator.errors import UsageError
from generator.export.layout_detect import DetectHints, detect_layout, format_dims
from generator.runtime.layouts import OutputShape

TOPK = frozenset({"TopK", "GatherElements"})
NMS = frozenset({"NonMaxSuppression"})
TRT = frozenset({"EfficientNMS_TRT"})


def one(dims, dtype="FP32"):
    return [("output0", dims, dtype)]


EFFICIENT_NMS = [("num_dets", [None, 1], "INT32"), ("det_boxes", [None, 100, 4], "FP32"),
                 ("det_scores", [None, 100], "FP32"), ("det_classes", [None, 100], "INT64")]


@pytest.mark.parametrize("outputs, hints, expected", [
    # YOLOv8/11/26 nms=None: [N, 84, 8400] also fits DETR's shape; nothing says DETR
    (one([None, 84, 8400]), DetectHints(), ("anchor-free", OutputShape(80, 8400))),
    (one([1, 84, 8400]), DetectHints(num_classes=80), ("anchor-free", OutputShape(80, 8400))),
    # YOLOv5: [N, 25200, 85]
    (one([1, 25200, 85]), DetectHints(), ("objectness", OutputShape(80, 25200))),
    # single-class YOLOv5 [N, 25200, 6] is not end-to-end: nothing selects boxes in its graph
    (one([1, 25200, 6]), DetectHints(), ("objectness", OutputShape(1, 25200))),
    # YOLO26 nms=False (TopK) and nms=True (NonMaxSuppression): [N, 300, 6]
    (one([1, 300, 6]), DetectHints(ops=TOPK), ("end-to-end", OutputShape(None, 300))),
    (one([1, 300, 6]), DetectHints(num_classes=80, ops=NMS), ("end-to-end", OutputShape(None, 300))),
    # two classes: DETR's [N, Q, 4+2] fits too; the Ultralytics metadata names the layout
    (one([1, 300, 6]), DetectHints(num_classes=2, ops=TOPK, layout="end-to-end"),
     ("end-to-end", OutputShape(None, 300))),
    (EFFICIENT_NMS, DetectHints(ops=TRT), ("efficient-nms", OutputShape(None, 100))),
    # DETR: two outputs, either order; or one [N, Q, 4+C] after the encoder's TopK
    ([("boxes", [None, 300, 4], "FP32"), ("logits", [None, 300, 80], "FP32")], DetectHints(),
     ("detr", OutputShape(80, 300))),
    (one([1, 300, 84]), DetectHints(ops=TOPK), ("detr", OutputShape(80, 300))),
    (one([1, 300, 84]), DetectHints(num_classes=80, layout="detr"), ("detr", OutputShape(80, 300))),
])
def test_detected(outputs, hints, expected):
    assert detect_layout(outputs, hints) == expected


def test_square_output_is_ambiguous():
    with pytest.raises(UsageError, match=r"^ambiguous: \[N, 84, 84\] fits anchor-free and objectness; "
                                         r"pass --layout NAME$"):
        detect_layout(one([None, 84, 84]))
    # the metadata's class count settles it
    assert detect_layout(one([None, 84, 84]), DetectHints(num_classes=79)) == ("objectness", OutputShape(79, 84))


def test_class_count_drops_layouts_and_says_so_when_it_is_the_only_problem():
    with pytest.raises(UsageError, match=r"^metadata lists 2 class names but the output has 80 classes "
                                         r"\(layout anchor-free\)$"):
        detect_layout(one([1, 84, 8400]), DetectHints(num_classes=2))
    with pytest.raises(UsageError, match=r"^--labels lists 3 class names but the output has 80 classes"):
        detect_layout(one([1, 84, 8400]), DetectHints(num_classes=3, class_source="--labels"))


def test_efficient_nms_node_allows_nothing_else():
    with pytest.raises(UsageError) as err:
        detect_layout(one([1, 84, 8400]), DetectHints(ops=TRT))
    text = str(err.value)
    assert text.startswith("the outputs 'output0' [1, 84, 8400] FP32 fit no known output layout:")
    assert "  anchor-free: one output [N, 4+C, A] (boxes + class scores)\n" \
           "    the graph ends in TensorRT's EfficientNMS_TRT" in text


def test_required_metadata_layout_that_does_not_fit():
    hints = DetectHints(num_classes=80, layout="detr", layout_required=True,
                        layout_detail="Ultralytics metadata: head RTDETRDecoder")
    with pytest.raises(UsageError, match=r"^Ultralytics metadata: head RTDETRDecoder means layout detr, which does "
                                         r"not fit: metadata lists 80 class names but the output has 2 classes "
                                         r"\(outputs 'output0' \[N, 300, 6\] FP32\)$"):
        detect_layout(one([None, 300, 6]), hints)
    assert detect_layout(one([None, 300, 84]), hints) == ("detr", OutputShape(80, 300))


def test_format_dims():
    assert format_dims([None, 3, None, 640]) == "[N, 3, ?, 640]"
    assert format_dims([2, 84]) == "[2, 84]"
