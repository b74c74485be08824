"""``build_plans.sh``'s trtexec flags come from ``plan_build``, the strategy of
``tritonforge build``: the pure mapping, the per-version case table, and the rendered
script run against a stand-in ``trtexec`` that records its arguments."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from generator.errors import TritonForgeError
from generator.export.tensorrt import BuildOptions, plan_build, trtexec_cases, trtexec_flags
from generator.export.tensorrt.trtexec import major_bands
from generator.repository.render import render_template

TRT8, TRT10, TRT11 = "8.6.1", "10.3.0", "11.0.0"


def flags(version, has_qdq=False, **kw):
    return trtexec_flags(plan_build(version, has_qdq, BuildOptions(**kw)))


# ------------------------------------------------------------------ the mapping


def test_flags_follow_the_strategy():
    assert flags(TRT10) == flags(TRT8) == ["--fp16"]
    assert flags(TRT10, precision="fp32") == ["--stronglyTyped"] and flags(TRT8, precision="fp32") == []
    assert flags(TRT10, True, precision="int8") == flags(TRT11, True, precision="int8") == ["--stronglyTyped"]
    assert flags(TRT8, True, precision="int8") == ["--int8"]
    assert flags(TRT10, precision="int8", calib_cache=Path("c.cache")) == ["--int8", "--fp16", "--calib=c.cache"]
    assert flags(TRT10, dla_core=1) == ["--fp16", "--useDLACore=1", "--allowGPUFallback"]


def test_what_only_tritonforge_build_can_do_is_refused():
    with pytest.raises(TritonForgeError, match=r"no --fp16 flag \(TensorRT 11\): use 'tritonforge build'"):
        flags(TRT11)
    with pytest.raises(TritonForgeError, match="trtexec cannot calibrate on images"):
        flags(TRT10, precision="int8", calibrator="minmax", data=Path("."))


def test_shell_spellings_of_the_script_values():
    strategy = plan_build(TRT10, False, BuildOptions(precision="int8", calib_cache=Path("c.cache"), dla_core=0))
    assert trtexec_flags(strategy, calib_cache="$calib_cache", dla_core="$dla_core") == [
        "--int8", "--fp16", "--calib=$calib_cache", "--useDLACore=$dla_core", "--allowGPUFallback"]


# ------------------------------------------------------------------ the case table


def test_bands_are_the_versions_plan_build_tells_apart():
    bands = major_bands()
    assert [b.patterns for b in bands] == [("[0-7]",), ("8",), ("9", "10"), ("*",)]
    assert [b.version for b in bands] == ["7.0", "8.6", "10.0", "11.0"]


def table(has_qdq=False, calib_cache=False) -> dict:
    return {c.pattern: c for c in trtexec_cases(has_qdq, calib_cache)}


def test_case_table_float_onnx():
    cases = table(calib_cache=True)
    assert len(cases) == 3 * 2 * 4
    assert cases["fp16/gpu/8"].flags == cases["fp16/gpu/9|fp16/gpu/10"].flags == ("--fp16",)
    assert cases["fp16/dla/9|fp16/dla/10"].flags == ("--fp16", "--useDLACore=$dla_core", "--allowGPUFallback")
    assert cases["fp32/gpu/8"].flags == () and cases["fp32/gpu/*"].flags == ("--stronglyTyped",)
    assert cases["int8/gpu/9|int8/gpu/10"].flags == ("--int8", "--fp16", "--calib=$calib_cache")
    assert "tritonforge build" in cases["fp16/gpu/*"].refusal
    assert "removed implicit INT8 calibration" in cases["int8/dla/*"].refusal
    assert "DLA has no FP32" in cases["fp32/dla/8"].refusal
    assert "too old" in cases["fp16/gpu/[0-7]"].refusal
    assert all(c.refusal is None for p, c in cases.items() if p.startswith(("fp16/gpu/8", "int8/gpu/8")))


def test_case_table_without_a_calibration_cache_refuses_implicit_int8():
    refusal = table()["int8/gpu/9|int8/gpu/10"].refusal
    assert refusal.startswith("int8 with TensorRT 9-10: ") and "--calib-cache" in refusal


def test_case_table_qdq_onnx_is_int8_only():
    cases = table(has_qdq=True)
    assert {p.split("/")[0] for p in cases} == {"int8"}
    assert cases["int8/gpu/8"].flags == ("--int8",)
    assert cases["int8/gpu/9|int8/gpu/10"].flags == cases["int8/gpu/*"].flags == ("--stronglyTyped",)
    assert cases["int8/dla/*"].flags == ("--stronglyTyped", "--useDLACore=$dla_core", "--allowGPUFallback")


def test_refusals_are_single_shell_words():
    for case in (table()["fp16/gpu/*"], table(calib_cache=True)["int8/gpu/*"]):
        out = subprocess.run(["bash", "-c", f"printf %s {case.shell_refusal}"], capture_output=True, text=True)
        assert out.stdout == case.refusal  # quotes and backticks stay literal
    assert "'" in table()["fp16/gpu/*"].refusal and "`" in table(calib_cache=True)["int8/gpu/*"].refusal


# ------------------------------------------------------------------ the rendered script


FAKE_TRTEXEC = """#!/usr/bin/env bash
if [ "${1:-}" = --help ]; then echo "$FAKE_HELP"; exit 0; fi
printf '%s\\n' "$@" > "$FAKE_LOG"
for a in "$@"; do case "$a" in --saveEngine=*) printf 'plan' > "${a#--saveEngine=}";; esac; done
"""
BANNER = "&&&& RUNNING TensorRT.trtexec [TensorRT v{code}] # trtexec --help\n--fp16 --int8 --stronglyTyped"


def script(tmp_path: Path, precision="fp16", qdq=False, calib=False, dla_core=None, target="gpu") -> Path:
    """A repository with the contract model's names, holding only what build_plans.sh reads."""
    spec = SimpleNamespace(precision=precision, min_batch=1, opt_batch=2, max_batch=4, workspace_mib=1024, qdq=qdq,
                           nms="postprocess", dla_core=dla_core, calib_cache="calibration.cache" if calib else None,
                           score_threshold=0.25, iou_threshold=0.45, max_detections=100)
    text = render_template("scripts/build_plans.sh.j2", target=SimpleNamespace(name=target),
                           opts=SimpleNamespace(name="m"), spec=spec,
                           sig=SimpleNamespace(input_name="images", height=64, width=64),
                           trtexec_cases=trtexec_cases(qdq, calib))
    repo = tmp_path / "repo"
    (repo / "m").mkdir(parents=True)
    (repo / "m" / "model.onnx").write_bytes(b"onnx")
    (repo / "build_plans.sh").write_text(text)
    return repo


