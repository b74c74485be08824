"""Generator safety: a generation killed at any moment leaves the old or the new
repository (never a mix), names that could escape the folder or the config syntax are
refused, output is byte-identical for the same inputs on all four targets, and every
repository generated over a range of names, shapes, class counts and batch sizes is
consistent and parses with Triton's schema. (Stage-level properties: test_render.py.)"""

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

import golden_trees
import make_models
from generator import atomic
from generator.cli import cli
from generator.errors import UsageError
from generator.repository import writer
from generator.repository.generate import generate
from generator.repository.render import parse_config
from generator.repository.options import RepositoryOptions
from generator.repository.targets import options_for

TARGETS = golden_trees.TARGETS
ROOT = Path(__file__).parents[2]


def tree_bytes(root: Path) -> dict:
    return {rel: p.read_bytes() for rel, p in golden_trees.tree(root).items()}


# ------------------------------------------------------------------ interrupted generation


def _run_and_die(k, signum, onnx, out, opts, force, exchange=True):
    """Fork; the child generates and sends itself ``signum`` just before its k-th file
    system step (file written, rename, exchange, removal). Returns the child's status."""
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 0
        try:
            steps = [0]

            def step(fn):
                def wrapper(*args, **kwargs):
                    steps[0] += 1
                    if steps[0] == k:
                        os.kill(os.getpid(), signum)
                    return fn(*args, **kwargs)
                return wrapper

            writer._put = step(writer._put)
            atomic._exchange = step(atomic._exchange if exchange else (lambda a, b: False))
            writer.os.rename = step(os.rename)
            writer.shutil.rmtree = step(writer.shutil.rmtree)
            generate(onnx, "embedded", out, opts, force=force)
        except KeyboardInterrupt:
            code = 130
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("exchange", [True, False], ids=["rename-exchange", "two-renames"])
def test_killed_at_any_step_leaves_the_old_or_the_new_repository(contract_onnx, tmp_path, exchange):
    if exchange:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        if not atomic._exchange(tmp_path / "a", tmp_path / "b"):
            pytest.skip("this file system has no renameat2(RENAME_EXCHANGE): the two-renames path is used")
        (tmp_path / "a").rmdir()
        (tmp_path / "b").rmdir()
    out = tmp_path / "repo"
    generate(contract_onnx, "embedded", out, RepositoryOptions(name="old"))
    old = tree_bytes(out)
    generate(contract_onnx, "embedded", tmp_path / "want", RepositoryOptions(name="new"))
    new = tree_bytes(tmp_path / "want")
    writer.shutil.rmtree(tmp_path / "want")
    killed_at, missing = [], []
    for k in range(1, 100):
        status = _run_and_die(k, signal.SIGKILL, contract_onnx, out, RepositoryOptions(name="new"), True, exchange)
        if os.WIFEXITED(status):
            assert os.WEXITSTATUS(status) == 0
            break
        assert os.WTERMSIG(status) == signal.SIGKILL
        killed_at.append(k)
        if out.exists():
            state = tree_bytes(out)
            assert state in (old, new), f"killed at step {k}: a mix of old and new"
        else:  # only between the two renames of the fallback: the old one waits beside it
            assert not exchange, f"killed at step {k}: no repository at all"
            missing.append(k)
            stash = [p / "repo" for p in tmp_path.glob(".repo.old-*")]
            assert len(stash) == 1 and tree_bytes(stash[0]) == old
            os.rename(stash[0], out)
        generate(contract_onnx, "embedded", out, RepositoryOptions(name="old"), force=True)  # reset
        for leftover in tmp_path.glob(".repo.*"):  # what a SIGKILL cannot clean up: hidden siblings only
            assert leftover.name.startswith((".repo.tmp-", ".repo.old-"))
            writer.shutil.rmtree(leftover)
    assert len(killed_at) > 10  # every file written and the swap itself were interrupted once
    assert tree_bytes(out) == new
    assert bool(missing) == (not exchange)  # why the exchange matters: the fallback has a window


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("k", [1, 4, 9])
def test_ctrl_c_cleans_up_after_itself(contract_onnx, tmp_path, k):
    out = tmp_path / "repo"
    generate(contract_onnx, "embedded", out, RepositoryOptions(name="old"))
    old = tree_bytes(out)
    status = _run_and_die(k, signal.SIGINT, contract_onnx, out, RepositoryOptions(name="new"), True)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 130
    assert tree_bytes(out) == old and sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
    status = _run_and_die(k, signal.SIGINT, contract_onnx, tmp_path / "fresh", RepositoryOptions(), False)
    assert os.WEXITSTATUS(status) == 130 and sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_nothing_is_overwritten_without_force(contract_onnx, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    for force in ([], ["--force"]):
        r = CliRunner().invoke(cli, ["generate", "--onnx", str(contract_onnx), "--out", str(a_file), *force])
        assert r.exit_code == 2 and "notes.txt' is a file" in r.output  # click's own check of --out
    with pytest.raises(UsageError, match="exists and is not a folder"):
        generate(contract_onnx, "embedded", a_file, RepositoryOptions(), force=True)
    assert a_file.read_text() == "mine"
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    (tmp_path / "link").symlink_to(target)
    r = CliRunner().invoke(cli, ["generate", "--onnx", str(contract_onnx), "--out", str(tmp_path / "link")])
    assert r.exit_code == 2 and "is not empty; pass --force" in r.output
    r = CliRunner().invoke(cli, ["generate", "--onnx", str(contract_onnx), "--out", str(tmp_path / "link"), "--force"])
    assert r.exit_code == 0, r.output
    # --force replaced the link itself; the folder it pointed to is untouched
    assert (target / "keep.txt").read_text() == "keep" and sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    assert not (tmp_path / "link").is_symlink() and (tmp_path / "link" / "tritonforge.json").is_file()


# ------------------------------------------------------------------ names


@pytest.mark.parametrize("name", [
    "a/b", "/abs", "a\\b", "..", "../up", "x/../y", "a..b", ".hidden", "q'uote", 'q"uote', "sp ace", "tab\tname",
    "new\nline", "trailing ", "{{x}}", "a{{x}}", "{%x%}", "{#x#}", "", "n" * 129, "nul\0byte", "ünï", "a;b", "$(rm)",
])
def test_unsafe_names_are_refused_and_nothing_is_written(contract_onnx, tmp_path, name):
    r = CliRunner().invoke(cli, ["generate", "--onnx", str(contract_onnx), "--out", str(tmp_path / "r"), "--name", name])
    assert r.exit_code == 2 and f"invalid --name {name!r}" in r.output, r.output
    assert list(tmp_path.iterdir()) == []


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(st.text(max_size=24), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,20}", fullmatch=True)))
def test_any_name_is_refused_or_stays_inside_the_output_folder(contract_onnx, name):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r"
        try:
            generate(contract_onnx, "embedded", out, RepositoryOptions(name=name))
        except UsageError as exc:
            assert "invalid --name" in str(exc)
            assert list(Path(tmp).iterdir()) == []
            return
        assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(
            [name, f"{name}_ensemble", f"{name}_postprocess", f"{name}_preprocess"])
        for path in Path(tmp).rglob("*"):
            assert path.resolve().is_relative_to(out.resolve())
            if path.name == "config.pbtxt":
                assert parse_config(path.read_text()).name == path.parent.name


def test_labels_are_data_not_templates(contract_onnx, tmp_path):
    labels = ["{{ 7 * 7 }}", '{% raw %}"quoted"', "back\\slash ünï"]
    generate(contract_onnx, "cpu", tmp_path / "r", RepositoryOptions(labels=labels))
    config = parse_config((tmp_path / "r" / "detector_ensemble" / "config.pbtxt").read_text())
    assert json.loads(config.parameters["class_names"].string_value) == labels
    assert (tmp_path / "r" / "detector_postprocess" / "labels.txt").read_text().splitlines() == labels
    assert not any(b"49" in p.read_bytes() for p in (tmp_path / "r").rglob("*.pbtxt"))


@pytest.mark.parametrize("label", ["two\nlines", "cr\r", "", "   ", "nul\0"])
def test_labels_that_would_break_labels_txt_are_refused(contract_onnx, tmp_path, label):
    with pytest.raises(UsageError, match="--labels: class name .* is empty or holds control characters"):
        generate(contract_onnx, "embedded", tmp_path / "r", RepositoryOptions(labels=["a", label, "c"]))
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ determinism

_GENERATE_ALL = """
import sys
from pathlib import Path
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/models"]
import golden_trees
work, out = Path(sys.argv[2]), Path(sys.argv[3])
for target in golden_trees.TARGETS:
    golden_trees.build(target, work, out / target)
"""


def test_same_inputs_give_byte_identical_repositories_for_every_target(tmp_path):
    """Two processes with different hash seeds, different folders, the same inputs."""
    trees = []
    for seed in ("1", "2"):
        work, out = tmp_path / f"work{seed}", tmp_path / f"out{seed}"
        work.mkdir()
        out.mkdir()
        env = {**os.environ, "PYTHONHASHSEED": seed, "OMP_NUM_THREADS": "1"}
        r = subprocess.run([sys.executable, "-c", _GENERATE_ALL, str(ROOT / "tests"), str(work), str(out)],
                           cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        trees.append({t: tree_bytes(out / t) for t in TARGETS})
    for target in TARGETS:
        assert trees[0][target] and list(trees[0][target]) == list(trees[1][target]), target
        for rel, data in trees[0][target].items():
            assert data == trees[1][target][rel], f"{target}/{rel} differs between runs"
            assert str(tmp_path).encode() not in data, f"{target}/{rel} holds a machine path"


# ------------------------------------------------------------------ whole repositories, property-based

model_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,20}", fullmatch=True).filter(lambda s: ".." not in s)


def _inputs(config):
    return {t.name: list(t.dims) for t in config.input}


def _outputs(config):
    return {t.name: list(t.dims) for t in config.output}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(TARGETS), name=model_names, cells=st.integers(1, 40), classes=st.integers(1, 120),
       batch=st.integers(1, 64), detections=st.integers(1, 300), instances=st.integers(1, 4),
       delay=st.integers(0, 100_000), dynamic=st.booleans())
