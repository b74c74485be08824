"""Repository generation: signature reading, option checks, atomic and safe writes."""

import json

import onnx
import pytest

from generator.errors import UsageError
from generator.export.signature import read_signature
from generator.repository import writer
from generator.repository.generate import generate, read_labels
from generator.repository.options import RepositoryOptions
from generator.repository.targets import Target, get_target, register_target


def test_signature_is_read_from_the_onnx(contract_onnx):
    sig = read_signature(contract_onnx)
    assert (sig.input_name, sig.output_name, sig.height, sig.width) == ("images", "output0", 64, 64)
    assert sig.num_classes == 3 and sig.num_anchors == 64 and sig.names == ("shape0", "shape1", "shape2")


def test_signature_of_an_onnx_with_unexpected_outputs_is_refused(contract_onnx, tmp_path):
    model = onnx.load(str(contract_onnx))
    model.graph.output.append(onnx.helper.make_tensor_value_info("extra", onnx.TensorProto.FLOAT, [1]))
    bad = tmp_path / "two_outputs.onnx"
    onnx.save(model, str(bad))
    # issue 12: every layout is tried; the message names each output with its shape, and the layouts
    with pytest.raises(UsageError, match=r"two_outputs.onnx: the outputs 'output0' \[N, 7, 64\] FP32, 'extra' "
                                         r"\[1\] FP32 fit no known output layout"):
        read_signature(bad)


def test_not_an_onnx_file(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(UsageError, match="junk.onnx: not a readable ONNX model"):
        read_signature(junk)
    with pytest.raises(UsageError, match="ONNX file not found"):
        read_signature(tmp_path / "missing.onnx")


def test_metadata_names_must_match_class_count(contract_onnx, tmp_path):
    model = onnx.load(str(contract_onnx))
    for p in model.metadata_props:
        if p.key == "tritonforge.names":
            p.value = json.dumps(["a", "b"])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UsageError, match="metadata lists 2 class names but the output has 3 classes"):
        read_signature(path)


def test_ultralytics_style_names_are_understood(contract_onnx, tmp_path):
    model = onnx.load(str(contract_onnx))
    del model.metadata_props[:]
    model.metadata_props.add(key="names", value="{0: 'person', 1: 'car', 2: 'dog'}")
    path = tmp_path / "u.onnx"
    onnx.save(model, str(path))
    assert read_signature(path).names == ("person", "car", "dog")


def test_non_empty_destination_is_refused_without_force(contract_onnx, tmp_path):
    out = tmp_path / "repo"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(UsageError, match="exists and is not empty; pass --force"):
        generate(contract_onnx, "embedded", out, RepositoryOptions())
    assert (out / "precious.txt").read_text() == "keep me"
    generate(contract_onnx, "embedded", out, RepositoryOptions(), force=True)
    assert not (out / "precious.txt").exists() and (out / "detector_ensemble" / "config.pbtxt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # no temporary folders left


def test_empty_destination_folder_is_used(contract_onnx, tmp_path):
    (tmp_path / "repo").mkdir()
    generate(contract_onnx, "cpu", tmp_path / "repo", RepositoryOptions())
    assert "onnxruntime_onnx" in (tmp_path / "repo" / "detector" / "config.pbtxt").read_text()


def test_interrupted_generation_leaves_nothing_behind(contract_onnx, tmp_path, monkeypatch):
    out = tmp_path / "repo"
    generate(contract_onnx, "embedded", out, RepositoryOptions(name="old"))
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    calls = {"n": 0}
    real_put = writer._put

    def failing_put(dest, source):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # Ctrl-C in the middle of writing
        real_put(dest, source)

    monkeypatch.setattr(writer, "_put", failing_put)
    with pytest.raises(KeyboardInterrupt):
        generate(contract_onnx, "embedded", out, RepositoryOptions(name="new"), force=True)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # the old repository, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
    fresh = tmp_path / "fresh"
    with pytest.raises(KeyboardInterrupt):
        calls["n"] = 0
        generate(contract_onnx, "embedded", fresh, RepositoryOptions())
    assert not fresh.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


@pytest.mark.parametrize("opts,message", [
    (RepositoryOptions(name="../evil"), "invalid --name '../evil'"),
    (RepositoryOptions(name="a b"), "invalid --name"),
    (RepositoryOptions(max_batch_size=0), "--max-batch must be >= 1, got 0"),
    (RepositoryOptions(score_threshold=1.5), "--score-threshold must be in [0, 1)"),
    (RepositoryOptions(iou_threshold=0), "--iou-threshold must be in (0, 1]"),
    # checked while the ONNX is read (issue 12), so the message names the file and its layout
    (RepositoryOptions(labels=["a", "b"]), "--labels lists 2 class names but the output has 3 classes (layout anchor-free)"),
])
def test_bad_options_are_refused_before_writing(contract_onnx, tmp_path, opts, message):
    with pytest.raises(UsageError) as info:
        generate(contract_onnx, "embedded", tmp_path / "repo", opts)
    assert message in str(info.value)
    assert not (tmp_path / "repo").exists()


def test_labels_file(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("cat\ndog\n\n")
    assert read_labels(path) == ["cat", "dog"]
    path.write_text("cat\n\ndog\n")
    with pytest.raises(UsageError, match=r"labels.txt:2: empty class name"):
        read_labels(path)


def test_unknown_target_and_duplicate_registration():
    with pytest.raises(UsageError, match="unknown target 'tpu'; known: cpu, embedded"):
        get_target("tpu")

    class Again(Target):
        name = "embedded"

    with pytest.raises(ValueError, match="already registered"):
        register_target(Again())


def test_labels_and_sizes_reach_the_ensemble(contract_onnx, tmp_path):
    generate(contract_onnx, "embedded", tmp_path / "r", RepositoryOptions(name="shapes", labels=["a", "b", "c"]))
    from generator.repository.render import parse_config

    config = parse_config((tmp_path / "r" / "shapes_ensemble" / "config.pbtxt").read_text())
    assert json.loads(config.parameters["class_names"].string_value) == ["a", "b", "c"]
    assert (tmp_path / "r" / "shapes_postprocess" / "labels.txt").read_text() == "a\nb\nc\n"
    manifest = json.loads((tmp_path / "r" / "tritonforge.json").read_text())
    assert manifest["target"] == "embedded" and manifest["ensemble"] == "shapes_ensemble"