def run(repo: Path, tmp_path: Path, help_text: str, **env) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "trtexec").write_text(FAKE_TRTEXEC)
    (bin_dir / "trtexec").chmod(0o755)
    (tmp_path / "args.txt").unlink(missing_ok=True)
    full_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_LOG": str(tmp_path / "args.txt"), "FAKE_HELP": help_text,
                "BUILDER": "trtexec", **env}
    return subprocess.run(["bash", str(repo / "build_plans.sh")], env=full_env, capture_output=True, text=True)


def recorded(tmp_path: Path) -> list:
    return (tmp_path / "args.txt").read_text().split()


def test_rendered_script_is_valid_bash(tmp_path):
    for kw in ({}, {"qdq": True, "precision": "int8"}, {"calib": True, "precision": "int8", "target": "jetson",
                                                          "dla_core": 0}):
        repo = script(tmp_path / str(len(kw)), **kw)
        check = subprocess.run(["bash", "-n", str(repo / "build_plans.sh")], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("code, major", [("8601", 8), ("100300", 10), ("110000", 11)])
def test_script_reads_the_major_version_from_the_banner(tmp_path, code, major):
    repo = script(tmp_path, precision="fp32")
    result = run(repo, tmp_path, BANNER.format(code=code))
    assert result.returncode == 0, result.stderr
    assert ("--stronglyTyped" in recorded(tmp_path)) == (major >= 9)


def test_script_int8_from_the_calibration_cache(tmp_path):
    repo = script(tmp_path, precision="int8", calib=True)
    assert run(repo, tmp_path, BANNER.format(code="100300")).returncode == 0
    args = recorded(tmp_path)
    assert {"--int8", "--fp16", f"--calib={repo / 'm' / 'calibration.cache'}"} <= set(args)
    assert "--maxShapes=images:4x3x64x64" in args and (repo / "m" / "1" / "model.plan").read_bytes() == b"plan"
    result = run(repo, tmp_path, BANNER.format(code="110000"))
    assert result.returncode != 0 and "tritonforge quantize --target tensorrt" in result.stderr
    assert not (tmp_path / "args.txt").exists()


def test_script_dla_core_and_overrides(tmp_path):
    repo = script(tmp_path, target="jetson", dla_core=0)
    assert run(repo, tmp_path, "--fp16 --int8 --stronglyTyped", DLA_CORE="1").returncode == 0
    assert {"--fp16", "--useDLACore=1", "--allowGPUFallback"} <= set(recorded(tmp_path))
    assert run(script(tmp_path / "gpu"), tmp_path, "--fp16 --int8 --stronglyTyped", DLA_CORE="").returncode == 0
    assert not any(a.startswith("--useDLACore") for a in recorded(tmp_path))
    result = run(repo, tmp_path, "--fp16", PRECISION="fp32")
    assert result.returncode != 0 and "DLA has no FP32" in result.stderr
    result = run(repo, tmp_path, BANNER.format(code="100300"), TRT_MAJOR="11")
    assert result.returncode != 0 and "tritonforge build" in result.stderr
    result = run(repo, tmp_path, "--fp16", TRT_MAJOR="ten")
    assert result.returncode != 0 and "TRT_MAJOR must be a number" in result.stderr
    result = run(repo, tmp_path, "--fp16", TRT_MAJOR="7")
    assert result.returncode != 0 and "too old" in result.stderr
