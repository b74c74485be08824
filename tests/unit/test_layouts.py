"""Output layouts: the registry of layout classes, the anchor-free decoder through it, and the
same layout in the postprocess, signature reading and standalone (as shipped in a repository).
Each other layout has its own tests/unit/test_layout_*.py."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from generator.runtime import boxes, layouts
from generator.runtime.layouts import Candidates, Layout, LayoutMismatch, OutputShape

RUNTIME = Path(boxes.__file__).parent


@pytest.fixture()
def registry(monkeypatch):
    """The registry, restored after the test (tests register stand-in layouts)."""
    monkeypatch.setattr(layouts, "_LAYOUTS", dict(layouts._LAYOUTS))
    return layouts


class TopK(Layout):
    """A stand-in end-to-end layout: ``[N, K, 6]`` rows already through NMS."""

    name = "test-top-k"
    needs_nms = False
    outputs_text = "one output [N, K, 6]"

    def output_shape(self, outputs):
        return OutputShape(None, outputs[0][1][1])

    def decode(self, outputs, score_threshold, max_candidates):
        rows = np.asarray(outputs[0], np.float32)[:, :max_candidates]
        return Candidates(rows[..., :4], rows[..., 4], rows[..., 5].astype(np.int64), rows[..., 4] > score_threshold)


def _raw(rng, b=3, c=4, a=200):
    scale = np.array([120, 120, 40, 40] + [1] * c, np.float32)[:, None]
    return rng.uniform(0, 1, (b, 4 + c, a)).astype(np.float32) * scale


def test_builtins_and_default(registry):
    assert registry.layout_names() == ["anchor-free", "detr", "efficient-nms", "end-to-end", "objectness"]
    assert registry.get_layout(registry.DEFAULT_LAYOUT).name == registry.DEFAULT_LAYOUT == "anchor-free"
    needs_nms = {name: registry.get_layout(name).needs_nms for name in registry.layout_names()}
    assert needs_nms == {"anchor-free": True, "objectness": True, "detr": False, "efficient-nms": False,
                         "end-to-end": False}
    counts = {name: registry.get_layout(name).num_outputs for name in registry.layout_names()}
    assert counts == {"anchor-free": 1, "objectness": 1, "detr": 1, "efficient-nms": 4, "end-to-end": 1}
    assert all(registry.get_layout(name).runs_in_onnxruntime for name in registry.layout_names())


def test_get_layout_makes_a_new_configured_instance(registry):
    a = registry.get_layout("detr", height=384, width=640, scores="logits")
    b = registry.get_layout("detr")
    assert a is not b and type(a) is type(b)
    assert (a.height, a.width, a.scores) == (384, 640, "logits")
    assert (b.height, b.width, b.scores) == (0, 0, "probs")
    assert registry.get_layout("anchor-free", height=320, width=320, scores="probs").needs_nms  # accepted, ignored
    with pytest.raises(ValueError, match=r"layout objectness: unknown option\(s\) colour; options are height, "
                                         r"width, scores"):
        registry.get_layout("objectness", colour="red")
    with pytest.raises(ValueError, match=r"layout detr: scores must be one of probs, logits, not 'softmax'"):
        registry.get_layout("detr", scores="softmax")


def test_duplicate_name_is_rejected(registry):
    class Again(TopK):
        name = "anchor-free"

    with pytest.raises(ValueError, match=r"'anchor-free' is already registered \(AnchorFree\)"):
        registry.register_layout(Again)
    with pytest.raises(ValueError, match="Layout has no name"):
        registry.register_layout(Layout)
    with pytest.raises(TypeError, match="takes a Layout subclass"):
        registry.register_layout(TopK())  # an instance, not the class
    assert registry.register_layout(TopK) is TopK


def test_unknown_name_lists_the_known_ones(registry):
    registry.register_layout(TopK)
    with pytest.raises(ValueError, match=r"unknown output layout 'yolo-x'; known layouts: anchor-free, detr, "
                                         r"efficient-nms, end-to-end, objectness, test-top-k"):
        registry.get_layout("yolo-x")


def test_anchor_free_decode_via_the_registry():
    raw = np.zeros((2, 4 + 3, 5), np.float32)
    raw[0, :4, 1] = [50, 60, 20, 10]
    raw[0, 4:, 1] = [0.1, 0.9, 0.2]
    raw[0, :4, 3] = [10, 10, 4, 4]
    raw[0, 4:, 3] = [0.6, 0.0, 0.0]
    raw[1, 4:, :] = 0.1  # nothing above the threshold
    cand = layouts.get_layout("anchor-free").decode([raw], 0.5, 100)
    assert cand.xyxy.shape == (2, 2, 4) and cand.xyxy.dtype == np.float32
    np.testing.assert_array_equal(cand.valid, [[True, True], [False, False]])
    np.testing.assert_array_equal(cand.xyxy[0], [[40, 55, 60, 65], [8, 8, 12, 12]])
    np.testing.assert_allclose(cand.scores[0], [0.9, 0.6])
    np.testing.assert_array_equal(cand.classes[0], [1, 0])


def test_anchor_free_keeps_at_most_max_candidates_best_first():
    raw = _raw(np.random.default_rng(0))
    cand = layouts.get_layout("anchor-free").decode([raw], 0.2, 7)
    assert cand.scores.shape == (3, 7)
    for i in range(3):
        best = np.sort(raw[i, 4:].max(axis=0))[::-1][:7]
        np.testing.assert_array_equal(cand.scores[i], best)


def test_anchor_free_checks_output_shapes():
    layout = layouts.get_layout("anchor-free")
    assert layout.check_outputs([("output0", [None, 7, 64])]) == OutputShape(3, 64)
    assert layout.check_outputs([("output0", (1, 7, 64), "FP16")]) == OutputShape(3, 64)
    with pytest.raises(LayoutMismatch, match=r"output 'output0' must be FP32 or FP16, got INT64"):
        layout.check_outputs([("output0", [None, 7, 64], "INT64")])
    with pytest.raises(LayoutMismatch, match=r"expected one output \[N, 4\+C, A\] .* found \['a', 'b'\]"):
        layout.check_outputs([("a", [1, 7, 8]), ("b", [1])])
    for dims in ([None, 4, 64], [None, 7], [None, None, 64], [None, 7, None]):
        with pytest.raises(LayoutMismatch, match=r"output 'output0' must be \[N, 4\+C, A\] with fixed C and A"):
            layout.check_outputs([("output0", dims)])


def test_plausible_resolves_square_and_transposed_shapes():
    """[N, 84, 8400] is an anchor-free head; [N, 300, 6] read as anchor-free (296 classes, 6 anchors)
    is not, and neither is [N, 84, 84]; objectness asks the same of [N, A, 5+C]."""
    free, obj = layouts.get_layout("anchor-free"), layouts.get_layout("objectness")
    assert free.plausible(free.check_outputs([("output0", [1, 84, 8400])]))
    assert not free.plausible(free.check_outputs([("output0", [1, 300, 6])]))
    assert not free.plausible(free.check_outputs([("output0", [1, 84, 84])]))
    assert obj.plausible(obj.check_outputs([("output0", [1, 25200, 85])]))
    assert not obj.plausible(obj.check_outputs([("output0", [1, 85, 8400])]))
    assert not obj.plausible(obj.check_outputs([("output0", [1, 84, 84])]))
    for name in ("end-to-end", "detr"):  # no count to compare: always plausible
        layout = layouts.get_layout(name)
        assert layout.plausible(layout.check_outputs([("output0", [1, 300, 6])]))


def test_postprocess_takes_one_array_a_list_a_name_or_a_layout():
    raw = _raw(np.random.default_rng(1))
    t = np.tile(np.float32([[0.5, 10, 0, 400, 300]]), (3, 1))
    expected = boxes.postprocess(raw, t, 0.3, 0.5, 20)
    for outputs, layout in (([raw], "anchor-free"), ((raw,), layouts.get_layout("anchor-free"))):
        got = boxes.postprocess(outputs, t, 0.3, 0.5, 20, layout=layout)
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)
    with pytest.raises(ValueError, match="known layouts: anchor-free"):
        boxes.postprocess(raw, t, 0.3, 0.5, 20, layout="nope")


def test_a_layout_without_nms_skips_it(registry):
    """One new module is enough: register it and the postprocess uses it by name."""
    registry.register_layout(TopK)
    rows = np.zeros((1, 3, 6), np.float32)
    rows[0, :, :4] = [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]]  # the first two overlap
    rows[0, :, 4] = [0.9, 0.8, 0.1]
    rows[0, :, 5] = [2, 2, 1]
    num, bxs, scores, classes = boxes.postprocess(rows, np.float32([[1, 0, 0, 100, 100]]), 0.5, 0.5, 5,
                                                  layout="test-top-k")
    assert num.tolist() == [2]  # both kept: no NMS
    np.testing.assert_array_equal(bxs[0, :2], [[0, 0, 10, 10], [1, 1, 11, 11]])
    np.testing.assert_allclose(scores[0], [0.9, 0.8, 0, 0, 0])
    assert classes[0].tolist() == [2, 2, -1, -1, -1]


def test_signature_reading_asks_the_layout(contract_onnx, tmp_path):
    import onnx

    from generator.errors import UsageError
    from generator.export.signature import read_signature

    sig = read_signature(contract_onnx)
    assert (sig.layout, sig.num_classes, sig.num_anchors, sig.output_dims) == ("anchor-free", 3, 64, (7, 64))
    with pytest.raises(ValueError, match="known layouts"):
        read_signature(contract_onnx, layout="nope")
    model = onnx.load(str(contract_onnx))
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 4  # no class scores left
    bad = tmp_path / "no_classes.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(UsageError, match=r"no_classes.onnx: layout anchor-free: output 'output0' must be "
                                         r"\[N, 4\+C, A\] with fixed C"):
        read_signature(bad, layout="anchor-free")
    with pytest.raises(UsageError, match=r"(?s)no_classes.onnx: .*fit no known output layout.*anchor-free.*output "
                                         r"'output0' must be \[N, 4\+C, A\] with fixed C and A, got \[None, 4, 64\]"):
        read_signature(bad)  # auto-detected (issue 12): every layout says why not


def test_shipped_layouts_work_as_top_level_modules(tmp_path):
    """Inside Triton the version folder is on sys.path: boxes.py, letterbox.py and the
    layouts/ package are imported without the generator package."""
    for name in ("boxes.py", "letterbox.py"):
        shutil.copy(RUNTIME / name, tmp_path / name)
    shutil.copytree(RUNTIME / "layouts", tmp_path / "layouts", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import numpy as np, boxes, layouts; "
            "raw = np.zeros((1, 6, 4), np.float32); raw[0, :, 2] = [8, 8, 4, 4, 0.9, 0.1]; "
            "num, b, s, c = boxes.postprocess(raw, np.float32([[1, 0, 0, 16, 16]]), 0.5, 0.5, 3); "
            "print(layouts.layout_names(), num.tolist(), b[0, 0].tolist(), 'generator' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("['anchor-free', 'detr', 'efficient-nms', 'end-to-end', 'objectness'] [1] "
                                "[6.0, 6.0, 10.0, 10.0] False")


def test_export_check_asks_the_layout(tmp_path):
    """An export whose output the serving layout cannot decode fails the export check."""
    torch = pytest.importorskip("torch")
    from generator.errors import TritonForgeError
    from generator.export import onnx_export

    class NoClasses(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=1).flatten(1)[:, None, :].repeat(1, 4, 1)  # [N, 4, A]: boxes only

    model, x = NoClasses().eval(), torch.rand(2, 3, 8, 8)
    path = tmp_path / "no_classes.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["images"], output_names=["output0"], dynamo=False)
    with pytest.raises(TritonForgeError, match=r"export check failed: output 'output0' must be \[N, 4\+C, A\]"):
        onnx_export._compare(model, path, x)
