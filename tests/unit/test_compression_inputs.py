"""Bad inputs to the compression and export commands, as a user meets them on the CLI:
corrupt or malicious checkpoints (refused by weights-only loading, never executed),
ONNX files that break the detector contract, and class counts that do not match.
Each gives exit code 2, a message naming the file or flag, and writes nothing."""

import os
import pickle

import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper

import make_models
from generator.cli import cli
from generator.data.synth import synthesize
from generator.models.checkpoint import FORMAT, VERSION, build_detector, save_checkpoint


class Payload:
    """Unpickling this runs ``os.mkdir(marker)``: the side effect that must not happen."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    w = {"root": root, "marker": root / "CODE_RAN"}
    w["d3"] = synthesize(root / "d3", 16, seed=1, imgsz=64, classes=3, progress=False)
    w["d2"] = synthesize(root / "d2", 16, seed=2, imgsz=64, classes=2, progress=False)
    w["good"] = root / "good.pt"
    save_checkpoint(build_detector("yolo-n", 3, 64, ["circle", "rectangle", "triangle"]), w["good"])
    w["two"] = root / "two.pt"
    save_checkpoint(build_detector("yolo-n", 2, 64, ["circle", "rectangle"]), w["two"])
    w["onnx"] = make_models.contract_onnx(root / "c3.onnx", imgsz=64, num_classes=3)
    return w


def _bad_checkpoints(w):
    root, data = w["root"], w["good"].read_bytes()
    files = {
        "truncated": (data[:len(data) // 2], "truncated or corrupt"),
        "random bytes": (os.urandom(4096), "not weights-only torch data"),
        "empty": (b"", "not a readable tritonforge checkpoint"),
        "raw pickle, protocol 2": (pickle.dumps(Payload(w["marker"]), protocol=2),
                                   "refused, loading it would import posix.mkdir, which no checkpoint needs"),
        "raw pickle, protocol 5": (pickle.dumps(Payload(w["marker"]), protocol=5), "not weights-only torch data"),
    }
    out = {}
    for name, (blob, message) in files.items():
        path = root / f"{name.replace(' ', '_').replace(',', '')}.pt"
        path.write_bytes(blob)
        out[name] = (path, message)
    torch.save({"format": FORMAT, "version": VERSION, "family": "yolo-n", "names": ["a"], "imgsz": 64,
                "state_dict": {}, "extra": Payload(w["marker"])}, root / "malicious.pt")
    out["torch.save with a code-running object"] = (
        root / "malicious.pt", "refused, loading it would import posix.mkdir, which no checkpoint needs (it could run code)")
    torch.save(build_detector("yolo-n", 3, 64).model.state_dict(), root / "bare.pt")
    out["a bare state_dict"] = (root / "bare.pt", "not a tritonforge checkpoint (missing format tag")
    torch.save({"format": FORMAT, "version": VERSION}, root / "fields.pt")
    out["tag without fields"] = (root / "fields.pt", "damaged tritonforge checkpoint: 'names' must be a non-empty list")
    torch.save({"format": FORMAT, "version": VERSION + 1}, root / "future.pt")
    out["a newer format"] = (root / "future.pt", f"checkpoint format version {VERSION + 1}; this tritonforge reads up to")
    torch.save({"format": FORMAT, "version": VERSION, "family": "yolo-n", "names": ["a", "b"], "imgsz": 64,
                "state_dict": build_detector("yolo-n", 3, 64).model.state_dict()}, root / "misfit.pt")
    out["weights of another class count"] = (root / "misfit.pt", "weights do not fit family 'yolo-n': Error(s) in")
    return out


def _commands(w, ckpt, out):
    """Every command that reads a checkpoint, with it in each checkpoint role."""
    d3 = str(w["d3"])
    return {
        "export --model": ["export", "--model", ckpt, "--out", out.with_suffix(".onnx")],
        "eval --model": ["eval", "--model", ckpt, "--data", d3],
        "train --model": ["train", "--model", ckpt, "--data", d3, "--imgsz", "64", "--epochs", "1", "--out", out],
        "prune --model": ["prune", "--model", ckpt, "--ratio", "0.3", "--data", d3, "--finetune-epochs", "0",
                          "--out", out],
        "prune --teacher": ["prune", "--model", w["good"], "--ratio", "0.3", "--data", d3, "--teacher", ckpt,
                            "--finetune-epochs", "1", "--out", out],
        "distill --teacher": ["distill", "--teacher", ckpt, "--student", "yolo-n", "--data", d3, "--epochs", "1",
                              "--out", out],
        "distill --student": ["distill", "--teacher", w["good"], "--student", ckpt, "--data", d3, "--epochs", "1",
                              "--out", out],
    }


def _invoke(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_bad_checkpoints_are_refused_by_every_command(world, tmp_path):
    # the malicious payload is live: plain unpickling runs it
    pickle.loads(pickle.dumps(Payload(tmp_path / "control")))
    assert (tmp_path / "control").is_dir()
    seen = set()
    for name, (path, message) in _bad_checkpoints(world).items():
        for command, args in _commands(world, path, tmp_path / "out.pt").items():
            r = _invoke(args)
            assert r.exit_code == 2, f"{command} {name}: exit {r.exit_code}\n{r.output}"
            assert f"error: {path}: " in r.output and message in r.output, f"{command} {name}:\n{r.output}"
            assert "weights_only` set to `False`" not in r.output  # never advise the unsafe load
            assert not list(tmp_path.glob("out*")), f"{command} {name} wrote something"
            seen.add(command)
    assert len(seen) == 7
    assert not world["marker"].exists(), "a checkpoint's pickled code ran"


def _onnx_variants(w):
    root, base = w["root"], w["onnx"]

    def variant(name, edit):
        model = onnx.load(str(base))
        edit(model)
        path = root / f"{name}.onnx"
        onnx.save(model, str(path))
        return path

    data = base.read_bytes()
    (root / "cut.onnx").write_bytes(data[:len(data) // 2])
    (root / "noise.onnx").write_bytes(os.urandom(2048))

    def second_output(m):
        m.graph.output.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]))

    def dims(where, index, value):
        def edit(m):
            dim = getattr(m.graph, where)[0].type.tensor_type.shape.dim[index]
            if isinstance(value, str):
                dim.dim_param = value
            else:
                dim.dim_value = value
        return edit

    return {
        "two outputs": (variant("two_outputs", second_output),
                        "expected one output [N, 4+C, A] (boxes + class scores), found ['output0', 'extra']"),
        "truncated": (root / "cut.onnx", "not a readable ONNX model"),
        "random bytes": (root / "noise.onnx", "not a readable ONNX model"),
        "no class channels": (variant("no_classes", dims("output", 1, 4)), "got [None, 4, 64]"),
        "dynamic image size": (variant("dyn_hw", dims("input", 2, "h")),
                               "input 'images' has a dynamic height or width ([N, 3, ?, 64]) and the metadata "
                               "gives no image size: pass --imgsz H,W"),
        "uint8 input": (variant("u8", lambda m: setattr(m.graph.input[0].type.tensor_type, "elem_type",
                                                          TensorProto.UINT8)),
                        "input 'images' must be float32 or float16, got uint8"),
    }


def test_declared_dynamic_output_dims_are_inferred_from_the_graph(world, tmp_path):
    """Exporters with dynamic axes (Ultralytics' dynamic=True) declare the class axis symbolic
    although the graph fixes it: the signature reads it from shape inference, nothing is refused."""
    import onnx

    from generator.export.signature import read_signature

    model = onnx.load(str(world["onnx"]))
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "c"
    path = tmp_path / "dyn_classes.onnx"
    onnx.save(model, str(path))
    sig = read_signature(path)
    assert (sig.layout, sig.num_classes) == ("anchor-free", 3)
    r = _invoke(["generate", "--onnx", path, "--out", tmp_path / "repo"])
    assert r.exit_code == 0, r.output


def test_onnx_files_outside_the_detector_contract(world, tmp_path):
    images = world["d3"].parent / "images" / "train"
    for name, (path, message) in _onnx_variants(world).items():
        commands = {
            "generate": ["generate", "--onnx", path, "--out", tmp_path / "repo"],
            "quantize": ["quantize", "--onnx", path, "--data", images, "--out", tmp_path / "q.onnx"],
            "quantize --fp16": ["quantize", "--onnx", path, "--fp16", "--out", tmp_path / "h.onnx"],
            "eval --onnx": ["eval", "--onnx", path, "--data", world["d3"]],
        }
        for command, args in commands.items():
            r = _invoke(args)
            assert r.exit_code == 2, f"{command} {name}: exit {r.exit_code}\n{r.output}"
            assert f"error: {path}: " in r.output and message in r.output, f"{command} {name}:\n{r.output}"
            assert list(tmp_path.iterdir()) == [], f"{command} {name} wrote {list(tmp_path.iterdir())}"


@pytest.mark.parametrize("case", [
    "generate --labels", "quantize --data", "eval --onnx", "eval --model", "distill student", "distill dataset",
    "prune dataset", "prune --teacher", "train dataset",
])
def test_mismatched_class_counts(world, tmp_path, case):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    out = tmp_path / "out.pt"
    d2, d3, good, two, onnx3 = world["d2"], world["d3"], world["good"], world["two"], world["onnx"]
    args, message = {
        "generate --labels": (["generate", "--onnx", onnx3, "--labels", labels, "--out", tmp_path / "repo"],
                              "--labels lists 2 class names but the output has 3 classes (layout anchor-free)"),
        "quantize --data": (["quantize", "--onnx", onnx3, "--data", d2, "--out", tmp_path / "q.onnx"],
                            f"--data {d2}: the dataset has 2 classes but the model has 3"),
        "eval --onnx": (["eval", "--onnx", onnx3, "--data", d2], f"{onnx3}: the model has 3 classes but the dataset has 2"),
        "eval --model": (["eval", "--model", good, "--data", d2], f"{good}: the model has 3 classes but the dataset has 2"),
        "distill student": (["distill", "--teacher", good, "--student", two, "--data", d3, "--epochs", "1", "--out", out],
                            f"teacher has 3 classes but student {two} has 2"),
        "distill dataset": (["distill", "--teacher", good, "--student", "yolo-n", "--data", d2, "--epochs", "1",
                             "--out", out], f"{good}: teacher classes ['circle', 'rectangle', 'triangle'] differ from "
                                            "the dataset's ['circle', 'rectangle']"),
        "prune dataset": (["prune", "--model", good, "--ratio", "0.3", "--data", d2, "--out", out],
                          f"{good}: classes ['circle', 'rectangle', 'triangle'] differ from the dataset's"),
        "prune --teacher": (["prune", "--model", good, "--ratio", "0.3", "--data", d3, "--teacher", two, "--out", out],
                            f"{two}: teacher classes ['circle', 'rectangle'] differ from the student's"),
        "train dataset": (["train", "--model", good, "--data", d2, "--imgsz", "64", "--epochs", "1", "--out", out],
                          f"{good}: classes ['circle', 'rectangle', 'triangle'] differ from the dataset's"),
    }[case]
    r = _invoke(args)
    assert r.exit_code == 2, r.output
    assert message in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.txt"]


def test_quantize_takes_a_plain_image_folder_of_any_dataset(world, tmp_path):
    """The class check applies to labelled datasets only: unlabelled images still calibrate."""
    images = world["d2"].parent / "images" / "train"
    r = _invoke(["quantize", "--onnx", world["onnx"], "--data", images, "--samples", "8", "--method", "minmax",
                 "--out", tmp_path / "q.onnx"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "q.onnx").is_file()


def test_truncated_checkpoint_header_is_not_a_crash(world, tmp_path):
    """A file cut inside torch's zip header (the first bytes) fails like any other."""
    for size in (1, 4, 22, 100):
        path = tmp_path / f"cut{size}.pt"
        path.write_bytes(world["good"].read_bytes()[:size])
        r = _invoke(["export", "--model", path, "--out", tmp_path / "m.onnx"])
        assert r.exit_code == 2 and f"{path}: not a readable tritonforge checkpoint" in r.output, r.output
    assert not (tmp_path / "m.onnx").exists()
