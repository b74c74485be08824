"""``--amp``: the precision decision (host capabilities injected), a forced bf16 step, fp32 unchanged."""

import pytest
import torch
from click.testing import CliRunner

from generator.cli import cli
from generator.errors import UsageError
from generator.models.checkpoint import build_detector
from generator.training.loss import DetectionLoss
from generator.training.precision import (FP32, Capabilities, check_amp, choose_precision, cpu_bf16_units,
                                          grad_scaler)
from generator.training.trainer import param_groups, train_step

AVX2 = Capabilities()
AMX = Capabilities(cpu_bf16_units=("amx_bf16", "avx512_bf16"))
GPU = Capabilities(cuda_device="NVIDIA H200")


@pytest.mark.parametrize("mode, device, caps, name, autocast, scaler", [
    ("off", "cpu", AMX, "fp32", None, False),
    ("off", "cuda", GPU, "fp32", None, False),
    ("on", "cpu", AMX, "bf16", "cpu", False),
    ("on", "cpu", AVX2, "fp32", None, False),
    ("force", "cpu", AVX2, "bf16", "cpu", False),
    ("on", "cuda", GPU, "fp16", "cuda", True),
    ("force", "cuda", GPU, "fp16", "cuda", True),
    ("on", "mps", AVX2, "fp32", None, False),
])
def test_precision_follows_mode_device_and_bf16_units(mode, device, caps, name, autocast, scaler):
    p = choose_precision(mode, device, caps)
    assert (p.name, p.autocast, p.scaler) == (name, autocast, scaler)


def test_a_cpu_without_bf16_units_says_so_and_trains_in_fp32():
    p = choose_precision("on", "cpu", AVX2)
    assert "no bf16 units" in p.reason and "fp32" in p.reason and "--amp force" in p.reason
    assert "AMX_BF16/AVX512_BF16" in choose_precision("on", "cpu", AMX).reason
    assert "emulated" in choose_precision("force", "cpu", AVX2).reason


def test_amp_modes_are_checked():
    assert check_amp(True) == "on" and check_amp(False) == "off" and check_amp(None) == "off"
    with pytest.raises(UsageError, match="--amp must be one of off, on, force, got 'fp8'"):
        check_amp("fp8")


def test_bf16_units_are_read_from_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile amx_bf16\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert cpu_bf16_units(info) == ("amx_bf16", "avx512_bf16")
    info.write_text("flags\t\t: fpu sse2 avx2 fma\n")
    assert cpu_bf16_units(info) == ()


def _tiny_step(precision):
    torch.manual_seed(0)
    det = build_detector("yolo-n", 2, 64, ["a", "b"], seed=0)
    model = det.model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(param_groups(model, 5e-4), lr=1e-3)
    images = torch.rand(2, 3, 64, 64)
    targets = torch.tensor([[0, 0, 8.0, 8.0, 40.0, 30.0], [1, 1, 20.0, 10.0, 50.0, 60.0]])  # image, class, xyxy px
    before = [p.detach().clone() for p in model.parameters()]
    extra = {} if precision is None else {"precision": precision, "scaler": grad_scaler(precision)}
    parts = train_step(model, optimizer, DetectionLoss(model.head), images, targets, torch.device("cpu"), **extra)
    changed = any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    return parts, changed, model


def test_forced_bf16_step_runs_and_gives_finite_losses():
    bf16 = choose_precision("force", "cpu", AVX2)
    parts, changed, model = _tiny_step(bf16)
    assert parts.dtype == torch.float32 and torch.isfinite(parts).all() and changed
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast keeps fp32 master weights


def test_fp32_step_is_unchanged_by_the_precision_argument():
    default, _, _ = _tiny_step(None)
    explicit, _, _ = _tiny_step(FP32)
    assert torch.equal(default, explicit)


def test_train_cli_takes_amp_as_a_flag_or_with_a_mode():
    from generator.cli.train import train as train_command

    params = {p.name: p for p in train_command.params}
    assert params["amp"].flag_value == "on" and params["amp"].default == "off"
    r = CliRunner().invoke(cli, ["train", "--help"])
    assert r.exit_code == 0 and "--amp" in r.output and "--time-budget" in r.output