def test_generated_repositories_are_consistent_and_parse(target, name, cells, classes, batch, detections, instances,
                                                         delay, dynamic):
    imgsz = 8 * cells
    with tempfile.TemporaryDirectory() as tmp:
        onnx = make_models.contract_onnx(Path(tmp) / "m.onnx", imgsz=imgsz, num_classes=classes)
        opts = options_for(target, name=name, max_batch_size=batch, max_detections=detections,
                                          detector_instances=instances, queue_delay_us=delay,
                                          dynamic_batching=dynamic)
        generate(onnx, target, Path(tmp) / "r", opts)
        repo = Path(tmp) / "r"
        configs = {p.parent.name: parse_config(p.read_text(), str(p)) for p in repo.glob("*/config.pbtxt")}
        pre, det, post, ens = (configs[f"{name}{s}"] for s in ("_preprocess", "", "_postprocess", "_ensemble"))
        assert len(configs) == 4 and all(c.name == folder for folder, c in configs.items())
        assert {c.max_batch_size for c in configs.values()} == {batch}
        anchors = cells * cells
        assert _outputs(pre)["PREPROCESSED"] == [3, imgsz, imgsz] == _inputs(det)["images"]
        if "RAW" in _inputs(post):
            assert _outputs(det)["output0"] == [4 + classes, anchors] == _inputs(post)["RAW"]
        assert _outputs(post) == _outputs(ens) == {"num_detections": [1], "boxes": [detections, 4],
                                                   "scores": [detections], "classes": [detections]}
        for c in (pre, det, post):
            assert c.HasField("dynamic_batching") == dynamic
            assert all(1 <= b <= batch for b in c.dynamic_batching.preferred_batch_size)
        assert det.instance_group[0].count == instances
        assert json.loads(ens.parameters["class_names"].string_value) == [f"shape{i}" for i in range(classes)]
        assert len((repo / f"{name}_postprocess" / "labels.txt").read_text().splitlines()) == classes
        # the ensemble wires real tensors of real models, each produced before it is read
        produced = {"IMAGE"}
        for step in ens.ensemble_scheduling.step:
            model = configs[step.model_name]
            assert set(step.input_map) == set(_inputs(model)), step.model_name
            assert set(step.output_map) <= set(_outputs(model)), step.model_name
            assert set(step.input_map.values()) <= produced, step.model_name
            produced |= set(step.output_map.values())
        assert set(_outputs(ens)) <= produced
        json.loads((repo / "tritonforge.json").read_text())
