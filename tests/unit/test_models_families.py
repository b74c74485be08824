"""Every registered detector family keeps the one output contract and training interface,
exports to ONNX with a dynamic batch axis, and round-trips through a checkpoint."""

import subprocess
import sys
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from generator.errors import UsageError
from generator.export.onnx_export import export_onnx
from generator.models.c3f import C3F
from generator.models.checkpoint import build_detector, load_checkpoint, save_checkpoint
from generator.models.layers import C3
from generator.models.profile import count_params, gflops
from generator.models.registry import families, get_family
from generator.models.shufflenetv2 import ShuffleUnit, channel_shuffle
from generator.models.yolo import STRIDES, YOLO, DetectHead

FAMILIES = ["yolo-n", "yolo-s", "yolo-m", "yolo-n-c3f", "mobilenetv3", "shufflenetv2"]
NC = 3
NO = 4 * 16 + NC  # raw channels per level: DFL box bins, then class logits


def _anchors(h: int, w: int) -> int:
    return sum((h // s) * (w // s) for s in STRIDES)


def _calibrate_bn(model: nn.Module, x: torch.Tensor) -> None:
    """Give every BatchNorm the statistics of ``x`` so that, unlike at initialisation, the
    eval output depends strongly on the image (a batch-mixing graph would then show)."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(x)
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    model.eval()


def _ort(path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_registry_lists_every_family_and_names_them_on_a_miss():
    assert set(FAMILIES) <= set(families())
    with pytest.raises(UsageError) as err:
        get_family("nope")
    assert "unknown model family 'nope'" in str(err.value)
    assert all(name in str(err.value) for name in FAMILIES)


def test_listing_families_imports_no_torch():
    code = ("import sys; from generator.models.registry import families; names = list(families()); "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("family", FAMILIES)
def test_eval_output_follows_the_contract(family):
    model = get_family(family).build(num_classes=NC, unknown_option=1).eval()  # unknown options ignored
    assert isinstance(model.head, DetectHead) and model.head.nc == NC and model.head.reg_max == 16
    assert model.head.strides == (8, 16, 32) and model.num_classes == NC and model.stride == 32
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 96))
    assert out.shape == (2, 4 + NC, _anchors(64, 96))
    probs = out[:, 4:]
    assert torch.isfinite(out).all() and probs.min() >= 0 and probs.max() <= 1
    assert (out[:, 2:4] > 0).all()  # widths and heights


@pytest.mark.parametrize("family", FAMILIES)
def test_train_mode_returns_raw_maps_that_backpropagate(family):
    model = get_family(family).build(num_classes=NC).train()
    raw = model(torch.rand(2, 3, 64, 64))
    assert [tuple(r.shape) for r in raw] == [(2, NO, 64 // s, 64 // s) for s in STRIDES]
    sum(r.sum() for r in raw).backward()
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_export_matches_pytorch_at_batch_1_and_5(family, tmp_path):
    det = build_detector(family, NC, 64)
    report = export_onnx(det, tmp_path / "m.onnx")
    assert report.max_abs_diff <= 1e-2
    x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = det.model.eval()(x).numpy()
    one = _ort(tmp_path / "m.onnx", x[:1].numpy())
    five = _ort(tmp_path / "m.onnx", x.numpy())
    assert one.shape == (1, 4 + NC, _anchors(64, 64)) and five.shape == ref.shape
    np.testing.assert_allclose(one, ref[:1], atol=1e-2)
    np.testing.assert_allclose(five, ref, atol=1e-2)


@pytest.mark.parametrize("family", ["mobilenetv3", "shufflenetv2"])
def test_exported_graph_keeps_the_images_of_a_batch_apart(family, tmp_path):
    det = build_detector(family, NC, 64)
    _calibrate_bn(det.model, torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(3)))
    # calibrated random weights saturate the box distributions (boxes of hundreds of pixels),
    # so the PyTorch/ONNX Runtime check gets a looser absolute bound than a trained model needs
    export_onnx(det, tmp_path / "m.onnx", tolerance=0.25)
    x = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(4)).numpy()
    eight = _ort(tmp_path / "m.onnx", x)
    singles = np.concatenate([_ort(tmp_path / "m.onnx", x[i:i + 1]) for i in range(8)])
    assert np.abs(eight[0] - eight[1]).max() > 1.0  # the output does depend on the image
    np.testing.assert_allclose(eight, singles, rtol=1e-4, atol=1e-2)


def test_channel_shuffle_interleaves_and_exports_with_a_dynamic_batch(tmp_path):
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    unit = ShuffleUnit(16, 16, 1).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice, as in export_onnx
        torch.onnx.export(unit, (torch.rand(1, 16, 8, 8),), str(tmp_path / "u.onnx"), input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}}, opset_version=17, dynamo=False)
    for batch in (1, 8):
        xb = torch.randn(batch, 16, 8, 8)
        with torch.no_grad():
            ref = unit(xb).numpy()
        np.testing.assert_allclose(_ort(tmp_path / "u.onnx", xb.numpy()), ref, atol=1e-5)


def test_c3f_block_is_selectable_and_unknown_blocks_are_refused():
    model = get_family("yolo-n-c3f").build(num_classes=NC)
    blocks = [type(m) for m in model.modules() if isinstance(m, (C3, C3F))]
    assert blocks and set(blocks) == {C3F}
    assert C3F(16, 32, 2)(torch.rand(1, 16, 8, 8)).shape == (1, 32, 8, 8)
    with pytest.raises(ValueError, match="c3, c3f"):
        YOLO(NC, block="c2f")


def test_checkpoint_round_trip_of_a_non_default_family(tmp_path):
    det = build_detector("shufflenetv2", 2, 64, ["cat", "dog"], seed=1)
    _calibrate_bn(det.model, torch.rand(4, 3, 64, 64))  # non-default buffers must travel too
    save_checkpoint(det, tmp_path / "s.pt")
    again = load_checkpoint(tmp_path / "s.pt")
    assert again.family == "shufflenetv2" and again.names == ["cat", "dog"]
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(det.model.eval()(x), again.model.eval()(x))


def test_profile_counts_params_and_flops():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_params(conv) == 8 * 3 * 9
    assert gflops(conv, 32) == pytest.approx(2 * 8 * 3 * 9 * 32 * 32 / 1e9)  # 2 FLOPs per multiply-add
    models = {f: get_family(f).build(num_classes=NC) for f in ("yolo-n", "yolo-s", "yolo-m")}
    params = [count_params(m) for m in models.values()]
    flops = [gflops(m, 64) for m in models.values()]
    assert 0 < params[0] < params[1] < params[2] and 0 < flops[0] < flops[1] < flops[2]
    assert params[0] == 2527849  # yolo-n unchanged by the family refactor
    assert models["yolo-n"].training  # gflops restores the mode it found
    assert gflops(models["yolo-n"], 128) == pytest.approx(4 * flops[0], rel=0.02)
