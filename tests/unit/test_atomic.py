"""generator.atomic: outputs appear whole or not at all; generator.reproducer: the command is the caller's."""

from __future__ import annotations

import json
import os

import pytest

from generator import atomic
from generator.reproducer import command_line, format_command, reproducer_path, write_reproducer


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_atomic_path_replaces_only_on_success(tmp_path):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(out) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert out.read_bytes() == b"old" and _hidden(tmp_path) == []
    with atomic.atomic_path(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.onnx.tmp-")
        tmp.write_bytes(b"new")
    assert out.read_bytes() == b"new" and _hidden(tmp_path) == []


def test_atomic_paths_commit_together_or_not_at_all(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "a.cache"
    with pytest.raises(ValueError):
        with atomic.atomic_paths(a, b) as (ta, tb):
            ta.write_bytes(b"A")
            raise ValueError("calibration failed")
    assert not a.exists() and not b.exists() and _hidden(tmp_path) == []
    with atomic.atomic_paths(a, b) as (ta, tb):
        ta.write_bytes(b"A")  # b not written: left alone
    assert a.read_bytes() == b"A" and not b.exists()


def test_atomic_paths_undo_renames_when_a_later_one_fails(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", flaky)
    with pytest.raises(OSError):
        with atomic.atomic_paths(a, b) as (ta, tb):
            ta.write_bytes(b"A")
            tb.write_bytes(b"B")
    assert not a.exists() and not b.exists() and _hidden(tmp_path) == []


def test_write_json_is_stable(tmp_path):
    path = atomic.write_json(tmp_path / "r.json", {"b": 1, "a": [1, 2]})
    assert path.read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=2) + "\n"


@pytest.mark.parametrize("exchange", [True, False])
def test_atomic_dir_replaces_a_folder(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    out = tmp_path / "repo"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(KeyError):
        with atomic.atomic_dir(out) as tmp:
            (tmp / "new.txt").write_text("new")
            raise KeyError("x")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"] and _hidden(tmp_path) == []
    with atomic.atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"] and _hidden(tmp_path) == []
    assert oct(out.stat().st_mode & 0o777) == "0o755"


def test_replace_dir_puts_the_old_folder_back_when_the_rename_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    out, tmp = tmp_path / "repo", tmp_path / "new"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    tmp.mkdir()
    real = os.rename

    def failing(src, dst):
        if str(src) == str(tmp):
            raise OSError("no")
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "rename", failing)
    with pytest.raises(OSError):
        atomic.replace_dir(tmp, out)
    assert (out / "keep.txt").read_text() == "keep"


def test_command_line_from_options():
    args = command_line("export", {"model": "runs/s.pt", "out": "s.onnx", "no_simplify": True, "data": None,
                                   "check": False, "exclude": ["/head/*", "x y"]})
    assert args == ["tritonforge", "export", "--model", "runs/s.pt", "--out", "s.onnx", "--no-simplify",
                    "--exclude", "/head/*", "--exclude", "x y"]
    assert format_command(args).endswith("--exclude '/head/*' --exclude 'x y'")
    assert format_command(None) == ""
    assert command_line("data synth", {}, ["a"]) == ["tritonforge", "data", "synth", "a"]


def test_write_reproducer_records_the_given_command(tmp_path):
    out = tmp_path / "m.onnx"
    path = write_reproducer(out, "export", ["tritonforge", "export", "--out", str(out)], versions={"onnx": "1"},
                            opset=17)
    assert path == reproducer_path(out, "export") == tmp_path / "m.onnx.export.json"
    record = json.loads(path.read_text())
    assert record["command"] == f"tritonforge export --out {out}"
    assert record["step"] == "export" and record["opset"] == 17 and record["versions"] == {"onnx": "1"}
    assert record["tritonforge"] and record["python"]
