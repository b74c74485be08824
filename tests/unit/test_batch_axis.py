"""make_batch_dynamic: kept only when ONNX Runtime gives the same answers for a batch of 2
as for the two images alone; graphs with the batch baked in are left alone, with the reason."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from generator.errors import UsageError
from generator.export.batch_axis import make_batch_dynamic

ort = pytest.importorskip("onnxruntime")


def fixed_batch_onnx(path, tail, out_dims, input_dims=(1, 3, 8, 8), inits=()):
    """images [1, 3, 8, 8] -> Conv 1x1 (4 channels) -> ``tail`` nodes -> ``out``."""
    w = np.arange(12, dtype=np.float32).reshape(4, 3, 1, 1) / 10
    nodes = [helper.make_node("Conv", ["images", "w"], ["conv"])] + tail
    graph = helper.make_graph(
        nodes, "fixed", [helper.make_tensor_value_info("images", TensorProto.FLOAT, list(input_dims))],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, list(out_dims))],
        [numpy_helper.from_array(w, "w"), *inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"images": x})[0]


def test_batch_agnostic_graph_is_made_dynamic(tmp_path):
    src = fixed_batch_onnx(tmp_path / "ok.onnx", [helper.make_node("Relu", ["conv"], ["out"])], [1, 4, 8, 8])
    dst = tmp_path / "ok.dynamic.onnx"
    edit = make_batch_dynamic(src, dst)
    assert edit.made_dynamic
    assert edit.reason == "batch axis made dynamic (input and out; checked: batch 2 == 2 batch-1 runs within 0.0001)"
    model = onnx.load(str(dst))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    x = np.random.default_rng(1).random((3, 3, 8, 8), dtype=np.float32)
    np.testing.assert_array_equal(run(dst, x), np.concatenate([run(src, x[i:i + 1]) for i in range(3)]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.dynamic.onnx", "ok.onnx"]  # no temporaries


def test_reshape_with_batch_one_built_in_fails_in_onnxruntime(tmp_path):
    shape = numpy_helper.from_array(np.array([1, 4, 64], np.int64), "shape")
    src = fixed_batch_onnx(tmp_path / "r.onnx", [helper.make_node("Reshape", ["conv", "shape"], ["out"], name="flat")],
                           [1, 4, 64], inits=[shape])
    dst = tmp_path / "r.dynamic.onnx"
    edit = make_batch_dynamic(src, dst)
    assert not edit.made_dynamic and not dst.exists()
    assert edit.reason == ("batch axis kept at 1: ONNX Runtime cannot run a batch of 2: Reshape node 'flat' fails "
                           "(Input shape:{2,4,8,8}, requested shape:{1,4,64})")


def test_reshape_that_merges_the_batch_gives_the_wrong_shape(tmp_path):
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")
    src = fixed_batch_onnx(tmp_path / "m.onnx", [helper.make_node("Reshape", ["conv", "shape"], ["out"])],
                           [1, 256], inits=[shape])
    edit = make_batch_dynamic(src, tmp_path / "m.dynamic.onnx")
    assert not edit.made_dynamic
    assert edit.reason == ("batch axis kept at 1: output 'out' has shape [1, 512] for a batch of 2 "
                           "(single runs: [1, 256])")


def test_graph_that_mixes_the_images_of_a_batch_differs(tmp_path):
    tail = [helper.make_node("ReduceMean", ["conv"], ["mean"], axes=[0], keepdims=1),
            helper.make_node("Sub", ["conv", "mean"], ["out"])]
    src = fixed_batch_onnx(tmp_path / "x.onnx", tail, [1, 4, 8, 8])
    edit = make_batch_dynamic(src, tmp_path / "x.dynamic.onnx")
    assert not edit.made_dynamic and not (tmp_path / "x.dynamic.onnx").exists()
    assert edit.reason.startswith("batch axis kept at 1: output 'out' differs by ")
    assert edit.reason.endswith(" between the batch and the single runs (> 0.0001)")


def test_dynamic_height_and_width_need_the_size(tmp_path):
    src = fixed_batch_onnx(tmp_path / "hw.onnx", [helper.make_node("Relu", ["conv"], ["out"])], [1, 4, "h", "w"],
                           input_dims=(1, 3, "h", "w"))
    with pytest.raises(UsageError, match=r"hw.onnx: input 'images' has a dynamic height or width: pass its size"):
        make_batch_dynamic(src, tmp_path / "hw.dynamic.onnx")
    assert make_batch_dynamic(src, tmp_path / "hw.dynamic.onnx", imgsz=(16, 8)).made_dynamic
